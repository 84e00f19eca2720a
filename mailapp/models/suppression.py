"""Addresses we must not send to (suppressions), and the bounce and complaint reports (mail events)
that put most of them there."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mailapp.models.base import Base, UTCDateTime, utcnow


class MailEventKind(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"


class SuppressionReason(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"  # too many soft bounces within the window (BouncePolicy)
    COMPLAINT = "complaint"
    MANUAL = "manual"
    IMPORT = "import"


class Suppression(Base):
    """One address that no campaign sends to, whatever list it is on, until the suppression is lifted.

    A lifted suppression keeps its row (lifted_at set), so the page can say who lifted it and why;
    suppressing the address again reuses the row."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased like subscribers.email, so the snapshot's NOT EXISTS is one index probe.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(String(20))
    # Who said so: "smtp", "dsn", "arf", "imap", "receiver", "webhook:ses", "dashboard", "api", "import".
    source: Mapped[str] = mapped_column(String(40), default="")
    detail: Mapped[str] = mapped_column(Text, default="")  # the diagnostic, or the person's note
    # The campaign whose message bounced or was complained about. No foreign key: the suppression
    # outlives the campaign.
    campaign_id: Mapped[int | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_reason: Mapped[str] = mapped_column(Text, default="")
    lifted_by: Mapped[str] = mapped_column(String(40), default="")  # "dashboard", "api"


class MailEvent(Base):
    """One bounce or complaint report, from whichever source: the SMTP reply at send time, a DSN or
    ARF message, a provider's webhook."""

    __tablename__ = "mail_events"
    __table_args__ = (
        # Per-campaign rates and their chart over time.
        Index("ix_mail_events_campaign_kind", "campaign_id", "kind", "occurred_at"),
        # An address's soft bounces within the policy's window.
        Index("ix_mail_events_email_kind", "email", "kind", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    email: Mapped[str] = mapped_column(String(320))  # lower-cased
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    # No foreign keys to deliveries and campaigns: the report stays when a campaign is deleted.
    delivery_id: Mapped[int | None] = mapped_column(index=True)
    campaign_id: Mapped[int | None] = mapped_column()
    source: Mapped[str] = mapped_column(String(40), default="")
    status_code: Mapped[str] = mapped_column(String(20), default="")  # "5.1.1" or "550"
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    # The same report arriving twice (an IMAP message read again, a provider retrying a webhook) has
    # the same key, and is recorded once. NULL: the source has no way to tell.
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
