"""tolken.mapping."""
