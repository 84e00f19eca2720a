"""Login, logout and API tokens."""
