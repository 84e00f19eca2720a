"""Tracked links and the open and click events recorded against deliveries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailapp.models.base import Base, UTCDateTime, utcnow


class Link(Base):
    __tablename__ = "links"
    __table_args__ = (UniqueConstraint("campaign_id", "position", name="uq_links_campaign_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    # The link's index in the layout: click tokens carry it, so a token can only point at a stored URL.
    position: Mapped[int] = mapped_column()
    url: Mapped[str] = mapped_column(Text)


class OpenEvent(Base):
    __tablename__ = "open_events"
    __table_args__ = (Index("ix_open_events_campaign_at", "campaign_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    is_machine: Mapped[bool] = mapped_column(default=False)


class ClickEvent(Base):
    __tablename__ = "click_events"
    __table_args__ = (Index("ix_click_events_campaign_at", "campaign_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    is_machine: Mapped[bool] = mapped_column(default=False)
