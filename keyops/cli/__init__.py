"""The admin CLI (Typer): one module per command group."""
