"""Sender identities: a saved From name, From address and Reply-To that campaigns pick instead of typing
them, optionally naming the relay their mail goes through."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailapp.models.base import Base, UTCDateTime, utcnow
from mailapp.models.relay import SmtpRelay


class SenderIdentity(Base):
    __tablename__ = "sender_identities"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)  # how pickers label it
    from_name: Mapped[str] = mapped_column(String(200), default="")
    from_email: Mapped[str] = mapped_column(String(320))
    reply_to: Mapped[str] = mapped_column(String(320), default="")
    # None: the default relay. A campaign's own relay choice wins over this one.
    relay_id: Mapped[int | None] = mapped_column(ForeignKey("smtp_relays.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    relay: Mapped[SmtpRelay | None] = relationship()
