"""The ledger: every SQL statement on deliveries and on a campaign's send status. Claiming rows under a
lease, handing them back, marking outcomes, renewing and expiring leases, pausing and finishing the
campaign, when deferred rows fall due, and the sweeper's queries. The send loop (engine.py) decides
when; this module says how, in SQL that is safe with many workers at once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, cast, exists, func, literal, or_, select, text, update

from mailapp.db_setup import is_postgres
from mailapp.extensions import db
from mailapp.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, Subscriber, Suppression, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    email: str
    attempts: int
    subscriber: Any | None
    # Suppressed after the snapshot was taken (a bounce or complaint mid-campaign): not sent.
    suppressed: bool = False


def claim_batch(campaign_id: int, limit: int, lease_seconds: float) -> list[ClaimedRow]:
    """Lease up to `limit` due pending rows of the campaign, oldest first, and commit."""
    now = utcnow()
    due = (
        select(Delivery.id)
        .where(
            Delivery.campaign_id == campaign_id,
            Delivery.status == DeliveryStatus.PENDING,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        )
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(due.scalar_subquery()))
        .values(status=DeliveryStatus.SENDING, leased_until=now + timedelta(seconds=lease_seconds))
        .returning(Delivery.id, Delivery.email, Delivery.attempts, Delivery.subscriber_id),
        execution_options={"synchronize_session": False},
    ).all()
    subscriber_ids = [row.subscriber_id for row in claimed if row.subscriber_id is not None]
    subscribers = {
        row.id: row
        for row in db.session.execute(
            select(Subscriber.id, Subscriber.name, Subscriber.attributes, Subscriber.status).where(
                Subscriber.id.in_(subscriber_ids)
            )
        )
    } if subscriber_ids else {}
    suppressed = set(db.session.scalars(
        select(Suppression.email).where(
            Suppression.email.in_([row.email for row in claimed]), Suppression.lifted_at.is_(None)
        )
    )) if claimed else set()
    db.session.commit()
    return sorted(
        (
            ClaimedRow(
                row.id, row.email, row.attempts, subscribers.get(row.subscriber_id), row.email in suppressed
            )
            for row in claimed
        ),
        key=lambda row: row.id,
    )


def release(delivery_ids: list[int]) -> None:
    """Leased rows not attempted back to pending (no attempt counted). The caller commits."""
    if delivery_ids:
        db.session.execute(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids), Delivery.status == DeliveryStatus.SENDING)
            .values(status=DeliveryStatus.PENDING, leased_until=None),
            execution_options={"synchronize_session": False},
        )


@dataclass
class Outcomes:
    """Outcomes waiting to be written, and the run's failure streak."""

    sent: list[int] = field(default_factory=list)  # delivery ids (their Message-IDs follow from the id)
    # id, smtp code, error, whether it was an SMTP attempt (a message that could not be built was not)
    failed: list[tuple[int, int | None, str, bool]] = field(default_factory=list)
    deferred: list[tuple[int, int | None, str, datetime]] = field(default_factory=list)
    # Failed rows whose 5xx reply says the address is gone (bounce_codes.classify): IncomingEvents for
    # suppression.record_mail_event, written with the outcomes. Rare, so the sent path pays nothing.
    hard_bounces: list[Any] = field(default_factory=list)
    consecutive_failures: int = 0
    # Messages that could not be built in a row (a render over its limits, odd data): counted apart,
    # since one bad row says nothing about the relay; only a layout that fails for everyone pauses.
    consecutive_render_failures: int = 0
    last_error: str = ""
    last_render_error: str = ""
    # The task reached its soft time limit while building a message: send no more, hand the rest back.
    out_of_time: bool = False

    def __len__(self) -> int:
        return len(self.sent) + len(self.failed) + len(self.deferred)


# Built once: the marking runs every few dozen messages, and building a statement per group (an IN
# list, a CASE of Message-IDs) cost more CPU than the database spent running it.
_MARK_SENT = (
    update(Delivery)
    .where(Delivery.id.in_(bindparam("ids", expanding=True)), Delivery.status == DeliveryStatus.SENDING)
    .values(
        status=DeliveryStatus.SENT, sent_at=bindparam("now"), smtp_code=250, error="", leased_until=None,
        next_attempt_at=None, attempts=Delivery.attempts + 1,
        message_id=literal("<") + cast(Delivery.id, String) + bindparam("message_id_suffix", type_=String),
    )
    .execution_options(synchronize_session=False)
)
_CAMPAIGN_STATUS = select(Campaign.status).where(Campaign.id == bindparam("campaign_id"))


