"""tolken.engine."""
