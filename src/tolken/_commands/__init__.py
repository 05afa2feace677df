"""Bodies of the operator commands (``sync``, ``plan``, ``status``, ...); the CLI stays thin."""
