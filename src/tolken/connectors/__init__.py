"""tolken.connectors."""
