"""Deliverability: the suppression list (search, add, lift, CSV import and export)."""
