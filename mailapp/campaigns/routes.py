"""Routes of the campaigns area."""
