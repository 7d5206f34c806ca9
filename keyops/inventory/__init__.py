"""The inventory: every key keyops knows, in SQL (SQLite or PostgreSQL)."""
