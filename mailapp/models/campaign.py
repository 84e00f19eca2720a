"""Campaigns and their target lists."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Column, ForeignKey, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailapp.models.base import Base, UTCDateTime, utcnow
from mailapp.models.layout import Layout
from mailapp.models.relay import SmtpRelay
from mailapp.models.sender_identity import SenderIdentity
from mailapp.models.subscriber import SubscriberList


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"
    FAILED = "failed"


campaign_lists = Table(
    "campaign_lists",
    Base.metadata,
    Column("campaign_id", ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    Column("list_id", ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True),
)


class Campaign(Base):
    __tablename__ = "campaigns"
    # Tracking tokens bind the campaign id: SQLite must never hand out a deleted campaign's id again.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(500))
    from_name: Mapped[str] = mapped_column(String(200), default="")
    from_email: Mapped[str] = mapped_column(String(320))
    reply_to: Mapped[str] = mapped_column(String(320), default="")
    layout_id: Mapped[int | None] = mapped_column(ForeignKey("layouts.id", ondelete="SET NULL"))
    message: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default=CampaignStatus.DRAFT, index=True)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # The IANA zone the schedule was picked in: send_at is shown in it ("" shows the viewer's zone).
    send_timezone: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # Bumped on every schedule change, so a queued start message for an older schedule does nothing.
    schedule_version: Mapped[int] = mapped_column(default=0)
    # The schedule_version whose start message (an ETA task) has been queued, so the beat dispatcher
    # queues each schedule once as it enters the horizon rather than on every tick.
    start_queued_version: Mapped[int] = mapped_column(default=0)
    # The identity the From fields were filled from (they stay editable); its relay is used unless the
    # campaign names its own.
    sender_identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("sender_identities.id", ondelete="SET NULL")
    )
    relay_id: Mapped[int | None] = mapped_column(ForeignKey("smtp_relays.id", ondelete="SET NULL"))
    # While a relay's hourly or daily cap holds the campaign back: when its continuation is due. The
    # first task to hit the cap sets it and queues the continuation; the others, and the sweeper, wait.
    waiting_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    track_opens: Mapped[bool] = mapped_column(default=True)
    track_clicks: Mapped[bool] = mapped_column(default=True)
    # Why the campaign is paused or failed, shown on its page.
    status_reason: Mapped[str] = mapped_column(Text, default="")
    total_recipients: Mapped[int] = mapped_column(default=0)
    # Set once the delivery rows exist: a campaign claimed for sending but not yet snapshotted (its
    # worker died in between) is not "finished" just because it has no pending rows.
    snapshot_taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    layout: Mapped[Layout | None] = relationship()
    lists: Mapped[list[SubscriberList]] = relationship(secondary=campaign_lists)
    sender_identity: Mapped[SenderIdentity | None] = relationship()
    relay: Mapped[SmtpRelay | None] = relationship()
