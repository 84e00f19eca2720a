"""Segments: saved subscriber rule trees, their live counts, and resending a campaign to non-openers."""
