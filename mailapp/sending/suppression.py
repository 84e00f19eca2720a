"""Suppressions and the bounce policy: every bounce or complaint report, from whichever source (the
SMTP reply at send time, DSN and ARF messages, provider webhooks), is recorded here with
record_mail_event, which applies the policy to the subscriber and the suppression list.

- A hard bounce marks the subscriber bounced and suppresses the address at once.
- A soft bounce does so only after BouncePolicy.soft_bounce_limit soft bounces of the address within
  soft_bounce_window_days.
- A complaint unsubscribes the subscriber and suppresses the address.

Emails are compared lower-cased. Safe with many workers at once: the unique keys (suppressions.email,
mail_events.dedupe_key) take INSERT ... ON CONFLICT DO NOTHING, so no IntegrityError escapes, and on
PostgreSQL an address's soft bounces are counted under a transaction advisory lock. Sending floor:
no request objects, no blueprint imports; functions flush and the caller commits."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import exists, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from mailapp.db_setup import is_postgres
from mailapp.errors import ValidationError
from mailapp.extensions import db
from mailapp.ids import is_id
from mailapp.models import (
    CampaignDeliveryCount,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    MailEvent,
    MailEventKind,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    utcnow,
)
from mailapp.sending import ledger

MAX_EMAIL_LENGTH = 320
MAX_DEDUPE_KEY_LENGTH = 200
MAX_SOURCE_LENGTH = 40
MAX_STATUS_CODE_LENGTH = 20
MAX_TEXT_LENGTH = 4000  # a diagnostic or a note: enough for any real reply, bounded for hostile ones


@dataclass(frozen=True)
class BouncePolicy:
    soft_bounce_limit: int = 3  # SOFT_BOUNCE_LIMIT
    soft_bounce_window_days: int = 30  # SOFT_BOUNCE_WINDOW_DAYS
    # A sending campaign pauses itself once it has sent this many and its complaint or hard-bounce
    # rate (over sent) passes these (AUTO_PAUSE_*).
    auto_pause_min_sent: int = 500
    auto_pause_complaint_rate: float = 0.003
    auto_pause_hard_bounce_rate: float = 0.05

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BouncePolicy:
        return cls(
            soft_bounce_limit=max(1, int(config["SOFT_BOUNCE_LIMIT"])),
            soft_bounce_window_days=max(1, int(config["SOFT_BOUNCE_WINDOW_DAYS"])),
            auto_pause_min_sent=max(1, int(config["AUTO_PAUSE_MIN_SENT"])),
            auto_pause_complaint_rate=float(config["AUTO_PAUSE_COMPLAINT_RATE"]),
            auto_pause_hard_bounce_rate=float(config["AUTO_PAUSE_HARD_BOUNCE_RATE"]),
        )

    @classmethod
    def for_current_app(cls) -> BouncePolicy:
        return cls.from_config(current_app.config)


@dataclass(frozen=True)
class IncomingEvent:
    kind: MailEventKind
    email: str
    source: str
    delivery_id: int | None = None
    status_code: str = ""
    diagnostic: str = ""
    dedupe_key: str | None = None
    occurred_at: datetime | None = None


def record_mail_event(event: IncomingEvent, policy: BouncePolicy | None = None) -> bool:
    """Record one bounce or complaint and apply the policy. False when its dedupe_key was seen before
    (nothing changes). ValidationError when the address cannot be an address (empty, too long, no @).
    Fills the campaign and subscriber from the delivery, or the subscriber from the address. Then, if
    the campaign is sending, pauses it when its complaint or hard-bounce rate is too high. Flushes; the
    caller commits."""
    policy = policy or BouncePolicy.for_current_app()
    recorded, campaign_id = _record(event, policy)
    if recorded and campaign_id is not None and event.kind != MailEventKind.SOFT_BOUNCE:
        pause_if_rates_too_high(campaign_id, policy)
    return recorded


def record_send_bounces(events: list[IncomingEvent], policy: BouncePolicy) -> None:
    """The hard bounces one send group met, then the auto-pause check once per campaign. Flushes."""
    campaigns = {campaign_id for recorded, campaign_id in (_record(event, policy) for event in events)
                 if recorded and campaign_id is not None}
    for campaign_id in sorted(campaigns):
        pause_if_rates_too_high(campaign_id, policy)


def _record(event: IncomingEvent, policy: BouncePolicy) -> tuple[bool, int | None]:
    kind = MailEventKind(event.kind)
    email = normalize_address(event.email)
    now = utcnow()
    delivery_id = event.delivery_id if is_id(event.delivery_id) else None
    campaign_id = subscriber_id = None
    if delivery_id is not None:
        delivery = db.session.execute(
            select(Delivery.campaign_id, Delivery.subscriber_id).where(Delivery.id == delivery_id)
        ).first()
        if delivery is not None:
            campaign_id, subscriber_id = delivery.campaign_id, delivery.subscriber_id
    if subscriber_id is None:
        subscriber_id = db.session.scalar(select(Subscriber.id).where(Subscriber.email == email))
    occurred_at = _aware(event.occurred_at) or now
    diagnostic = _bounded_text(event.diagnostic)
    status_code = _bounded_text(event.status_code, MAX_STATUS_CODE_LENGTH)
    source = _bounded_text(event.source, MAX_SOURCE_LENGTH)
    inserted = db.session.execute(
        _insert(MailEvent)
        .values(
            kind=str(kind), email=email, subscriber_id=subscriber_id, delivery_id=delivery_id,
            campaign_id=campaign_id, source=source, status_code=status_code, diagnostic=diagnostic,
            dedupe_key=_dedupe_key(event.dedupe_key), occurred_at=occurred_at, received_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(MailEvent.id)
    ).first()
    if inserted is None:
        return False, campaign_id
    detail = " ".join(part for part in (status_code, diagnostic) if part)
    if kind == MailEventKind.HARD_BOUNCE:
        _mark_bounced(subscriber_id, now)
        suppress_address(email, SuppressionReason.HARD_BOUNCE, source, detail, campaign_id)
    elif kind == MailEventKind.SOFT_BOUNCE:
        soft_bounces = _recent_soft_bounces(email, now - timedelta(days=policy.soft_bounce_window_days))
        if soft_bounces >= policy.soft_bounce_limit:
            _mark_bounced(subscriber_id, now)
            suppress_address(
                email, SuppressionReason.SOFT_BOUNCE, source,
                f"{soft_bounces} soft bounces within {policy.soft_bounce_window_days} days; the last: "
                f"{detail}".strip(),
                campaign_id,
            )
    else:
        _unsubscribe_for_complaint(subscriber_id, campaign_id, now)
        suppress_address(email, SuppressionReason.COMPLAINT, source, detail, campaign_id)
    db.session.flush()
    return True, campaign_id


def pause_if_rates_too_high(campaign_id: int, policy: BouncePolicy) -> bool:
    """Pause a sending campaign whose complaint or hard-bounce rate over its sent messages passed the
    policy's, once it has sent auto_pause_min_sent (fewer say little: one complaint in 20 is 5%). The
    reason, with the figures, is shown on the campaign page. The caller commits."""
    if ledger.campaign_status(campaign_id) != CampaignStatus.SENDING:
        return False
    sent = int(db.session.scalar(
        select(func.coalesce(func.sum(CampaignDeliveryCount.deliveries), 0)).where(
            CampaignDeliveryCount.campaign_id == campaign_id,
            CampaignDeliveryCount.status == DeliveryStatus.SENT,
        )
    ))
    if sent < policy.auto_pause_min_sent:
        return False
    counts = campaign_event_counts([campaign_id])[campaign_id]
    for kind, label, limit in (
        (MailEventKind.COMPLAINT, "complaint rate", policy.auto_pause_complaint_rate),
        (MailEventKind.HARD_BOUNCE, "hard-bounce rate", policy.auto_pause_hard_bounce_rate),
    ):
        if counts[kind] / sent > limit:
            return ledger.pause_campaign(
                campaign_id,
                f"Paused: {label} {percent(counts[kind] / sent)} ({counts[kind]:,} of {sent:,} sent) passed "
                f"{percent(limit)}. Check the list's source before resuming.",
            )
    return False


def campaign_event_counts(campaign_ids: list[int]) -> dict[int, dict[MailEventKind, int]]:
    """{campaign_id: {kind: addresses}}: how many different addresses had each kind of event (an
    address that bounced twice counts once), from the (campaign_id, kind) index."""
    counts = {campaign_id: dict.fromkeys(MailEventKind, 0) for campaign_id in campaign_ids}
    if campaign_ids:
        for campaign_id, kind, number in db.session.execute(
            select(MailEvent.campaign_id, MailEvent.kind, func.count(MailEvent.email.distinct()))
            .where(MailEvent.campaign_id.in_(campaign_ids))
            .group_by(MailEvent.campaign_id, MailEvent.kind)
        ):
            counts[campaign_id][MailEventKind(kind)] = int(number)
    return counts


def percent(fraction: float) -> str:
    """0.004 -> "0.4%", 0.05 -> "5%", 0.0025 -> "0.25%"."""
    return f"{fraction * 100:.2f}".rstrip("0").rstrip(".") + "%"


def suppress_address(
    email: str, reason: str, source: str, detail: str = "", campaign_id: int | None = None
) -> Suppression:
    """Suppress the address (idempotent: an address already suppressed keeps its first reason; a lifted
    suppression is put back with this one). Changes no subscriber. Flushes; the caller commits."""
    address = normalize_address(email)
    suppress_many([(address, reason, detail)], source, campaign_id)
    return db.session.scalars(
        select(Suppression).where(Suppression.email == address).execution_options(populate_existing=True)
    ).one()


def suppress_many(
    entries: list[tuple[str, str, str]], source: str, campaign_id: int | None = None
) -> int:
    """Suppress (email, reason, detail) entries whose emails are already normalized and distinct, in
    two statements: new addresses are inserted (ON CONFLICT DO NOTHING: a concurrent writer's row
    wins), lifted ones are put back. Returns how many addresses were not suppressed before. Flushes."""
    if not entries:
        return 0
    now = utcnow()
    campaign_id = campaign_id if is_id(campaign_id) else None
    rows = [
        {
            "email": address, "reason": str(SuppressionReason(reason)),
            "source": _bounded_text(source, MAX_SOURCE_LENGTH), "detail": _bounded_text(detail),
            "campaign_id": campaign_id, "created_at": now, "lifted_reason": "", "lifted_by": "",
        }
        for address, reason, detail in entries
    ]
    # One multi-row INSERT per batch of rows (SQLAlchemy's insertmanyvalues); RETURNING names the
    # addresses that were new.
    added = len(db.session.execute(
        _insert(Suppression).on_conflict_do_nothing(index_elements=["email"]).returning(Suppression.email),
        rows,
    ).all())
    by_email = {row["email"]: row for row in rows}
    lifted = db.session.scalars(
        select(Suppression.email).where(Suppression.email.in_(by_email), Suppression.lifted_at.is_not(None))
    ).all()
    for address in lifted:
        row = by_email[address]
        db.session.execute(
            update(Suppression)
            .where(Suppression.email == address, Suppression.lifted_at.is_not(None))
            .values(
                reason=row["reason"], source=row["source"], detail=row["detail"], campaign_id=campaign_id,
                created_at=now, lifted_at=None, lifted_reason="", lifted_by="",
            ),
            execution_options={"synchronize_session": False},
        )
    db.session.flush()
    return added + len(lifted)


def lift_suppression(email: str, reason: str = "", lifted_by: str = "") -> bool:
    """Lift the address's suppression, keeping the row with when, why and by whom. The subscriber's
    status is NOT changed back: a bounced or unsubscribed subscriber stays so until someone changes it.
    False when the address was not suppressed. Flushes; the caller commits."""
    try:
        address = normalize_address(email)
    except ValidationError:
        return False
    result = db.session.execute(
        update(Suppression)
        .where(Suppression.email == address, Suppression.lifted_at.is_(None))
        .values(
            lifted_at=utcnow(), lifted_reason=_bounded_text(reason),
            lifted_by=_bounded_text(lifted_by, MAX_SOURCE_LENGTH),
        ),
        execution_options={"synchronize_session": False},
    )
    db.session.flush()
    return bool(result.rowcount)


def is_suppressed(email: str) -> bool:
    try:
        address = normalize_address(email)
    except ValidationError:
        return False
    return bool(db.session.scalar(select(exists().where(
        Suppression.email == address, Suppression.lifted_at.is_(None)
    ))))


def events_for_subscriber(subscriber_id: int, email: str, limit: int = 50) -> list[MailEvent]:
    """The subscriber's latest bounces and complaints, newest first: those recorded for them and those
    for their address (reported before they were a subscriber, or after their delivery row lost them)."""
    return list(db.session.scalars(
        select(MailEvent)
        .where((MailEvent.subscriber_id == subscriber_id) | (MailEvent.email == email.lower()))
        .order_by(MailEvent.occurred_at.desc(), MailEvent.id.desc())
        .limit(limit)
    ))


def suppression_in_force(email: str) -> Suppression | None:
    return db.session.scalar(
        select(Suppression).where(Suppression.email == email.lower(), Suppression.lifted_at.is_(None))
    )


def normalize_address(email: str) -> str:
    """The address as stored (stripped, lower-cased). Reports from outside are not validated like a
    subscriber's form input (a bounce for an odd address is still a bounce), but it must be storable
    and look like an address."""
    address = (email or "").strip().lower()
    if not address or "@" not in address or len(address) > MAX_EMAIL_LENGTH:
        raise ValidationError(f"{email[:100]!r} is not an email address." if email else "No email address.")
    if any(ord(char) < 32 or char == "\x7f" for char in address):
        raise ValidationError("An email address cannot contain control characters.")
    return address


def _insert(model: type) -> Any:  # a dialect Insert, for ON CONFLICT
    return (postgresql if is_postgres() else sqlite).insert(model)


def _mark_bounced(subscriber_id: int | None, now: datetime) -> None:
    """active -> bounced. An unsubscribed or blocklisted subscriber keeps that status."""
    if subscriber_id is not None:
        db.session.execute(
            update(Subscriber)
            .where(Subscriber.id == subscriber_id, Subscriber.status == SubscriberStatus.ACTIVE)
            .values(status=SubscriberStatus.BOUNCED, updated_at=now),
            execution_options={"synchronize_session": False},
        )


def _unsubscribe_for_complaint(subscriber_id: int | None, campaign_id: int | None, now: datetime) -> None:
    """A complaint is the strongest unsubscribe there is: active or bounced -> unsubscribed, with the
    campaign complained about. A blocklisted subscriber stays blocklisted."""
    if subscriber_id is not None:
        db.session.execute(
            update(Subscriber)
            .where(
                Subscriber.id == subscriber_id,
                Subscriber.status.in_((SubscriberStatus.ACTIVE, SubscriberStatus.BOUNCED)),
            )
            .values(
                status=SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=now,
                unsubscribed_campaign_id=campaign_id, updated_at=now,
            ),
            execution_options={"synchronize_session": False},
        )


def _recent_soft_bounces(email: str, since: datetime) -> int:
    if is_postgres():
        # Two workers recording this address's soft bounces at once would each miss the other's row
        # (READ COMMITTED) and neither would reach the limit; the lock makes them count in turn.
        db.session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"soft:{email}"})
    return db.session.scalar(
        select(func.count()).select_from(MailEvent).where(
            MailEvent.email == email, MailEvent.kind == MailEventKind.SOFT_BOUNCE,
            MailEvent.occurred_at >= since,
        )
    ) or 0


def _dedupe_key(key: str | None) -> str | None:
    """Keys longer than the column are hashed: the same long key still maps to the same stored one."""
    if key is None or key == "":
        return None
    key = key.replace("\x00", "")
    if len(key) <= MAX_DEDUPE_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _bounded_text(value: str | None, limit: int = MAX_TEXT_LENGTH) -> str:
    """Storable on both backends (PostgreSQL refuses NUL) and bounded in length."""
    return (value or "").replace("\x00", "").encode("utf-8", "replace").decode("utf-8")[:limit]


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
