"""JSON API under /api/v1, authenticated with bearer tokens."""
