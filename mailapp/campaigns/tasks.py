"""Celery tasks of the campaigns area: the scheduled start and the beat dispatcher that backs it up.

The database is the truth and Celery is the clock: a start message carries (campaign_id, version) and
only wins the atomic claim if the campaign is still scheduled at that version. The dispatcher starts
overdue campaigns itself, queues the ones entering the horizon, and finishes starts whose worker died
between the claim and the recipient snapshot."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from flask import current_app
from sqlalchemy import select

from mailapp.campaigns import services
from mailapp.extensions import db
from mailapp.models.campaign import Campaign, CampaignStatus

logger = logging.getLogger(__name__)


def queue_start(campaign_id: int, version: int, send_at: datetime, start_queued_version: int) -> None:
    """After the commit of a schedule: queue its start message with an ETA when the schedule said it
    falls within the horizon. Later schedules are queued by the dispatcher as they come near."""
    if start_queued_version == version:
        start_campaign.apply_async((campaign_id, version), eta=send_at)


def _claim(campaign_id: int, version: int) -> bool:
    """The atomic claim, committed; then a campaign whose layout or lists vanished fails with a reason."""
    if not services.claim_scheduled_campaign(campaign_id, version):
        db.session.rollback()
        return False
    db.session.commit()
    if services.fail_unsendable_start(campaign_id):
        db.session.commit()
        return False
    return True


def start_scheduled(campaign_id: int, version: int) -> bool:
    """Claim the campaign, then queue its snapshot and batches on the default queue. Start messages
    have a queue and a worker of their own (`schedule`, see config), which a million-row snapshot
    must not hold up. Returns False when the claim was lost (a duplicate or stale message) or the
    campaign could not be sent; a crash after the claim is finished by the dispatcher."""
    if not _claim(campaign_id, version):
        return False
    prepare_sending.delay(campaign_id)
    return True


def start_now(campaign_id: int, version: int) -> bool:
    """Send now, from a request: the claim here, so the answer already says sending; the snapshot
    (a million-row INSERT ... SELECT) in a worker, so the request does not wait for it."""
    return start_scheduled(campaign_id, version)


def snapshot_and_send(campaign_id: int, *, wait_for_lock: bool) -> None:
    """Snapshot the recipients of a claimed campaign (once: the row lock and snapshot_taken_at keep a
    recovering dispatcher from running it alongside the original start), then queue the batches."""
    from mailapp.sending.snapshot import snapshot_recipients

    statement = select(Campaign.status, Campaign.snapshot_taken_at).where(Campaign.id == campaign_id)
    row = db.session.execute(statement.with_for_update(skip_locked=not wait_for_lock)).first()
    if row is None or row.status != CampaignStatus.SENDING or row.snapshot_taken_at is not None:
        db.session.rollback()
        return
    snapshot_recipients(campaign_id)
    db.session.commit()
    services.finish_if_nobody_to_send(campaign_id)
    db.session.commit()
    continue_sending(campaign_id)


def continue_sending(campaign_id: int) -> None:
    """After a commit that left the campaign sending (start, resume, retry): queue its batches. A
    campaign paused before its snapshot was taken gets the snapshot first."""
    from mailapp.sending.tasks import enqueue_sending

    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != CampaignStatus.SENDING:
        return
    if campaign.snapshot_taken_at is None:
        snapshot_and_send(campaign_id, wait_for_lock=True)
        return
    enqueue_sending(campaign_id)


@shared_task(name="mailapp.campaigns.tasks.start_campaign")
def start_campaign(campaign_id: int, version: int) -> bool:
    return start_scheduled(campaign_id, version)


@shared_task(name="mailapp.campaigns.tasks.prepare_sending")
def prepare_sending(campaign_id: int) -> None:
    snapshot_and_send(campaign_id, wait_for_lock=True)


@shared_task(name="mailapp.campaigns.tasks.dispatch_due_campaigns")
def dispatch_due_campaigns() -> dict[str, list[int]]:
    """Beat, every SCHEDULE_DISPATCH_SECONDS: the safety net under the ETA messages (lost on a broker
    restart, never queued because the schedule lay beyond the horizon, or held by a worker that died).
    A schedule due within the lookahead gets a fresh ETA message at every tick, so even when its first
    message is gone it starts on time, not at the first tick after its time."""
    config = current_app.config
    work = services.collect_due_work(
        horizon_seconds=config["SCHEDULE_HORIZON_SECONDS"],
        lookahead_seconds=config["SCHEDULE_LOOKAHEAD_SECONDS"],
    )
    db.session.commit()
    for campaign_id, version, send_at in [*work.to_queue, *work.to_requeue]:
        start_campaign.apply_async((campaign_id, version), eta=send_at)
    started = []
    for campaign_id, version in work.to_start:
        try:
            if start_scheduled(campaign_id, version):
                started.append(campaign_id)
        except Exception:
            # One broken campaign must not keep the others from starting; the next tick retries it.
            db.session.rollback()
            logger.exception("Starting campaign %s failed", campaign_id)
    recovered = []
    for campaign_id in work.stalled:
        try:
            snapshot_and_send(campaign_id, wait_for_lock=False)
            recovered.append(campaign_id)
        except Exception:
            db.session.rollback()
            logger.exception("Recovering the start of campaign %s failed", campaign_id)
    return {
        "queued": [item[0] for item in work.to_queue],
        "requeued": [item[0] for item in work.to_requeue],
        "started": started,
        "recovered": recovered,
    }
