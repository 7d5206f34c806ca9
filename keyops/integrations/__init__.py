"""Adapters for gateways keyops sits behind; each imports its gateway's library lazily, if at all."""
