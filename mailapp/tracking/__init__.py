"""The tracking area."""
