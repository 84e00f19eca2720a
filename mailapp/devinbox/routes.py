"""Routes of the devinbox area."""
