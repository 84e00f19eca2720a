"""Campaign reports: the numbers match the events, the charts and pages render, CSV exports, the API."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from mailapp.campaigns import lifecycle
from mailapp.csv_cells import csv_line
from mailapp.extensions import db
from mailapp.models import (
    CampaignDeliveryCount,
    CampaignStats,
    ClickEvent,
    Delivery,
    DeliveryStatus,
    OpenEvent,
)
from mailapp.reports import activity, exports
from mailapp.reports import figures as reports
from mailapp.reports.tasks import fold_delivery_counts
from mailapp.sending import tokens
from mailapp.tracking import opens as tracking
from mailapp.tracking.opens import OpenHit
from tests.tracking_fixtures import (
    LINKS,
    READER_UA,
    empty_open_buffer,
    make_campaign,
    make_delivery,
    settle,
)

__all__ = ["empty_open_buffer"]

READER = {"User-Agent": READER_UA}


def open_(client, delivery, user_agent: str = READER_UA) -> None:
    client.get(f"/o/{tokens.make_token('open', delivery.id)}.gif", headers={"User-Agent": user_agent})


def click(client, delivery, position: int, user_agent: str = READER_UA) -> None:
    response = client.get(
        f"/c/{tokens.make_token('click', delivery.id, position)}", headers={"User-Agent": user_agent}
    )
    assert response.status_code == 302


def unsubscribe(client, delivery) -> None:
    client.post(f"/u/{tokens.make_token('unsubscribe', delivery.id)}", data={"List-Unsubscribe": "One-Click"})


@pytest.fixture
def scenario(client):
    """10 recipients: 8 sent, 1 failed, 1 pending. Activity:
    d0: 2 human opens, clicks link 0 twice and link 1 once; d1: 1 human open;
    d2: Apple MPP open only; d3: human click on link 0 with images blocked (no open);
    d4: scanner click only; d5: unsubscribes; d6: Gmail proxy open (human, through a proxy) + human open."""
    campaign = make_campaign()
    sent = [make_delivery(campaign) for _ in range(8)]
    make_delivery(campaign, status="failed")
    make_delivery(campaign, status="pending")
    d0, d1, d2, d3, d4, d5, d6, _ = sent
    open_(client, d0)
    open_(client, d0)
    click(client, d0, 0)
    click(client, d0, 0)
    click(client, d0, 1)
    open_(client, d1)
    open_(client, d2, "Mozilla/5.0")
    click(client, d3, 0)
    click(client, d4, 2, "Mozilla/5.0 (compatible; Barracuda Sentinel)")
    unsubscribe(client, d5)
    open_(
        client,
        d6,
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    )
    open_(client, d6)
    settle()
    return campaign


def test_report_numbers_match_the_events(scenario):
    report = reports.campaign_report(scenario.id)
    assert (report.recipients, report.sent, report.failed, report.pending) == (10, 8, 1, 1)
    assert report.opens == 6
    assert report.machine_opens == 1  # Apple MPP's; Gmail's proxy fetches when the reader opens
    assert report.proxy_opens == 1
    # d0, d1, d6 opened as people; d3 clicked with images blocked, which counts as an open.
    assert report.unique_opens == 4
    assert report.clicks == 4
    assert report.unique_clicks == 2
    assert report.scanner_clicks == 1
    assert report.unsubscribes == 1
    assert report.open_rate == 0.5
    assert report.click_rate == 0.25
    assert report.click_to_open_rate == 0.5
    assert [(link.url, link.clicks, link.unique_clicks) for link in report.top_links] == [
        (LINKS[0], 3, 2),
        (LINKS[1], 1, 1),
        (LINKS[2], 0, 0),
    ]
    assert sum(point.opens for point in report.timeline) == report.opens
    assert sum(point.machine_opens for point in report.timeline) == report.machine_opens
    assert sum(point.clicks for point in report.timeline) == report.clicks


def test_counters_agree_with_a_recount_of_the_events(scenario):
    stats = db.session.get(CampaignStats, scenario.id)
    events = db.session.scalars(select(OpenEvent).where(OpenEvent.campaign_id == scenario.id)).all()
    assert stats.opens == len(events)
    assert stats.machine_opens == sum(1 for event in events if event.is_machine)
    assert stats.proxy_opens == sum(1 for event in events if event.via_proxy and not event.is_machine)
    assert sorted(event.via_proxy or "" for event in events) == ["", "", "", "", "apple_mpp", "gmail"]


def test_report_page_shows_the_figures_and_definitions(auth_client, scenario):
    page = auth_client.get(f"/reports/campaigns/{scenario.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'data-testid="open-rate">50.0%' in html
    assert 'data-testid="machine-opens">1<' in html
    assert 'data-testid="proxy-opens">1<' in html
    assert "Opens through a mail provider&#39;s proxy" in html
    assert 'data-testid="click-rate">25.0%' in html
    assert 'data-testid="click-to-open">50.0%' in html
    assert 'data-testid="unsubscribes">1<' in html
    assert "Rates are fractions of sent" in html
    assert "a click implies an open" in html
    assert "Mozilla/5.0</code>" in html
    assert html.count("<svg") == 2
    assert "<script" not in html.split("<main", 1)[1].split("</main>", 1)[0]
    assert LINKS[0] in html


def test_the_report_page_writes_counts_of_one_in_the_singular(auth_client, scenario):
    html = auth_client.get(f"/reports/campaigns/{scenario.id}").get_data(as_text=True)
    assert not re.search(r"\b1 (unique clicks|clicks|human unique opens)\b", html)
    assert re.search(r"\b\d[\d,]* unique clicks?\b", html)
    assert re.search(r"\b\d[\d,]* human unique opens?\b", html)


def test_report_page_needs_login_and_an_existing_campaign(client, auth_client):
    assert client.get("/reports/campaigns/1").status_code in (302, 404)
    assert auth_client.get("/reports/campaigns/999").status_code == 404


def test_report_of_a_campaign_with_no_activity(auth_client):
    campaign = make_campaign([], status="draft", started_at=None)
    page = auth_client.get(f"/reports/campaigns/{campaign.id}")
    assert page.status_code == 200
    assert "No activity yet" in page.get_data(as_text=True)
    report = reports.campaign_report(campaign.id)
    assert (report.sent, report.open_rate, report.timeline, report.top_links) == (0, 0.0, [], [])


def test_timeline_is_hourly_for_48_hours_then_daily():
    start = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)
    campaign = make_campaign(started_at=start)
    delivery = make_delivery(campaign)
    moments = [
        start + timedelta(minutes=10),
        start + timedelta(hours=5),
        start + timedelta(hours=47),
        start + timedelta(hours=50),
        start + timedelta(hours=70),
        start + timedelta(days=6),
    ]
    hits = [OpenHit(delivery.id, moment, READER_UA, "") for moment in moments]
    tracking.record_opens(hits)
    db.session.commit()
    points = reports.timeline(campaign, now=start + timedelta(days=7))
    hourly = [point for point in points if point.span == timedelta(hours=1)]
    daily = [point for point in points if point.span == timedelta(days=1)]
    assert hourly[0].at == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert len(hourly) == 48
    assert daily[0].at == datetime(2026, 1, 3, 9, tzinfo=UTC)
    assert [point.opens for point in daily] == [2, 0, 0, 0, 1]
    assert sum(point.opens for point in hourly) == 3
    assert all(point.at < daily[0].at for point in hourly)


def test_recipients_table_shows_each_recipients_activity(auth_client, scenario):
    html = auth_client.get(f"/reports/campaigns/{scenario.id}/recipients").get_data(as_text=True)
    assert html.count("data-delivery=") == 10
    assert "machine only" in html
    assert "scanner only" in html
    opened = auth_client.get(f"/reports/campaigns/{scenario.id}/recipients?show=opened").get_data(
        as_text=True
    )
    assert opened.count("data-delivery=") == 4
    clicked = auth_client.get(f"/reports/campaigns/{scenario.id}/recipients?show=clicked").get_data(
        as_text=True
    )
    assert clicked.count("data-delivery=") == 2
    unsubscribed = auth_client.get(f"/reports/campaigns/{scenario.id}/recipients?show=unsubscribed")
    assert unsubscribed.get_data(as_text=True).count("data-delivery=") == 1


def test_recipients_table_pages_by_keyset(auth_client, monkeypatch):
    monkeypatch.setattr(activity, "DELIVERY_PAGE_SIZE", 3)
    campaign = make_campaign()
    deliveries = [make_delivery(campaign) for _ in range(7)]
    rows, next_after = activity.activity_page(campaign.id)
    assert [row.delivery.id for row in rows] == [d.id for d in deliveries[:3]]
    rows, next_after = activity.activity_page(campaign.id, after=next_after)
    rows, next_after = activity.activity_page(campaign.id, after=next_after)
    assert [row.delivery.id for row in rows] == [deliveries[6].id]
    assert next_after is None
    page = auth_client.get(f"/reports/campaigns/{campaign.id}/recipients?after={deliveries[2].id}")
    assert page.get_data(as_text=True).count("data-delivery=") == 3


def test_every_activity_filter_pages_through_each_matching_recipient_exactly_once(client, monkeypatch):
    monkeypatch.setattr(activity, "DELIVERY_PAGE_SIZE", 2)
    campaign = make_campaign()
    sent = [make_delivery(campaign) for _ in range(9)]
    failed = make_delivery(campaign, status="failed")
    make_delivery(make_campaign())  # another campaign's recipient is never listed
    open_(client, sent[0])
    open_(client, sent[0])
    open_(client, sent[1], "Mozilla/5.0")  # machine only: not opened
    click(client, sent[2], 0)  # a click without an open counts as opened
    open_(client, sent[4])
    click(client, sent[4], 1)
    click(client, sent[5], 2, "Mozilla/5.0 (compatible; Barracuda Sentinel)")  # scanner: not clicked
    unsubscribe(client, sent[6])
    open_(client, sent[8])
    settle()
    expected = {
        "all": [*sent, failed],
        "opened": [sent[0], sent[2], sent[4], sent[8]],
        "clicked": [sent[2], sent[4]],
        "not_opened": [sent[1], sent[3], sent[5], sent[6], sent[7]],
        "unsubscribed": [sent[6]],
        "failed": [failed],
    }
    assert set(expected) == set(activity.ACTIVITY_FILTERS)
    for show, deliveries in expected.items():
        seen: list[int] = []
        after = 0
        while True:
            rows, next_after = activity.activity_page(campaign.id, show=show, after=after)
            assert len(rows) <= 2
            seen += [row.delivery.id for row in rows]
            if next_after is None:
                break
            after = next_after
        assert seen == [delivery.id for delivery in deliveries], show


def test_delivery_log_csv_streams_every_recipient_with_activity(auth_client, scenario, monkeypatch):
    monkeypatch.setattr(exports, "EXPORT_CHUNK", 3)
    response = auth_client.get(f"/reports/campaigns/{scenario.id}/deliveries.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.is_streamed
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 10
    assert sum(row["opened"] == "yes" for row in rows) == 4
    assert sum(row["clicked"] == "yes" for row in rows) == 2
    assert sum(row["machine_opens_only"] == "yes" for row in rows) == 1
    assert sum(bool(row["unsubscribed_at"]) for row in rows) == 1
    assert {row["status"] for row in rows} == {"sent", "failed", "pending"}


def test_csv_cells_cannot_become_formulas():
    assert csv_line(["=HYPERLINK(1)", "-2", "ok"]).startswith("'=HYPERLINK(1),'-2,ok")


def test_report_csv_has_the_figures_timeline_and_links(auth_client, scenario):
    response = auth_client.get(f"/reports/campaigns/{scenario.id}/report.csv")
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    figures = dict(row for row in csv.reader(io.StringIO(text.split("\r\n\r\n")[0])) if row)
    assert figures["unique_opens"] == "4"
    assert figures["open_rate"] == "0.5"
    assert "period_start" in text
    assert f"0,{LINKS[0]},3,2" in text


def test_api_report_has_exactly_the_documented_shape(api, scenario):
    response = api.get(f"/api/v1/campaigns/{scenario.id}/report")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {
        "recipients",
        "sent",
        "failed",
        "unique_opens",
        "opens",
        "machine_opens",
        "proxy_opens",
        "open_rate",
        "unique_clicks",
        "clicks",
        "click_rate",
        "unsubscribes",
        "hard_bounces",
        "hard_bounce_rate",
        "soft_bounces",
        "soft_bounce_rate",
        "complaints",
        "complaint_rate",
        "timeline",
        "top_links",
    }
    assert (body["recipients"], body["sent"], body["failed"]) == (10, 8, 1)
    assert (body["unique_opens"], body["opens"], body["machine_opens"], body["open_rate"]) == (4, 6, 1, 0.5)
    assert body["proxy_opens"] == 1
    assert (body["unique_clicks"], body["clicks"], body["click_rate"], body["unsubscribes"]) == (
        2,
        4,
        0.25,
        1,
    )
    assert body["top_links"][0] == {"url": LINKS[0], "clicks": 3, "unique_clicks": 2}
    assert all(
        set(point) == {"at", "opens", "clicks", "hard_bounces", "soft_bounces", "complaints"}
        for point in body["timeline"]
    )
    assert sum(point["opens"] for point in body["timeline"]) == 6
    datetime.fromisoformat(body["timeline"][0]["at"])


def test_api_report_errors(api, client):
    missing = api.get("/api/v1/campaigns/999/report")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/campaigns/1/report").status_code == 401


def _counted(campaign_id: int) -> dict[str, int]:
    """The truth the maintained counts must agree with: a COUNT over the delivery log."""
    counted = {str(status): 0 for status in DeliveryStatus}
    for status, number in db.session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.status)
    ):
        counted[status] = number
    return counted


def test_status_counts_agree_with_a_count_through_every_kind_of_change(scenario):
    other = make_campaign()
    make_delivery(other)
    assert reports.status_counts([scenario.id, other.id]) == {
        scenario.id: _counted(scenario.id),
        other.id: _counted(other.id),
    }
    assert _counted(scenario.id) == {"pending": 1, "sending": 0, "sent": 8, "failed": 1}
    # What the send engine does: claim pending rows, then mark them sent or failed, in bulk statements.
    for _ in range(3):
        make_delivery(scenario, status="pending")
    db.session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == scenario.id, Delivery.status == "pending")
        .values(status="sending")
    )
    assert reports.status_counts([scenario.id])[scenario.id] == _counted(scenario.id)
    db.session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == scenario.id, Delivery.status == "sending")
        .values(status="sent")
    )
    # Updates that change no status (tracking bumps counters) change no count.
    db.session.execute(
        update(Delivery).where(Delivery.campaign_id == scenario.id).values(open_count=Delivery.open_count + 1)
    )
    db.session.commit()
    assert reports.status_counts([scenario.id])[scenario.id] == _counted(scenario.id)
    # Retrying failed deliveries, deleting one, and a campaign deleted with its whole log.
    lifecycle.retry_failed_deliveries(scenario.id)
    db.session.delete(db.session.scalars(select(Delivery).where(Delivery.campaign_id == scenario.id)).first())
    db.session.commit()
    assert reports.status_counts([scenario.id])[scenario.id] == _counted(scenario.id)
    assert reports.delivery_counts([scenario.id])[scenario.id] == {
        "recipients": sum(_counted(scenario.id).values()),
        "sent": _counted(scenario.id)["sent"],
        "failed": _counted(scenario.id)["failed"],
    }
    db.session.delete(other)
    db.session.commit()
    left = db.session.scalar(
        select(func.count())
        .select_from(CampaignDeliveryCount)
        .where(CampaignDeliveryCount.campaign_id == other.id)
    )
    assert left == 0


def test_the_beat_task_folds_the_count_rows_that_reads_leave_alone(scenario, monkeypatch):
    monkeypatch.setattr(reports, "FOLD_COUNT_ROWS_FROM", 3)
    for _ in range(4):
        make_delivery(scenario, status="pending")
    rows = (
        select(func.count())
        .select_from(CampaignDeliveryCount)
        .where(CampaignDeliveryCount.campaign_id == scenario.id)
    )
    before = db.session.scalar(rows)
    assert reports.status_counts([scenario.id])[scenario.id] == _counted(scenario.id)
    db.session.commit()
    assert db.session.scalar(rows) == before
    folded = fold_delivery_counts()
    after = db.session.scalar(rows)
    if db.engine.dialect.name == "postgresql":
        # Each statement appended its own rows; the beat task folded them into one per status.
        assert folded == [scenario.id]
        assert before > after == 3
    else:
        assert before == after == 3  # SQLite's triggers keep one row per status
        assert folded == []
    assert reports.status_counts([scenario.id])[scenario.id] == _counted(scenario.id)


def test_timeline_rollup_agrees_with_the_events(scenario):
    points = reports.timeline(scenario)
    events = db.session.scalars(select(OpenEvent).where(OpenEvent.campaign_id == scenario.id)).all()
    human_clicks = db.session.scalar(
        select(func.count())
        .select_from(ClickEvent)
        .where(ClickEvent.campaign_id == scenario.id, ClickEvent.is_machine.is_(False))
    )
    assert sum(point.human_opens for point in points) == sum(1 for e in events if not e.is_machine) == 5
    assert sum(point.machine_opens for point in points) == sum(1 for e in events if e.is_machine) == 1
    assert sum(point.clicks for point in points) == human_clicks == 4


def test_reports_index_lists_campaigns_with_rates(auth_client, scenario):
    html = auth_client.get("/reports/").get_data(as_text=True)
    assert scenario.name in html
    assert "50.0%" in html


def test_big_campaigns_top_links_are_cached_the_timeline_and_counters_are_live(monkeypatch, scenario, client):
    monkeypatch.setattr(reports, "CACHE_FROM_EVENTS", 5)
    before = reports.campaign_report(scenario.id)
    click(client, make_delivery(scenario), 2)
    after = reports.campaign_report(scenario.id)
    assert after.clicks == before.clicks + 1  # the counters are live
    assert sum(p.clicks for p in after.timeline) == sum(p.clicks for p in before.timeline) + 1
    assert after.top_links == before.top_links  # the big aggregate comes from the cache
    monkeypatch.setattr(reports, "CACHE_FROM_EVENTS", 10**9)
    assert reports.campaign_report(scenario.id).top_links[2].clicks == 1
