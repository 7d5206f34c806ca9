"""Inbound alerts: one module per webhook format, each checking authenticity
before it parses anything, and the receiver that turns them into actions."""
