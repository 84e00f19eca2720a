"""Provider webhooks: one-time tokens already accepted (so a captured request cannot be replayed), and
large verified batches waiting to be recorded."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from mailapp.models.base import Base, UTCDateTime, utcnow


class WebhookReplayToken(Base):
    """A signed request's token (Mailgun's signature.token), kept until its timestamp leaves the replay
    window, after which the timestamp check alone refuses the request."""

    __tablename__ = "webhook_replay_tokens"

    provider: Mapped[str] = mapped_column(String(20), primary_key=True)
    token: Mapped[str] = mapped_column(String(100), primary_key=True)
    # Expired rows are deleted as new tokens are claimed.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class WebhookBatch(Base):
    """A verified request with more events than are recorded while the provider waits for its answer
    (WEBHOOK_INLINE_EVENTS): kept here, committed before the 2xx, until a task has recorded every
    event, and then deleted. A batch still here a minute later is recorded again by beat's sweep (the
    events' dedupe keys make a second pass change nothing)."""

    __tablename__ = "webhook_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    # The parsed events (mailapp/webhooks/events.py ProviderEvent as JSON), not the raw body.
    events: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
