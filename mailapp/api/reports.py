"""API: reports (filled in by its area)."""
