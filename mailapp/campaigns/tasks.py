"""Celery tasks of the campaigns area: the scheduled start, the snapshot that follows it, and the beat
dispatcher that backs them up. Each is a thin shell over mailapp.campaigns.lifecycle."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from mailapp.campaigns import dispatcher, lifecycle


@shared_task(name=lifecycle.START_CAMPAIGN_TASK)
def start_campaign(campaign_id: int, version: int) -> bool:
    return lifecycle.start_scheduled(campaign_id, version)


@shared_task(name=lifecycle.PREPARE_SENDING_TASK)
def prepare_sending(campaign_id: int) -> None:
    lifecycle.snapshot_and_send(campaign_id, wait_for_lock=True)


@shared_task(name="mailapp.campaigns.tasks.dispatch_due_campaigns")
def dispatch_due_campaigns() -> dict[str, list[int]]:
    """Beat, every SCHEDULE_DISPATCH_SECONDS: the safety net under the ETA messages (lost on a broker
    restart, never queued because the schedule lay beyond the horizon, or held by a worker that died).
    A schedule due within the lookahead gets a fresh ETA message at every tick, so even when its first
    message is gone it starts on time, not at the first tick after its time."""
    return dispatcher.dispatch_due_work(
        horizon_seconds=current_app.config["SCHEDULE_HORIZON_SECONDS"],
        lookahead_seconds=current_app.config["SCHEDULE_LOOKAHEAD_SECONDS"],
    )
