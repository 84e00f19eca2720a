"""The per-recipient delivery log: one row per recipient of a campaign."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column

from mailapp.models.base import Base, UTCDateTime


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


ENGAGED = text("engaged_at IS NOT NULL")
HUMAN_CLICKED = text("human_clicked_at IS NOT NULL")
SENT_UNENGAGED = text("status = 'sent' AND engaged_at IS NULL")


class Delivery(Base):
    """One recipient of one campaign: the row that makes "sent exactly once" checkable."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "subscriber_id", name="uq_deliveries_campaign_subscriber"),
        Index("ix_deliveries_campaign_status_id", "campaign_id", "status", "id"),
        # The delivery log and report tables page a campaign's rows by id, with no status filter.
        Index("ix_deliveries_campaign_id_id", "campaign_id", "id"),
        # The few recipients who unsubscribed through a campaign, paged without reading the others.
        Index(
            "ix_deliveries_campaign_unsubscribed",
            "campaign_id",
            "id",
            postgresql_where=text("unsubscribed_at IS NOT NULL"),
            sqlite_where=text("unsubscribed_at IS NOT NULL"),
        ),
        # Segments' activity rules on one campaign ("opened", "clicked", "did not open"): each reads only
        # its own small slice of a campaign's deliveries, index only, instead of probing the events.
        Index(
            "ix_deliveries_campaign_engaged",
            "campaign_id",
            "subscriber_id",
            postgresql_where=ENGAGED,
            sqlite_where=ENGAGED,
        ),
        Index(
            "ix_deliveries_campaign_human_clicked",
            "campaign_id",
            "subscriber_id",
            postgresql_where=HUMAN_CLICKED,
            sqlite_where=HUMAN_CLICKED,
        ),
        Index(
            "ix_deliveries_campaign_unengaged",
            "campaign_id",
            "subscriber_id",
            postgresql_where=SENT_UNENGAGED,
            sqlite_where=SENT_UNENGAGED,
        ),
        # Tracking tokens name delivery ids: SQLite must never hand out a deleted row's id again
        # (PostgreSQL sequences never do).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    # Kept (as NULL) when the subscriber is deleted, so the log and the counts stay true.
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[str] = mapped_column(String(300), default="")
    smtp_code: Mapped[int | None] = mapped_column()
    error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The relay that accepted the message, by name (it outlives a deleted relay row).
    relay_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    first_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    open_count: Mapped[int] = mapped_column(default=0)
    first_clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    click_count: Mapped[int] = mapped_column(default=0)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The first human open or click (a click implies an open) and the first human click: what segments
    # and reports mean by "opened" and "clicked". Machine opens and scanner clicks never set them. Kept
    # by the ENGAGEMENT_TRIGGERS on open_events and click_events (migration 0017), not by Python.
    engaged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    human_clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # True only for the rows that existed when migration 0003 ran: tracking links of the old format
    # (v1, the delivery id alone) are honoured for them, and refused for newer rows, whose id may be a
    # reused one on SQLite. The server default covers the send engine's INSERT ... SELECT.
    accepts_v1_tokens: Mapped[bool] = mapped_column(default=False, server_default=false())


# The database triggers on deliveries that keep CampaignDeliveryCount: installed by migration
# 0002_dashboard_indexes on both backends (0003 puts them back as they were after rebuilding deliveries
# on SQLite). No Python code writes these counts; tests/test_schema.py checks the triggers are there.
DELIVERY_COUNT_TRIGGERS = ("deliveries_count_insert", "deliveries_count_update", "deliveries_count_delete")


# The database triggers on open_events and click_events that keep Delivery.engaged_at,
# Delivery.human_clicked_at and Subscriber.last_engaged_at: installed by migration 0017_engagement on
# both backends, so every writer of events (the open buffer's flush, the click route, an import of old
# data) keeps them true without knowing of them. tests/test_schema.py checks they are there.
ENGAGEMENT_TRIGGERS = ("open_events_engagement", "click_events_engagement")


class CampaignDeliveryCount(Base):
    """How many of a campaign's deliveries are in each status, kept by the DELIVERY_COUNT_TRIGGERS
    (migration 0002), so progress and reports read a few rows instead of counting a million.

    A campaign's count for a status is the SUM of its rows. On PostgreSQL every statement that changes
    deliveries appends its net change as new rows (no row is updated, so concurrent senders never wait
    on each other), and the beat task reports.tasks.fold_delivery_counts folds them back into one row
    per status; readers only read. On SQLite, which has one writer at a time, the trigger keeps one row
    per status up to date."""

    __tablename__ = "campaign_delivery_counts"
    __table_args__ = (Index("ix_campaign_delivery_counts_campaign_status", "campaign_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20))
    deliveries: Mapped[int] = mapped_column()
