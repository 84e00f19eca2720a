"""Celery tasks of the send engine."""
