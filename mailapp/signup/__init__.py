"""Signup forms, double opt-in confirmation and the preference center."""
