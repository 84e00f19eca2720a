"""Campaign report figures, computed from the per-campaign counters, indexed aggregates of the events,
and the delivery log.

Definitions (shown on the report page too):
- sent: deliveries the SMTP server accepted; every rate is a fraction of sent.
- opens: every recorded pixel fetch, machine ones included; machine_opens: those made by a mail privacy
  proxy, a security scanner or a prefetcher (see mailapp.tracking.machine), or within seconds of sending.
- unique_opens: recipients with at least one human open OR a human click (a click implies an open: the
  reader's client may block images). open_rate = unique_opens / sent.
- clicks, unique_clicks: human clicks and the recipients who clicked; scanner clicks are counted apart.
  click_rate = unique_clicks / sent; click_to_open_rate = unique_clicks / unique_opens.
- hard_bounces, soft_bounces, complaints: addresses with at least one such mail event for the campaign
  (at send time or reported later: DSNs, feedback loops, webhooks); each rate is that number / sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text

from mailapp.campaigns.lifecycle import get_campaign
from mailapp.db_setup import is_postgres
from mailapp.extensions import db
from mailapp.models import (
    Campaign,
    CampaignDeliveryCount,
    CampaignHourlyActivity,
    CampaignStats,
    CampaignStatus,
    ClickEvent,
    DeliveryStatus,
    Link,
    MailEvent,
    MailEventKind,
    utcnow,
)
from mailapp.sending.suppression import campaign_event_counts

HOURLY_SPAN = timedelta(hours=48)
TOP_LINKS = 20
COUNTER_FIELDS = (
    "opens",
    "machine_opens",
    "unique_opens",
    "clicks",
    "scanner_clicks",
    "unique_clicks",
    "unsubscribes",
)


@dataclass(frozen=True)
class TimelinePoint:
    at: datetime
    span: timedelta
    human_opens: int = 0
    machine_opens: int = 0
    clicks: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0

    @property
    def opens(self) -> int:
        return self.human_opens + self.machine_opens


@dataclass(frozen=True)
class LinkFigures:
    position: int
    url: str
    clicks: int
    unique_clicks: int


@dataclass
class CampaignReport:
    campaign: Campaign
    recipients: int = 0
    sent: int = 0
    failed: int = 0
    opens: int = 0
    machine_opens: int = 0
    unique_opens: int = 0
    clicks: int = 0
    scanner_clicks: int = 0
    unique_clicks: int = 0
    unsubscribes: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    timeline: list[TimelinePoint] = field(default_factory=list)
    top_links: list[LinkFigures] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return max(self.recipients - self.sent - self.failed, 0)

    @property
    def open_rate(self) -> float:
        return _fraction(self.unique_opens, self.sent)

    @property
    def click_rate(self) -> float:
        return _fraction(self.unique_clicks, self.sent)

    @property
    def click_to_open_rate(self) -> float:
        return _fraction(self.unique_clicks, self.unique_opens)

    @property
    def unsubscribe_rate(self) -> float:
        return _fraction(self.unsubscribes, self.sent)

    @property
    def hard_bounce_rate(self) -> float:
        return _fraction(self.hard_bounces, self.sent)

    @property
    def soft_bounce_rate(self) -> float:
        return _fraction(self.soft_bounces, self.sent)

    @property
    def complaint_rate(self) -> float:
        return _fraction(self.complaints, self.sent)

    def as_api(self) -> dict[str, Any]:
        return {
            "recipients": self.recipients,
            "sent": self.sent,
            "failed": self.failed,
            "unique_opens": self.unique_opens,
            "opens": self.opens,
            "machine_opens": self.machine_opens,
            "open_rate": self.open_rate,
            "unique_clicks": self.unique_clicks,
            "clicks": self.clicks,
            "click_rate": self.click_rate,
            "unsubscribes": self.unsubscribes,
            "hard_bounces": self.hard_bounces,
            "hard_bounce_rate": self.hard_bounce_rate,
            "soft_bounces": self.soft_bounces,
            "soft_bounce_rate": self.soft_bounce_rate,
            "complaints": self.complaints,
            "complaint_rate": self.complaint_rate,
            "timeline": [
                {
                    "at": point.at.isoformat(), "opens": point.opens, "clicks": point.clicks,
                    "hard_bounces": point.hard_bounces, "soft_bounces": point.soft_bounces,
                    "complaints": point.complaints,
                }
                for point in self.timeline
            ],
            "top_links": [
                {"url": link.url, "clicks": link.clicks, "unique_clicks": link.unique_clicks}
                for link in self.top_links
            ],
        }


# Top links over this many clicks or more are cached for CACHE_SECONDS: they take a GROUP BY over every
# click of the campaign. Smaller ones (and every counter, and the timeline) are always live.
CACHE_FROM_EVENTS = 50_000
CACHE_SECONDS = 60.0
_cache: dict[tuple, tuple[float, Any]] = {}
_cache_lock = threading.Lock()


def cached(key: tuple, compute: Callable[[], Any], *, seconds: float = CACHE_SECONDS) -> Any:
    """compute(), remembered in this process for `seconds`."""
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < seconds:
        return hit[1]
    value = compute()
    with _cache_lock:
        if len(_cache) > 256:
            _cache.clear()
        _cache[key] = (now, value)
    return value


def _fraction(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def counters_for(campaign_ids: list[int]) -> dict[int, CampaignStats]:
    if not campaign_ids:
        return {}
    return {
        stats.campaign_id: stats
        for stats in db.session.scalars(
            select(CampaignStats).where(CampaignStats.campaign_id.in_(campaign_ids))
        )
    }


def status_counts(campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """{campaign_id: {status: deliveries}} for every status, from the counts the database triggers keep
    (mailapp.models.CampaignDeliveryCount): exact, and a few rows per campaign however many recipients
    (fold_piled_up_delivery_counts keeps them few). Reads only."""
    counts = {campaign_id: {str(status): 0 for status in DeliveryStatus} for campaign_id in campaign_ids}
    if not campaign_ids:
        return counts
    for campaign_id, status, number in db.session.execute(
        select(
            CampaignDeliveryCount.campaign_id,
            CampaignDeliveryCount.status,
            func.sum(CampaignDeliveryCount.deliveries),
        )
        .where(CampaignDeliveryCount.campaign_id.in_(campaign_ids))
        .group_by(CampaignDeliveryCount.campaign_id, CampaignDeliveryCount.status)
    ):
        counts[campaign_id][status] = int(number)
    return counts


# A campaign's count rows are folded once there are this many: summing a few hundred rows is still
# cheap, and folding what is already a row or two per status would only churn the table.
FOLD_COUNT_ROWS_FROM = 200


def fold_piled_up_delivery_counts() -> list[int]:
    """On PostgreSQL, where every statement on deliveries appends its net change as new count rows (a
    sending campaign adds some with every batch), fold each campaign whose rows have piled up into one
    row per status. The beat task reports.tasks.fold_delivery_counts runs this, so reading pages never
    writes. Returns the campaigns folded; the caller commits. SQLite's triggers keep one row per status
    already."""
    if not is_postgres():
        return []
    piled_up = db.session.scalars(
        select(CampaignDeliveryCount.campaign_id)
        .group_by(CampaignDeliveryCount.campaign_id)
        .having(func.count() >= FOLD_COUNT_ROWS_FROM)
        .order_by(CampaignDeliveryCount.campaign_id)
    ).all()
    for campaign_id in piled_up:
        _fold_status_counts(campaign_id)
    return list(piled_up)


def _fold_status_counts(campaign_id: int) -> None:
    """One row per status instead of many, in one statement: rows appended meanwhile by a concurrent
    statement are not in its snapshot, so they are neither deleted nor summed, and stay counted."""
    db.session.execute(
        text(
            "WITH folded AS (DELETE FROM campaign_delivery_counts WHERE campaign_id = :campaign_id "
            "RETURNING status, deliveries) "
            "INSERT INTO campaign_delivery_counts (campaign_id, status, deliveries) "
            "SELECT :campaign_id, status, sum(deliveries) FROM folded GROUP BY status "
            "HAVING sum(deliveries) <> 0"
        ),
        {"campaign_id": campaign_id},
    )


def delivery_counts(campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """{campaign_id: {recipients, sent, failed}} from the maintained status counts (see status_counts)."""
    return {
        campaign_id: {
            "recipients": sum(by_status.values()),
            "sent": by_status[DeliveryStatus.SENT],
            "failed": by_status[DeliveryStatus.FAILED],
        }
        for campaign_id, by_status in status_counts(campaign_ids).items()
    }


def campaign_report(campaign_id: int) -> CampaignReport:
    """The report's figures."""
    campaign = get_campaign(campaign_id)
    counters = counters_for([campaign.id])
    counts = delivery_counts([campaign.id])[campaign.id]
    stats = counters.get(campaign.id)
    report = CampaignReport(campaign=campaign, **counts)
    if stats is not None:
        for name in COUNTER_FIELDS:
            setattr(report, name, getattr(stats, name) or 0)
    events = campaign_event_counts([campaign.id])[campaign.id]
    report.hard_bounces = events[MailEventKind.HARD_BOUNCE]
    report.soft_bounces = events[MailEventKind.SOFT_BOUNCE]
    report.complaints = events[MailEventKind.COMPLAINT]
    report.timeline = timeline(campaign)
    if report.clicks + report.scanner_clicks >= CACHE_FROM_EVENTS:
        report.top_links = cached(("top_links", campaign.id), lambda: top_links(campaign.id))
    else:
        report.top_links = top_links(campaign.id)
    return report


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


