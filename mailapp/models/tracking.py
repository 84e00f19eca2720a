"""Tracked links, the open and click events recorded against deliveries, and per-campaign counters.

The counters are kept two ways, each in one place: CampaignStats by Python, in the transaction that
records the events (mailapp.tracking.counters and opens, which need to know who had already engaged), and
CampaignHourlyActivity by the HOURLY_ACTIVITY_TRIGGERS of migration 0002. Delivery counts per status
are kept by triggers too (mailapp.models.delivery.DELIVERY_COUNT_TRIGGERS)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
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


# Human events only, in delivery order within a campaign: "who opened / clicked" pages of a campaign
# read the next page of recipients straight from these, however rare they are.
HUMAN_ONLY = text("is_machine = false")


class OpenEvent(Base):
    __tablename__ = "open_events"
    __table_args__ = (
        Index("ix_open_events_campaign_at", "campaign_id", "at"),
        Index("ix_open_events_delivery_machine", "delivery_id", "is_machine"),
        Index(
            "ix_open_events_campaign_human_delivery",
            "campaign_id",
            "delivery_id",
            postgresql_where=HUMAN_ONLY,
            sqlite_where=HUMAN_ONLY,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    is_machine: Mapped[bool] = mapped_column(default=False)
    # The mail provider's image proxy that fetched the pixel (mailapp.tracking.machine.MAIL_PROXIES'
    # keys), None for a direct fetch. Gmail's and Yahoo's fetch on open: human opens, shown apart.
    via_proxy: Mapped[str | None] = mapped_column(String(20))
    # The Redis stream entry an open was buffered as: a flush that crashed after its commit but before
    # removing the entries replays them, and this key makes the replay insert (and count) nothing twice.
    buffer_key: Mapped[str | None] = mapped_column(String(40), unique=True)


class ClickEvent(Base):
    __tablename__ = "click_events"
    __table_args__ = (
        Index("ix_click_events_campaign_at", "campaign_id", "at"),
        Index("ix_click_events_delivery_machine", "delivery_id", "is_machine"),
        Index(
            "ix_click_events_campaign_human_delivery",
            "campaign_id",
            "delivery_id",
            postgresql_where=HUMAN_ONLY,
            sqlite_where=HUMAN_ONLY,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    is_machine: Mapped[bool] = mapped_column(default=False)


class CampaignStats(Base):
    """Engagement counters per campaign, kept by mailapp.tracking.counters in the same transaction as
    the events they count, so the dashboard and reports read one row instead of counting millions of
    events.

    unique_opens counts recipients with a human open OR a human click (a click implies an open);
    clicks and unique_clicks leave out scanner clicks, which are counted in scanner_clicks;
    proxy_opens are the human opens (counted in opens, not machine_opens) that came through a mail
    provider's image proxy that fetches on open (Gmail, Yahoo)."""

    __tablename__ = "campaign_stats"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    opens: Mapped[int] = mapped_column(default=0)
    machine_opens: Mapped[int] = mapped_column(default=0)
    proxy_opens: Mapped[int] = mapped_column(default=0, server_default="0")
    unique_opens: Mapped[int] = mapped_column(default=0)
    clicks: Mapped[int] = mapped_column(default=0)
    scanner_clicks: Mapped[int] = mapped_column(default=0)
    unique_clicks: Mapped[int] = mapped_column(default=0)
    unsubscribes: Mapped[int] = mapped_column(default=0)


# The database triggers that keep CampaignHourlyActivity: installed by migration 0002_dashboard_indexes
# on both backends. No Python code writes these rows; tests/test_schema.py checks the triggers are there.
HOURLY_ACTIVITY_TRIGGERS = ("open_events_roll_up", "click_events_roll_up")


class CampaignHourlyActivity(Base):
    """Opens (human and machine) and human clicks per campaign and UTC hour, kept by the
    HOURLY_ACTIVITY_TRIGGERS on open_events and click_events (migration 0002): the report's timeline
    reads these few rows instead of grouping every event. Events are only ever deleted with their
    campaign, which takes these rows too."""

    __tablename__ = "campaign_hourly_activity"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    human_opens: Mapped[int] = mapped_column(default=0)
    machine_opens: Mapped[int] = mapped_column(default=0)
    clicks: Mapped[int] = mapped_column(default=0)
