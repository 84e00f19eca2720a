"""The layouts area."""
