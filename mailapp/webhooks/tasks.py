"""Celery tasks of the webhooks area: recording the large batches the endpoints staged."""

from __future__ import annotations

from celery import shared_task

from mailapp.webhooks import services

RECORD_BATCH_TASK = "mailapp.webhooks.tasks.record_webhook_batch"


@shared_task(name=RECORD_BATCH_TASK)
def record_webhook_batch(batch_id: int) -> int:
    return services.record_batch(batch_id)


@shared_task(name="mailapp.webhooks.tasks.record_stale_webhook_batches")
def record_stale_webhook_batches() -> int:
    """Run by beat every minute: batches whose task was lost or cut short are recorded again."""
    return services.record_stale_batches()
