"""Times say their zone: the account's zone (set from the browser at the first sign-in, changed on the
account page) for every time shown, the zone a schedule was picked in for schedules, the report's time
axis in the viewer's zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from mailapp.models import Campaign, User
from mailapp.reports import figures
from mailapp.reports.routes import timeline_chart
from mailapp.timezones import format_in_zone, zone_or_utc
from tests.campaign_fixtures import audience, make_ready_campaign  # noqa: F401
from tests.conftest import TEST_PASSWORD
from tests.factories import SubscriberFactory

MOMENT = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("", "2026-03-04 05:06 UTC"),
        ("Europe/Paris", "2026-03-04 06:06 CET"),
        ("Asia/Kolkata", "2026-03-04 10:36 IST"),
        ("Europe/Istanbul", "2026-03-04 08:06 Europe/Istanbul"),  # "+03" would say less
        ("Not/AZone", "2026-03-04 05:06 UTC"),
    ],
)
def test_a_time_is_written_in_the_zone_with_the_zone_said(zone, shown):
    assert format_in_zone(MOMENT, zone) == shown


def _sign_in(client, email: str, browser_timezone: str):
    token = client.csrf_token("/login")
    return client.post(
        "/login",
        data={"email": email, "password": TEST_PASSWORD, "csrf_token": token,
              "browser_timezone": browser_timezone},
    )


def test_the_first_sign_in_takes_the_browsers_zone_and_later_ones_keep_the_setting(app, client, db, user):
    assert _sign_in(client, user.email, "Asia/Tokyo").status_code == 302
    db.session.expire_all()
    assert db.session.get(User, user.id).timezone == "Asia/Tokyo"
    client.post_form("/logout", {})
    assert _sign_in(app.test_client(), user.email, "Europe/Paris").status_code == 302
    db.session.expire_all()
    assert db.session.get(User, user.id).timezone == "Asia/Tokyo"


def test_a_sign_in_with_an_unknown_zone_leaves_the_setting_empty(client, db, user):
    assert _sign_in(client, user.email, "Mars/Olympus").status_code == 302
    db.session.expire_all()
    assert db.session.get(User, user.id).timezone == ""


def test_every_page_time_is_in_the_account_zone(auth_client, db, user):
    subscriber = SubscriberFactory(status="unsubscribed", unsubscribed_at=MOMENT)
    page = f"/subscribers/{subscriber.id}"
    assert "2026-03-04 05:06 UTC" in auth_client.get(page).get_data(as_text=True)
    response = auth_client.post_form("/account/", {"timezone": "America/New_York"}, token_page="/account/")
    assert response.status_code == 302
    html = auth_client.get(page).get_data(as_text=True)
    assert "2026-03-04 00:06 EST" in html
    assert f'datetime="{MOMENT.isoformat()}"' in html


def test_the_account_page_refuses_an_unknown_zone(auth_client, db, user):
    response = auth_client.post_form("/account/", {"timezone": "Europe/Atlantis"}, token_page="/account/")
    assert response.status_code == 422
    assert "is not a time zone" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, user.id).timezone == ""


def test_a_signed_in_account_without_a_zone_asks_the_browser_for_it(auth_client, db, user):
    assert "data-fill-timezone-url" in auth_client.get("/").get_data(as_text=True)
    user.timezone = "Europe/Paris"
    db.session.commit()
    assert "data-fill-timezone-url" not in auth_client.get("/").get_data(as_text=True)


def test_a_schedule_is_shown_in_the_zone_it_was_picked_in_whatever_the_viewers_zone(
    auth_client, db, user, audience  # noqa: F811
):
    user.timezone = "Europe/Paris"
    db.session.commit()
    campaign = make_ready_campaign(audience)
    tokyo = ZoneInfo("Asia/Tokyo")
    when = (datetime.now(tokyo) + timedelta(days=3)).replace(hour=9, minute=30, second=0, microsecond=0)
    response = auth_client.post_form(
        f"/campaigns/{campaign.id}/schedule",
        {"send_at": when.strftime("%Y-%m-%dT%H:%M"), "timezone": "Asia/Tokyo", "utc_offset": "60"},
    )
    assert response.status_code == 302
    db.session.refresh(campaign)
    assert (campaign.send_at, campaign.send_timezone) == (when.astimezone(UTC), "Asia/Tokyo")
    html = auth_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert f"{when:%Y-%m-%d} 09:30 JST" in html
    # The schedule form keeps the campaign's zone for a reschedule.
    assert '<option selected value="Asia/Tokyo">' in html
    listing = auth_client.get("/campaigns/").get_data(as_text=True)
    assert f"{when:%Y-%m-%d} 09:30 JST" in listing


def test_the_api_schedules_with_a_zone_and_refuses_an_unknown_one(api, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    send_at = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    body = api.post(
        f"/api/v1/campaigns/{campaign.id}/schedule",
        json={"send_at": send_at.isoformat(), "timezone": "America/Sao_Paulo"},
    ).get_json()
    assert (body["status"], body["send_timezone"]) == ("scheduled", "America/Sao_Paulo")
    refused = api.post(
        f"/api/v1/campaigns/{campaign.id}/schedule",
        json={"send_at": send_at.isoformat(), "timezone": "UTC+3"},
    )
    assert refused.status_code == 422
    assert refused.get_json()["error"]["details"][0]["field"] == "timezone"
    assert db.session.get(Campaign, campaign.id).send_timezone == "America/Sao_Paulo"


def test_the_report_time_axis_is_in_the_viewers_zone():
    start = datetime(2026, 3, 4, 5, 0, tzinfo=UTC)
    report = SimpleNamespace(timeline=[
        figures.TimelinePoint(at=start + timedelta(hours=hour), span=timedelta(hours=1), human_opens=1)
        for hour in range(2)
    ])
    svg = str(timeline_chart(report, zone_or_utc("Asia/Kolkata")))
    assert "04 Mar 10:30: 1 human open" in svg
    assert "04 Mar 05:00" not in svg
