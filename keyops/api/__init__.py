"""The HTTP API: verify, usage, alerts, health, metrics (see ``app.py``)."""
