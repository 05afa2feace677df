"""tolken.web."""
