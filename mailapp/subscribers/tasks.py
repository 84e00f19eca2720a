"""Celery tasks of the subscribers area."""
