"""The log of system mail: confirmations and welcomes of signups, invites and password resets. One row
per message, written before it is queued, so what became of each one (sent, failed and why) is on the
subscriber's page the way a campaign's deliveries are on its report."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mailapp.models.base import Base, UTCDateTime, utcnow


class SystemMessageKind(enum.StrEnum):
    CONFIRMATION = "confirmation"
    WELCOME = "welcome"
    INVITE = "invite"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a kind of message, not a password


class SystemMessageStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class SystemMessage(Base):
    __tablename__ = "system_messages"
    __table_args__ = (
        # A subscriber's page lists their messages, newest first.
        Index("ix_system_messages_subscriber_id_id", "subscriber_id", "id"),
        # The send task names a row by id: SQLite must never hand a deleted row's id to a new message.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    # Kept (as NULL) when the subscriber or list is deleted, so the log stays true.
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id", ondelete="SET NULL"))
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id", ondelete="SET NULL"))
    email: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998))
    # The text and HTML to send, sealed (SecretBox): they carry one-time links (confirmation, invite,
    # password reset). Emptied once the message is sent or has failed for good.
    content_sealed: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default=SystemMessageStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    smtp_code: Mapped[int | None] = mapped_column()
    # The relay's reply to a refusal, or why the message could not be sent.
    error: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(300), default="")
    relay_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
