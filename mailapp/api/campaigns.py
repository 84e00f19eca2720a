"""API: campaigns (filled in by its area)."""
