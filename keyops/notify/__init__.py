"""Outbound events: the outbox written with each change, signed Standard
Webhooks and Slack messages delivered from it with retries."""
