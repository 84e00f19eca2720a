"""Figures for the dashboard home page: totals, recent campaigns with their key rates, and subscriber
growth. Every query is an indexed aggregate or a read of the per-campaign counters, so the page stays
fast with millions of subscribers and deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from sqlalchemy import case, func, literal_column, select, text

from mailapp.db_setup import is_postgres
from mailapp.extensions import db
from mailapp.models import (
    Campaign,
    CampaignStatus,
    Layout,
    Subscriber,
    SubscriberList,
    SubscriberStatus,
    utcnow,
)
from mailapp.reports.figures import CampaignSummary, cached, summaries

GROWTH_DAYS = 30
RECENT_CAMPAIGNS = 5


@dataclass(frozen=True)
class HomeSummary:
    subscribers_by_status: dict[str, int]
    lists: int
    layouts: int
    campaigns_sent: int
    recent_campaigns: list[CampaignSummary]
    growth: list[tuple[date, int]]
    # The subscriber totals are the planner's estimates (see estimated_subscriber_counts): the page
    # says "about".
    subscribers_estimated: bool = False

    @property
    def active_subscribers(self) -> int:
        return self.subscribers_by_status.get(SubscriberStatus.ACTIVE, 0)

    @property
    def unsubscribed(self) -> int:
        return self.subscribers_by_status.get(SubscriberStatus.UNSUBSCRIBED, 0)

    @property
    def total_subscribers(self) -> int:
        return sum(self.subscribers_by_status.values())

    @property
    def new_subscribers(self) -> int:
        return sum(count for _, count in self.growth)


def subscriber_counts() -> dict[str, int]:
    return {
        str(status): count
        for status, count in db.session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        )
    }


# From this many subscribers on, the home page shows PostgreSQL's estimate of the totals by status
# instead of counting them: a count over a million rows takes about a second, and "about 950,000 active"
# says what a home page needs to. Exact figures stay on the lists' pages and in exports.
ESTIMATE_SUBSCRIBERS_FROM = 200_000


def estimated_subscriber_counts(minimum: int | None = None) -> dict[str, int] | None:
    """{status: about how many} from the planner's statistics (the table's row estimate times each
    status's sampled frequency, as autovacuum's ANALYZE last saw them), rounded to three significant
    digits; None on SQLite, below `minimum` rows (ESTIMATE_SUBSCRIBERS_FROM), or before the table was
    ever analysed."""
    if not is_postgres():
        return None
    minimum = ESTIMATE_SUBSCRIBERS_FROM if minimum is None else minimum
    rows = db.session.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'subscribers'::regclass"))
    if rows is None or rows < max(minimum, 1):
        return None
    found = db.session.execute(
        text(
            "SELECT most_common_vals::text::text[], most_common_freqs FROM pg_stats "
            "WHERE schemaname = current_schema() AND tablename = 'subscribers' AND attname = 'status'"
        )
    ).first()
    if found is None or found[0] is None:
        return None
    return {str(status): _about(rows * frequency) for status, frequency in zip(*found, strict=True)}


def _about(value: float) -> int:
    """Three significant digits: 1,234,567 -> 1,230,000."""
    if value < 1000:
        return round(value)
    digits = len(str(int(value))) - 3
    return round(value, -digits)


def home_summary(*, zone: tzinfo = UTC, today: date | None = None, live: bool = False) -> HomeSummary:
    """live=False serves the subscriber totals and growth from a one-minute cache, and on a big table
    estimated totals (see estimated_subscriber_counts): with a million subscribers they are GROUP BYs
    over every row, and they move slowly. Campaign figures are live. The growth's days are the
    viewer's (`zone`)."""
    estimated = None
    if live or today is not None:
        by_status, growth = subscriber_counts(), subscriber_growth(zone=zone, today=today)
    else:
        estimated = estimated_subscriber_counts()
        by_status = estimated or cached(("subscriber_counts",), subscriber_counts)
        zone_today = utcnow().astimezone(zone).date()
        growth = cached(
            ("subscriber_growth", str(zone), zone_today),
            lambda: subscriber_growth(zone=zone, today=zone_today),
        )
    recent = list(
        db.session.scalars(
            select(Campaign)
            .where(Campaign.status != CampaignStatus.DRAFT)
            .order_by(Campaign.id.desc())
            .limit(RECENT_CAMPAIGNS)
        )
    )
    return HomeSummary(
        subscribers_by_status=by_status,
        lists=db.session.scalar(select(func.count()).select_from(SubscriberList)) or 0,
        layouts=db.session.scalar(select(func.count()).select_from(Layout)) or 0,
        campaigns_sent=db.session.scalar(
            select(func.count()).select_from(Campaign).where(Campaign.status == CampaignStatus.SENT)
        )
        or 0,
        recent_campaigns=summaries(recent),
        growth=growth,
        subscribers_estimated=estimated is not None,
    )


def subscriber_growth(
    *, zone: tzinfo = UTC, days: int = GROWTH_DAYS, today: date | None = None
) -> list[tuple[date, int]]:
    """New subscribers per day of the viewer's zone for the last `days` days, today (in that zone)
    included, zeros filled in.

    The days are cut in Python, where zoneinfo knows each day's UTC offset (a DST day lasts 23 or 25
    hours), and the database only sorts each row between those UTC instants: one query that SQLite,
    which knows no zones, runs as PostgreSQL does, over the created_at index's range."""
    today = today or utcnow().astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    day_list = [first + timedelta(days=offset) for offset in range(days)]
    starts = [datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC) for day in day_list]
    end = datetime(today.year, today.month, today.day, tzinfo=zone).astimezone(UTC) + timedelta(days=1)
    # The newest day first: a row takes the first day whose start it is past.
    day_index = case(
        *((Subscriber.created_at >= start, index) for index, start in reversed(list(enumerate(starts)))),
        else_=-1,
    ).label("day_index")
    counts = dict(
        db.session.execute(
            select(day_index, func.count())
            .where(Subscriber.created_at >= starts[0], Subscriber.created_at < end)
            .group_by(literal_column("day_index"))
        ).all()
    )
    return [(day, counts.get(index, 0)) for index, day in enumerate(day_list)]
