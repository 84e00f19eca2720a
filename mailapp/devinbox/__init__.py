"""The devinbox area."""
