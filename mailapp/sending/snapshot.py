"""A campaign's snapshot: one delivery row per recipient, and its tracked links, taken once when the
campaign starts sending. Later changes to the lists do not change who receives it."""

from __future__ import annotations

from sqlalchemy import false, func, literal, or_, select, text
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mailapp.errors import NotFoundError
from mailapp.extensions import db
from mailapp.models import (
    Campaign,
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    campaign_lists,
    list_members,
    utcnow,
)
from mailapp.segment_rules import compile_rules
from mailapp.sending.links import prepare_layout
from mailapp.sending.render import DEFAULT_LAYOUT

_LINK_SQL = text(
    "INSERT INTO links (campaign_id, position, url) VALUES (:campaign_id, :position, :url) "
    "ON CONFLICT (campaign_id, position) DO NOTHING"
)


def recipients_condition(campaign: Campaign, dialect: str):
    """Who a campaign targets, before the status and suppression filters: a member of one of its lists,
    or a match of one of its segments (compiled now, so a segment is applied at send time)."""
    on_a_list = (
        select(literal(1))
        .select_from(list_members.join(campaign_lists, campaign_lists.c.list_id == list_members.c.list_id))
        .where(campaign_lists.c.campaign_id == campaign.id, list_members.c.subscriber_id == Subscriber.id)
        .exists()
    )
    return or_(false(), on_a_list, *(compile_rules(segment.rules, dialect) for segment in campaign.segments))


def _snapshot_statement(campaign: Campaign):
    """One INSERT ... SELECT over subscribers: targeted, active, not suppressed, each once."""
    dialect = db.session.get_bind().dialect.name
    suppressed = (
        select(literal(1))
        .where(Suppression.email == Subscriber.email, Suppression.lifted_at.is_(None))
        .exists()
    )
    chosen = (
        select(
            literal(campaign.id), Subscriber.id, Subscriber.email, literal(str(DeliveryStatus.PENDING)),
            literal(0), literal(""), literal(""), literal(0), literal(0),
        )
        .where(
            Subscriber.status == SubscriberStatus.ACTIVE, ~suppressed, recipients_condition(campaign, dialect)
        )
        .order_by(Subscriber.id)
    )
    columns = ["campaign_id", "subscriber_id", "email", "status", "attempts", "message_id", "error",
               "open_count", "click_count"]  # fmt: skip
    insert = postgres_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(Delivery.__table__)
        .from_select(columns, chosen)
        .on_conflict_do_nothing(index_elements=["campaign_id", "subscriber_id"])
    )


def snapshot_recipients(campaign_id: int) -> int:
    """One delivery row per active member of the campaign's lists or match of its segments (each
    subscriber once, however many targets they are in) whose address is not suppressed, and the tracked
    links. The suppression
    check is one probe of suppressions' unique email index per subscriber (an anti-join on
    PostgreSQL). Idempotent; flushes, the caller commits."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"Campaign {campaign_id} not found.")
    db.session.flush()
    db.session.execute(_snapshot_statement(campaign))
    if campaign.track_clicks:
        layout_html = campaign.layout.html if campaign.layout is not None else ""
        _, urls = prepare_layout(layout_html or DEFAULT_LAYOUT, track_clicks=True)
        if urls:
            db.session.execute(
                _LINK_SQL,
                [{"campaign_id": campaign_id, "position": n, "url": url} for n, url in enumerate(urls)],
            )
    campaign.total_recipients = db.session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.campaign_id == campaign_id)
    )
    if campaign.snapshot_taken_at is None:
        campaign.snapshot_taken_at = utcnow()
    db.session.flush()
    return campaign.total_recipients
