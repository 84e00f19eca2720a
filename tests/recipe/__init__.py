"""The README's production recipe, followed literally on a fresh copy of the repository."""
