"""Routes of the tracking area."""
