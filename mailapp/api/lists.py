"""API: lists (filled in by its area)."""
