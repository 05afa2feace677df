"""tolken.sandbox."""
