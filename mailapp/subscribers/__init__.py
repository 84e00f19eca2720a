"""The subscribers area."""
