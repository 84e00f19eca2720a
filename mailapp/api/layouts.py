"""API: layouts (filled in by its area)."""
