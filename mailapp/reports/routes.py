"""Routes of the reports area."""