def write_outcomes(outcomes: Outcomes, message_id_suffix: str) -> None:
    now = utcnow()
    if is_postgres():
        # Losing the last few commits in a database crash re-sends at most those messages; waiting for
        # the WAL flush on every group would halve the send rate.
        db.session.execute(text("SET LOCAL synchronous_commit = off"))
    if outcomes.sent:
        db.session.execute(
            _MARK_SENT, {"ids": outcomes.sent, "now": now, "message_id_suffix": message_id_suffix}
        )
    for delivery_id, code, error, attempted in outcomes.failed:
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.SENDING)
            .values(
                status=DeliveryStatus.FAILED, smtp_code=code, error=error[:2000], leased_until=None,
                next_attempt_at=None, attempts=Delivery.attempts + (1 if attempted else 0),
            ),
            execution_options={"synchronize_session": False},
        )
    for delivery_id, code, error, retry_at in outcomes.deferred:
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.SENDING)
            .values(
                status=DeliveryStatus.PENDING, smtp_code=code, error=error[:2000], leased_until=None,
                next_attempt_at=retry_at, attempts=Delivery.attempts + 1,
            ),
            execution_options={"synchronize_session": False},
        )
    outcomes.sent.clear()
    outcomes.failed.clear()
    outcomes.deferred.clear()


def campaign_status(campaign_id: int) -> str | None:
    return db.session.scalar(_CAMPAIGN_STATUS, {"campaign_id": campaign_id})


def pause_campaign(campaign_id: int, reason: str) -> bool:
    """sending -> paused with the reason shown on the campaign page. The caller commits."""
    result = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING)
        .values(status=CampaignStatus.PAUSED, status_reason=reason, updated_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    if result.rowcount:
        log.warning("campaign %s paused: %s", campaign_id, reason)
    return bool(result.rowcount)


def finish_if_done(campaign_id: int) -> bool:
    """sending -> sent, atomically, once the snapshot exists and no row is pending or leased. Commits."""
    now = utcnow()
    unfinished = exists().where(
        Delivery.campaign_id == campaign_id,
        Delivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.SENDING)),
    )
    result = db.session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING,
            Campaign.snapshot_taken_at.is_not(None), ~unfinished,
        )
        .values(status=CampaignStatus.SENT, finished_at=now, status_reason="", updated_at=now),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    return bool(result.rowcount)


def next_retry_delay(campaign_id: int) -> float | None:
    """Seconds until the earliest deferred (4xx) row is due, if every pending row is deferred."""
    now = utcnow()
    due_now = db.session.scalar(
        select(exists().where(
            Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.PENDING,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        ))
    )
    if due_now:
        return None
    earliest = db.session.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.PENDING
        )
    )
    db.session.commit()
    if earliest is None:
        return None
    return max(0.05, (earliest - now).total_seconds())


def renew_lease(delivery_ids: list[int], lease_seconds: float) -> None:
    """The batch's rows still leased get a fresh lease. The caller commits."""
    db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), Delivery.status == DeliveryStatus.SENDING)
        .values(leased_until=utcnow() + timedelta(seconds=lease_seconds)),
        execution_options={"synchronize_session": False},
    )


def campaign_stats(campaign_id: int) -> dict[str, int]:
    """{total, pending, sending, sent, failed} from one GROUP BY over the campaign's deliveries."""
    stats = {str(status): 0 for status in DeliveryStatus}
    rows = db.session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.status)
    )
    for status, count in rows:
        stats[status] = count
    stats["total"] = sum(stats.values())
    return stats


# -- the sweeper ----------------------------------------------------------------------------------------


def release_expired_leases() -> int:
    """Rows whose lease ran out (their worker died or hung) back to pending. Commits."""
    now = utcnow()
    active_campaigns = select(Campaign.id).where(
        Campaign.status.in_((CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.CANCELLED))
    )
    result = db.session.execute(
        update(Delivery)
        .where(
            Delivery.campaign_id.in_(active_campaigns.scalar_subquery()),
            Delivery.status == DeliveryStatus.SENDING,
            Delivery.leased_until < now,
        )
        .values(status=DeliveryStatus.PENDING, leased_until=None),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    return result.rowcount or 0


def campaigns_needing_workers() -> list[int]:
    """Sending campaigns with due pending rows and no live lease: their batch tasks were lost (broker
    flushed, worker killed before it claimed). Finishes, on the way, any that are done."""
    now = utcnow()
    needing: list[int] = []
    for campaign_id in db.session.scalars(
        select(Campaign.id).where(
            Campaign.status == CampaignStatus.SENDING, Campaign.snapshot_taken_at.is_not(None)
        )
    ).all():
        due = db.session.scalar(select(exists().where(
            Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.PENDING,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        )))
        live = db.session.scalar(select(exists().where(
            Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.SENDING,
            Delivery.leased_until >= now,
        )))
        if due and not live:
            needing.append(campaign_id)
        elif not due and not live:
            finish_if_done(campaign_id)
    db.session.commit()
    return needing
