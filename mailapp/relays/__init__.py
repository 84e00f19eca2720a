"""Relays and sender identities: where campaigns send from and through (dashboard and services)."""