_EVENT_COLUMNS = {MailEventKind.HARD_BOUNCE: 3, MailEventKind.SOFT_BOUNCE: 4, MailEventKind.COMPLAINT: 5}


def _mail_event_hours(campaign_id: int) -> list[tuple[datetime, str, int]]:
    """(hour, kind, events) of the campaign's mail events, grouped in the database: one row per hour
    and kind, read through the (campaign_id, kind, occurred_at) index."""
    if is_postgres():
        hour = func.date_trunc("hour", MailEvent.occurred_at)
    else:
        hour = func.strftime("%Y-%m-%d %H:00:00", MailEvent.occurred_at)
    rows = db.session.execute(
        select(hour, MailEvent.kind, func.count())
        .where(MailEvent.campaign_id == campaign_id)
        .group_by(hour, MailEvent.kind)
    )
    result = []
    for moment, kind, number in rows:
        if isinstance(moment, str):  # SQLite's strftime
            moment = datetime.fromisoformat(moment)
        result.append((moment.replace(tzinfo=UTC), kind, int(number)))
    return result


def timeline(campaign: Campaign, *, now: datetime | None = None) -> list[TimelinePoint]:
    """Opens (human and machine), human clicks, bounces and complaints per hour for the first 48 hours
    from the campaign's start, then per day (24-hour spans from the end of the hourly part). Empty
    spans are included up to the last activity (or now, during the first 48 hours)."""
    now = now or utcnow()
    # The hourly rollup the database triggers keep (mailapp.models.CampaignHourlyActivity): one row per
    # hour with activity, however many events.
    hourly: dict[datetime, list[int]] = {
        hour: [human, machine_count, clicks, 0, 0, 0]
        for hour, human, machine_count, clicks in db.session.execute(
            select(
                CampaignHourlyActivity.hour,
                CampaignHourlyActivity.human_opens,
                CampaignHourlyActivity.machine_opens,
                CampaignHourlyActivity.clicks,
            ).where(CampaignHourlyActivity.campaign_id == campaign.id)
        )
    }
    for hour, kind, number in _mail_event_hours(campaign.id):
        hourly.setdefault(hour, [0] * 6)[_EVENT_COLUMNS[MailEventKind(kind)]] += number
    start_moment = campaign.started_at or (min(hourly) if hourly else None)
    if start_moment is None:
        return []
    start = _floor_hour(min([start_moment, *hourly]))
    cutoff = _floor_hour(start_moment) + HOURLY_SPAN
    last = max([*hourly, _floor_hour(min(now, cutoff - timedelta(hours=1)))])

    def key(hour: datetime) -> tuple[datetime, timedelta]:
        if hour < cutoff:
            return hour, timedelta(hours=1)
        return cutoff + timedelta(days=(hour - cutoff) // timedelta(days=1)), timedelta(days=1)

    buckets: dict[datetime, list] = {}
    moment = start
    while moment <= last:
        at, span = key(moment)
        buckets.setdefault(at, [span, 0, 0, 0, 0, 0, 0])
        moment += timedelta(hours=1) if moment < cutoff else timedelta(days=1)
    for hour, figures in hourly.items():
        at, span = key(hour)
        entry = buckets.setdefault(at, [span, 0, 0, 0, 0, 0, 0])
        for index, number in enumerate(figures, start=1):
            entry[index] += number
    return [
        TimelinePoint(at, span, *figures) for at, (span, *figures) in sorted(buckets.items())
    ]


def top_links(campaign_id: int, limit: int = TOP_LINKS) -> list[LinkFigures]:
    """The campaign's tracked links by human clicks, the unclicked ones last."""
    clicks = (
        select(
            ClickEvent.link_id,
            func.count().label("clicks"),
            func.count(ClickEvent.delivery_id.distinct()).label("unique_clicks"),
        )
        .where(ClickEvent.campaign_id == campaign_id, ClickEvent.is_machine.is_(False))
        .group_by(ClickEvent.link_id)
        .subquery()
    )
    rows = db.session.execute(
        select(
            Link.position,
            Link.url,
            func.coalesce(clicks.c.clicks, 0),
            func.coalesce(clicks.c.unique_clicks, 0),
        )
        .outerjoin(clicks, clicks.c.link_id == Link.id)
        .where(Link.campaign_id == campaign_id)
        .order_by(func.coalesce(clicks.c.clicks, 0).desc(), Link.position)
        .limit(limit)
    )
    return [LinkFigures(position, url, total, unique) for position, url, total, unique in rows]


# --- reports index ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignSummary:
    campaign: Campaign
    sent: int
    unique_opens: int
    unique_clicks: int
    unsubscribes: int

    @property
    def open_rate(self) -> float:
        return _fraction(self.unique_opens, self.sent)

    @property
    def click_rate(self) -> float:
        return _fraction(self.unique_clicks, self.sent)


def summaries(campaigns: list[Campaign]) -> list[CampaignSummary]:
    """Key rates of several campaigns, from the maintained counters."""
    counters = counters_for([campaign.id for campaign in campaigns])
    counts = delivery_counts([campaign.id for campaign in campaigns])
    result = []
    for campaign in campaigns:
        stats = counters.get(campaign.id)
        result.append(
            CampaignSummary(
                campaign=campaign,
                sent=counts[campaign.id]["sent"],
                unique_opens=stats.unique_opens if stats else 0,
                unique_clicks=stats.unique_clicks if stats else 0,
                unsubscribes=stats.unsubscribes if stats else 0,
            )
        )
    return result


def sent_campaigns_page(page: int, per_page: int = 25):  # a Flask-SQLAlchemy Pagination
    return db.paginate(
        select(Campaign).where(Campaign.status != CampaignStatus.DRAFT).order_by(Campaign.id.desc()),
        page=page,
        per_page=per_page,
        error_out=False,
    )
