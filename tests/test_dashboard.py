"""The dashboard home: totals, subscriber growth, and recent campaigns with their rates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from mailapp.dashboard import services as dashboard
from mailapp.dashboard.services import home_summary, subscriber_growth
from mailapp.extensions import db
from mailapp.sending import tokens
from tests.factories import CampaignFactory, SubscriberFactory
from tests.tracking_fixtures import READER_UA, empty_open_buffer, make_campaign, make_delivery, settle

__all__ = ["empty_open_buffer"]


def at_day(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def test_growth_counts_new_subscribers_per_day_for_30_days():
    today = date(2026, 3, 31)
    for days_ago, how_many in [(0, 3), (1, 1), (29, 2), (30, 5)]:
        for _ in range(how_many):
            SubscriberFactory(created_at=at_day(today - timedelta(days=days_ago)))
    growth = subscriber_growth(today=today)
    assert len(growth) == 30
    assert growth[0] == (date(2026, 3, 2), 2)
    assert growth[-1] == (today, 3)
    assert growth[-2] == (date(2026, 3, 30), 1)
    assert sum(count for _, count in growth) == 6


def _count_on(growth: list[tuple[date, int]], day: date) -> int:
    return dict(growth)[day]


def test_growth_days_are_the_viewers_days_on_either_side_of_utc():
    # 23:30 UTC on the 30th: already the 31st in Tokyo (UTC+9), still the 30th's evening in New York.
    SubscriberFactory(created_at=datetime(2026, 3, 30, 23, 30, tzinfo=UTC))
    today = date(2026, 3, 31)
    tokyo = subscriber_growth(zone=ZoneInfo("Asia/Tokyo"), today=today)
    new_york = subscriber_growth(zone=ZoneInfo("America/New_York"), today=today)
    utc = subscriber_growth(today=today)
    assert (_count_on(tokyo, date(2026, 3, 31)), _count_on(tokyo, date(2026, 3, 30))) == (1, 0)
    assert (_count_on(new_york, date(2026, 3, 30)), _count_on(new_york, date(2026, 3, 31))) == (1, 0)
    assert _count_on(utc, date(2026, 3, 30)) == 1


def test_growth_days_follow_the_zones_offset_across_a_dst_change_and_a_half_hour_zone():
    new_york = ZoneInfo("America/New_York")
    # New York moved to summer time on 8 March 2026: that day's midnight was 05:00 UTC, the next 04:00.
    SubscriberFactory(created_at=datetime(2026, 3, 9, 4, 30, tzinfo=UTC))  # 9 March 00:30 EDT
    SubscriberFactory(created_at=datetime(2026, 3, 8, 4, 30, tzinfo=UTC))  # 7 March 23:30 EST
    growth = subscriber_growth(zone=new_york, today=date(2026, 3, 10))
    assert [_count_on(growth, date(2026, 3, day)) for day in (7, 8, 9)] == [1, 0, 1]
    # India is UTC+5:30: 18:29 UTC is 23:59 there, 18:31 UTC the next day.
    SubscriberFactory(created_at=datetime(2026, 3, 20, 18, 29, tzinfo=UTC))
    SubscriberFactory(created_at=datetime(2026, 3, 20, 18, 31, tzinfo=UTC))
    india = subscriber_growth(zone=ZoneInfo("Asia/Kolkata"), today=date(2026, 3, 25))
    assert [_count_on(india, date(2026, 3, day)) for day in (20, 21)] == [1, 1]


def test_the_home_pages_growth_chart_counts_in_the_viewers_zone(auth_client, user):
    user.timezone = "Asia/Tokyo"
    db.session.commit()
    tokyo_today = datetime.now(ZoneInfo("Asia/Tokyo")).date()
    # 00:30 in Tokyo today: 15:30 UTC on the day before, which a UTC chart would count yesterday.
    SubscriberFactory(created_at=datetime(tokyo_today.year, tokyo_today.month, tokyo_today.day, 0, 30,
                                          tzinfo=ZoneInfo("Asia/Tokyo")))
    html = auth_client.get("/").get_data(as_text=True)
    assert f"<title>{tokyo_today:%d %b}: 1 new subscriber</title>" in html
    assert "days in Asia/Tokyo" in html


def test_totals_by_status():
    SubscriberFactory.create_batch(3)
    SubscriberFactory(status="unsubscribed")
    SubscriberFactory(status="blocklisted")
    summary = home_summary(live=True)
    assert (summary.active_subscribers, summary.unsubscribed, summary.total_subscribers) == (3, 1, 5)
    assert summary.new_subscribers == 5


def test_home_page_shows_recent_campaigns_with_rates_and_the_growth_chart(auth_client):
    campaign = make_campaign(name="Spring news")
    CampaignFactory(name="Unsent draft")
    deliveries = [make_delivery(campaign) for _ in range(4)]
    auth_client.get(
        f"/o/{tokens.make_token('open', deliveries[0].id)}.gif", headers={"User-Agent": READER_UA}
    )
    auth_client.get(
        f"/c/{tokens.make_token('click', deliveries[1].id, 0)}", headers={"User-Agent": READER_UA}
    )
    settle()
    html = auth_client.get("/").get_data(as_text=True)
    assert "Spring news" in html
    assert "Unsent draft" not in html
    assert "50.0%" in html  # 2 of 4 opened (one by clicking)
    assert "25.0%" in html  # 1 of 4 clicked
    assert 'aria-label="New subscribers per day, last 30 days"' in html
    assert 'data-testid="active-subscribers">4<' in html
    assert f'/reports/campaigns/{campaign.id}"' in html


def test_empty_dashboard_says_what_to_do(auth_client):
    html = auth_client.get("/").get_data(as_text=True)
    assert "No campaigns sent yet" in html
    assert "<svg" in html


def test_recent_campaign_counts_are_true_even_after_the_campaign_finished():
    campaign = make_campaign(finished_at=datetime.now(UTC))
    make_delivery(campaign)
    assert home_summary().recent_campaigns[0].sent == 1
    db.session.commit()
    # The counts the database maintains follow every change, with no recount of the delivery log.
    make_delivery(campaign)
    make_delivery(campaign, status="failed")
    assert home_summary().recent_campaigns[0].sent == 2


def test_subscriber_figures_are_served_from_a_one_minute_cache():
    SubscriberFactory()
    assert home_summary().active_subscribers == 1
    SubscriberFactory()
    assert home_summary().active_subscribers == 1
    assert home_summary(live=True).active_subscribers == 2


def test_a_big_subscriber_table_shows_estimated_totals_marked_about(auth_client, monkeypatch):
    for _ in range(20):
        SubscriberFactory()
    for _ in range(5):
        SubscriberFactory(status="unsubscribed")
    db.session.commit()
    if db.engine.dialect.name != "postgresql":
        assert dashboard.estimated_subscriber_counts(minimum=1) is None  # SQLite has no statistics
        assert "about" not in auth_client.get("/").get_data(as_text=True)
        return
    db.session.execute(text("ANALYZE subscribers"))
    db.session.commit()
    assert dashboard.estimated_subscriber_counts(minimum=1) == {"active": 20, "unsubscribed": 5}
    assert dashboard.estimated_subscriber_counts(minimum=26) is None
    assert "about" not in auth_client.get("/").get_data(as_text=True)
    monkeypatch.setattr(dashboard, "ESTIMATE_SUBSCRIBERS_FROM", 10)
    html = auth_client.get("/").get_data(as_text=True)
    assert "about</span> 20<" in html
    assert "about 25 in all" in html


def test_estimates_are_rounded_to_three_significant_digits():
    assert [dashboard._about(value) for value in (7.4, 999.6, 1234.0, 987_654.0, 1_234_567.0)] == [
        7,
        1000,
        1230,
        988_000,
        1_230_000,
    ]
