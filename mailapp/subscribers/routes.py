"""Routes of the subscribers area."""
