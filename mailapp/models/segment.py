"""Segments: saved rule trees that pick subscribers (mailapp.segment_rules compiles them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from mailapp.models.base import Base, UTCDateTime, utcnow


class Segment(Base):
    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # The validated rule tree, as mailapp.segment_rules.validate_rules returns it.
    rules: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


campaign_segments = Table(
    "campaign_segments",
    Base.metadata,
    Column("campaign_id", ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    # RESTRICT: a segment a campaign still targets cannot vanish under it (segments.services refuses
    # with a clear error first).
    Column("segment_id", ForeignKey("segments.id", ondelete="RESTRICT"), primary_key=True),
)
