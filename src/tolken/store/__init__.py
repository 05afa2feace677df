"""tolken.store."""
