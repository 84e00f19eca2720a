"""Celery tasks of the tracking area."""
