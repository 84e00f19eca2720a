"""Celery tasks of the subscribers area: CSV imports."""

from __future__ import annotations

from celery import shared_task

from mailapp.subscribers import imports


@shared_task(name="mailapp.subscribers.tasks.run_import")
def run_import(import_id: int) -> None:
    """Process a queued CSV import (queued by the upload view or API after their commit)."""
    imports.run_import(import_id)
