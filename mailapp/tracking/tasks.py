"""Celery tasks of the tracking area: moving buffered opens from Redis into the database."""

from __future__ import annotations

from celery import shared_task

from mailapp.tracking.opens import flush_open_buffer


@shared_task(name="mailapp.tracking.tasks.flush_open_events")
def flush_open_events() -> int:
    """Run by beat every second. Skips at once when another flush holds the lock; bounded so a
    backlog is worked off over several runs instead of one endless task."""
    return flush_open_buffer(wait=False, max_events=200_000)
