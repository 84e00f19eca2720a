"""Bounces and complaints in a campaign's report: rates over sent on the page, in the API and the CSV,
their chart over time, and the mark on the recipients' delivery log."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailapp.models import MailEventKind, utcnow
from mailapp.reports import figures
from mailapp.sending.suppression import BouncePolicy, IncomingEvent, record_mail_event
from tests.campaign_fixtures import make_delivery
from tests.factories import CampaignFactory

POLICY = BouncePolicy(auto_pause_min_sent=10**9)


@pytest.fixture
def bounced_campaign(db):
    """10 sent: two addresses hard-bounced (one reported twice, by two sources), one soft-bounced, one
    complained, the events spread over two hours."""
    start = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    campaign = CampaignFactory(status="sent", started_at=start)
    rows = [make_delivery(campaign.id, status="sent") for _ in range(10)]
    events = [
        (MailEventKind.HARD_BOUNCE, rows[0], "smtp", start + timedelta(minutes=5)),
        (MailEventKind.HARD_BOUNCE, rows[0], "dsn", start + timedelta(minutes=50)),
        (MailEventKind.HARD_BOUNCE, rows[1], "dsn", start + timedelta(hours=1, minutes=5)),
        (MailEventKind.SOFT_BOUNCE, rows[2], "dsn", start + timedelta(hours=1, minutes=10)),
        (MailEventKind.COMPLAINT, rows[3], "arf", start + timedelta(hours=1, minutes=20)),
    ]
    for kind, row, source, at in events:
        record_mail_event(IncomingEvent(kind, row.email, source, delivery_id=row.id, occurred_at=at), POLICY)
    db.session.commit()
    return campaign, rows


def test_the_report_counts_each_address_once_and_rates_are_over_sent(bounced_campaign) -> None:
    campaign, _ = bounced_campaign
    report = figures.campaign_report(campaign.id)
    assert (report.hard_bounces, report.soft_bounces, report.complaints) == (2, 1, 1)
    assert (report.hard_bounce_rate, report.soft_bounce_rate, report.complaint_rate) == (0.2, 0.1, 0.1)


def test_the_timeline_places_every_report_in_its_hour(bounced_campaign) -> None:
    campaign, _ = bounced_campaign
    points = figures.timeline(campaign)
    by_hour = [(point.hard_bounces, point.soft_bounces, point.complaints) for point in points]
    assert by_hour[:2] == [(2, 0, 0), (1, 1, 1)]
    assert points[0].at == campaign.started_at


def test_the_api_report_has_the_rates_and_the_events_over_time(api, bounced_campaign) -> None:
    campaign, _ = bounced_campaign
    body = api.get(f"/api/v1/campaigns/{campaign.id}/report").get_json()
    assert (body["hard_bounces"], body["hard_bounce_rate"]) == (2, 0.2)
    assert (body["soft_bounces"], body["soft_bounce_rate"]) == (1, 0.1)
    assert (body["complaints"], body["complaint_rate"]) == (1, 0.1)
    assert sum(point["hard_bounces"] for point in body["timeline"]) == 3  # reports, not addresses
    assert sum(point["complaints"] for point in body["timeline"]) == 1


def test_the_report_page_shows_the_rates_and_the_chart(auth_client, bounced_campaign) -> None:
    campaign, _ = bounced_campaign
    html = auth_client.get(f"/reports/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'data-testid="hard-bounce-rate">20.00%' in html
    assert 'data-testid="complaint-rate">10.00%' in html
    assert "Bounces and complaints over time" in html
    assert "2 hard bounces" in html  # the chart's bar title


def test_the_report_csv_has_the_rates(auth_client, bounced_campaign) -> None:
    campaign, _ = bounced_campaign
    text = auth_client.get(f"/reports/campaigns/{campaign.id}/report.csv").get_data(as_text=True)
    assert "\r\nhard_bounce_rate,0.2\r\n" in text
    timeline_header = text.split("\r\n\r\n")[1].split("\r\n")[0]
    assert timeline_header.endswith(",clicks,hard_bounces,soft_bounces,complaints")


def test_the_delivery_log_marks_the_recipients_who_bounced_or_complained(
    auth_client, bounced_campaign
) -> None:
    campaign, rows = bounced_campaign
    html = auth_client.get(f"/reports/campaigns/{campaign.id}/recipients").get_data(as_text=True)
    marks = {}
    for row in rows:
        chunk = html.split(f'data-delivery="{row.id}"')[1].split("</tr>")[0]
        labels = ("hard bounce", "soft bounce", "complaint")
        marks[row.id] = [label for label in labels if f">{label}<" in chunk]
    assert marks[rows[0].id] == ["hard bounce"]
    assert marks[rows[2].id] == ["soft bounce"]
    assert marks[rows[3].id] == ["complaint"]
    assert marks[rows[4].id] == []


def test_a_campaign_without_events_says_so(auth_client, db) -> None:
    campaign = CampaignFactory(status="sent")
    html = auth_client.get(f"/reports/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'data-testid="no-bounces"' in html
    assert 'data-testid="hard-bounce-rate">0.00%' in html
