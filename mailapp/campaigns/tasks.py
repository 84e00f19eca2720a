"""Celery tasks of the campaigns area."""
