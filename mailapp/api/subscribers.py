"""API: subscribers (filled in by its area)."""
