"""One-time tokens of provider webhooks already accepted, so that a captured request cannot be replayed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from mailapp.models.base import Base, UTCDateTime


class WebhookReplayToken(Base):
    """A signed request's token (Mailgun's signature.token), kept until its timestamp leaves the replay
    window, after which the timestamp check alone refuses the request."""

    __tablename__ = "webhook_replay_tokens"

    provider: Mapped[str] = mapped_column(String(20), primary_key=True)
    token: Mapped[str] = mapped_column(String(100), primary_key=True)
    # Expired rows are deleted as new tokens are claimed.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
