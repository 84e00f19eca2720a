"""The beat dispatcher's round: the safety net under the ETA start messages. It finds what is due
(schedules entering the horizon, overdue ones, starts whose worker died between the claim and the
snapshot) and moves each on through mailapp.campaigns.lifecycle."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from mailapp.campaigns import lifecycle
from mailapp.extensions import db
from mailapp.models.base import utcnow
from mailapp.models.campaign import Campaign, CampaignStatus

logger = logging.getLogger(__name__)

# A campaign claimed for sending whose recipients were never snapshotted this long after its start
# lost its worker in between; the dispatcher finishes the start.
STALLED_START_SECONDS = 30


@dataclass(frozen=True)
class DueWork:
    to_start: list[tuple[int, int]]
    to_queue: list[tuple[int, int, datetime]]
    to_requeue: list[tuple[int, int, datetime]]
    stalled: list[int]


def collect_due_work(
    *, now: datetime | None = None, horizon_seconds: int, lookahead_seconds: float = 0
) -> DueWork:
    """What the beat dispatcher must do now: overdue schedules to start directly, schedules entering the
    horizon to queue with an ETA (marked queued here, so each is queued once), claimed campaigns whose
    snapshot never happened, and (to_requeue) the queued schedules due within lookahead_seconds, whose
    start message may have been lost: queued again with an ETA, they start on time rather than at the
    first tick after it. The claim makes the extra messages harmless."""
    now = now or utcnow()
    imminent = db.session.execute(
        select(Campaign.id, Campaign.schedule_version, Campaign.send_at).where(
            Campaign.status == CampaignStatus.SCHEDULED,
            Campaign.send_at > now,
            Campaign.send_at <= now + timedelta(seconds=lookahead_seconds),
            Campaign.start_queued_version == Campaign.schedule_version,
        )
    ).all()
    overdue = db.session.execute(
        select(Campaign.id, Campaign.schedule_version).where(
            Campaign.status == CampaignStatus.SCHEDULED, Campaign.send_at <= now
        )
    ).all()
    entering = db.session.execute(
        select(Campaign.id, Campaign.schedule_version, Campaign.send_at)
        .where(
            Campaign.status == CampaignStatus.SCHEDULED,
            Campaign.send_at > now,
            Campaign.send_at <= now + timedelta(seconds=horizon_seconds),
            Campaign.start_queued_version != Campaign.schedule_version,
        )
        .with_for_update(skip_locked=True)
    ).all()
    for campaign_id, version, _send_at in entering:
        db.session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.schedule_version == version)
            .values(start_queued_version=version)
            .execution_options(synchronize_session=False)
        )
    stalled = db.session.scalars(
        select(Campaign.id).where(
            Campaign.status == CampaignStatus.SENDING,
            Campaign.snapshot_taken_at.is_(None),
            Campaign.started_at <= now - timedelta(seconds=STALLED_START_SECONDS),
        )
    ).all()
    db.session.flush()
    return DueWork(
        to_start=[(row[0], row[1]) for row in overdue],
        to_queue=[(row[0], row[1], row[2]) for row in entering],
        to_requeue=[(row[0], row[1], row[2]) for row in imminent],
        stalled=list(stalled),
    )


def dispatch_due_work(*, horizon_seconds: int, lookahead_seconds: float) -> dict[str, list[int]]:
    """The beat dispatcher's round (see tasks.dispatch_due_campaigns): queue what enters the horizon
    and requeue what is imminent, start what is overdue, finish the starts that stalled."""
    work = collect_due_work(horizon_seconds=horizon_seconds, lookahead_seconds=lookahead_seconds)
    db.session.commit()
    for campaign_id, version, send_at in [*work.to_queue, *work.to_requeue]:
        lifecycle.queue_task(lifecycle.START_CAMPAIGN_TASK, campaign_id, version, eta=send_at)
    started = []
    for campaign_id, version in work.to_start:
        try:
            if lifecycle.start_scheduled(campaign_id, version):
                started.append(campaign_id)
        except Exception:
            # One broken campaign must not keep the others from starting; the next tick retries it.
            db.session.rollback()
            logger.exception("Starting campaign %s failed", campaign_id)
    recovered = []
    for campaign_id in work.stalled:
        try:
            lifecycle.snapshot_and_send(campaign_id, wait_for_lock=False)
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
