"""Routes of the layouts area."""
