"""Campaign services (create, edit, duplicate, state changes, counts, delivery log) and dashboard views."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from mailapp.campaigns import lifecycle, services
from mailapp.campaigns.forms import local_time_to_utc
from mailapp.errors import InvalidStateError, NotFoundError, ValidationError
from mailapp.extensions import db as database
from mailapp.models import Campaign
from mailapp.models.base import utcnow
from tests.campaign_fixtures import audience, campaign_payload, make_delivery, make_ready_campaign  # noqa: F401


def _problem_fields(error: pytest.ExceptionInfo) -> set[str]:
    return {detail["field"] for detail in error.value.details}


# --- services: fields -------------------------------------------------------------------------------


def test_create_campaign_normalises_and_starts_as_draft(db, audience):  # noqa: F811
    campaign = services.create_campaign(campaign_payload(audience, track_clicks=False))
    db.session.commit()
    assert campaign.status == "draft"
    assert campaign.from_email == "news@example.com"
    assert {lst.id for lst in campaign.lists} == {lst.id for lst in audience.lists}
    assert campaign.track_opens is True
    assert campaign.track_clicks is False


BAD_INPUT = [
    ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
    ({"name": "Name\nX"}, "name"),
    ({"from_name": "News\rBcc: x@example.com"}, "from_name"),
    ({"reply_to": "a@example.com\nBcc: b@example.com"}, "reply_to"),
    ({"from_email": "not-an-address"}, "from_email"),
    ({"from_email": ""}, "from_email"),
    ({"reply_to": "nope@"}, "reply_to"),
    ({"subject": "Hi {{ subscriber.password }}"}, "subject"),
    ({"subject": "Hi {{ oops"}, "subject"),
    ({"subject": ""}, "subject"),
    ({"layout_id": 999999}, "layout_id"),
    ({"layout_id": None}, "layout_id"),
    ({"list_ids": []}, "list_ids"),
    ({"list_ids": [999999]}, "list_ids"),
    ({"list_ids": ["x"]}, "list_ids"),
    ({"track_opens": "yes"}, "track_opens"),
    ({"name": "x" * 201}, "name"),
]


def test_create_campaign_refuses_bad_input(db, audience):  # noqa: F811
    # One test over every case: each needs the same data, and emptying the tables is the slow part.
    for overrides, field in BAD_INPUT:
        with pytest.raises(ValidationError) as error:
            services.create_campaign(campaign_payload(audience, **overrides))
        assert field in _problem_fields(error), overrides
        assert error.value.message
        db.session.rollback()
    assert db.session.scalar(db.select(Campaign)) is None


def test_create_campaign_reports_every_problem_at_once(db, audience):  # noqa: F811
    with pytest.raises(ValidationError) as error:
        services.create_campaign(campaign_payload(audience, subject="a\nb", from_email="x", list_ids=[]))
    assert _problem_fields(error) == {"subject", "from_email", "list_ids"}
    assert "more problem" in error.value.message


def test_unknown_fields_are_refused(db, audience):  # noqa: F811
    with pytest.raises(ValidationError, match="colour"):
        services.create_campaign(campaign_payload(audience, colour="red"))


def test_update_keeps_the_schedule_of_a_scheduled_campaign(db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    send_at = utcnow() + timedelta(days=2)
    lifecycle.schedule_campaign(campaign.id, send_at)
    db.session.commit()
    version = campaign.schedule_version
    services.update_campaign(campaign.id, {"subject": "New subject"})
    db.session.commit()
    db.session.refresh(campaign)
    assert campaign.subject == "New subject"
    assert campaign.status == "scheduled"
    assert campaign.send_at == send_at
    assert campaign.schedule_version == version


def test_update_refused_after_sending_started(db, audience):  # noqa: F811
    for status in ("sending", "paused", "sent", "cancelled", "failed"):
        campaign = make_ready_campaign(audience, status=status)
        with pytest.raises(InvalidStateError, match=f"it is {status}"):
            services.update_campaign(campaign.id, {"subject": "Too late"})
        db.session.rollback()


def test_duplicate_copies_as_a_new_draft(db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sent", name="Launch", track_opens=False)
    copy = services.duplicate_campaign(campaign.id)
    db.session.commit()
    assert copy.id != campaign.id
    assert copy.name == "Copy of Launch"
    assert copy.status == "draft"
    assert copy.send_at is None
    assert copy.started_at is None
    assert copy.subject == campaign.subject
    assert copy.track_opens is False
    assert {lst.id for lst in copy.lists} == {lst.id for lst in audience.lists}


def test_delete_refused_while_sending(db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sending")
    with pytest.raises(InvalidStateError, match="sending"):
        services.delete_campaign(campaign.id)
    draft = make_ready_campaign(audience)
    services.delete_campaign(draft.id)
    db.session.commit()
    assert db.session.get(Campaign, draft.id) is None
    with pytest.raises(NotFoundError):
        lifecycle.get_campaign(draft.id)


# --- services: states -------------------------------------------------------------------------------


def test_schedule_refuses_a_past_time(db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    with pytest.raises(ValidationError, match="in the past"):
        lifecycle.schedule_campaign(campaign.id, utcnow() - timedelta(minutes=5))
    db.session.rollback()
    assert db.session.get(Campaign, campaign.id).status == "draft"


def test_schedule_refuses_a_campaign_without_layout_or_lists(db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    campaign.layout = None
    db.session.commit()
    with pytest.raises(ValidationError, match="no layout"):
        lifecycle.schedule_campaign(campaign.id, utcnow() + timedelta(hours=1))


def test_schedule_bumps_the_version_and_marks_near_starts_queued(app, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    lifecycle.schedule_campaign(campaign.id, utcnow() + timedelta(minutes=5))
    assert (campaign.schedule_version, campaign.start_queued_version) == (1, 1)
    far = utcnow() + timedelta(seconds=app.config["SCHEDULE_HORIZON_SECONDS"] + 600)
    lifecycle.schedule_campaign(campaign.id, far)
    assert campaign.status == "scheduled"
    assert campaign.send_at == far
    # Beyond the horizon: left to the dispatcher.
    assert (campaign.schedule_version, campaign.start_queued_version) == (2, 1)


ILLEGAL_TRANSITIONS = [
    ("pause", "draft"),
    ("pause", "scheduled"),
    ("pause", "sent"),
    ("resume", "draft"),
    ("resume", "sending"),
    ("resume", "cancelled"),
    ("cancel", "draft"),
    ("cancel", "sent"),
    ("cancel", "cancelled"),
    ("schedule", "sending"),
    ("schedule", "sent"),
    ("send", "sending"),
    ("send", "paused"),
    ("send", "cancelled"),
]


def test_illegal_transitions_say_the_current_state(db, audience):  # noqa: F811
    calls = {
        "pause": lifecycle.pause_on_request,
        "resume": lifecycle.resume_campaign,
        "cancel": lifecycle.cancel_campaign,
        "schedule": lambda campaign_id: lifecycle.schedule_campaign(
            campaign_id, utcnow() + timedelta(hours=1)
        ),
        "send": lifecycle.send_campaign_now,
    }
    for action, status in ILLEGAL_TRANSITIONS:
        campaign = make_ready_campaign(audience, status=status)
        with pytest.raises(InvalidStateError) as error:
            calls[action](campaign.id)
        assert f"it is {status}" in error.value.message, (action, status)
        assert [problem["status"] for problem in error.value.details] == [status]
        db.session.rollback()
        assert db.session.get(Campaign, campaign.id).status == status


def test_pause_resume_cancel_of_a_sending_campaign(db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sending")
    lifecycle.pause_on_request(campaign.id)
    assert campaign.status == "paused"
    assert campaign.status_reason
    lifecycle.resume_campaign(campaign.id)
    assert campaign.status == "sending"
    assert campaign.status_reason == ""
    lifecycle.cancel_campaign(campaign.id)
    assert campaign.status == "cancelled"
    assert campaign.finished_at is not None


def test_cancel_scheduled_makes_the_queued_start_stale(db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    lifecycle.schedule_campaign(campaign.id, utcnow() + timedelta(seconds=2))
    db.session.commit()
    version = campaign.schedule_version
    lifecycle.cancel_campaign(campaign.id)
    db.session.commit()
    assert campaign.schedule_version == version + 1
    assert not lifecycle.claim_scheduled_campaign(campaign.id, version, now=utcnow() + timedelta(seconds=5))


def test_retry_failed_resets_failed_deliveries_only(db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sent", finished_at=utcnow())
    subscribers = audience.active
    failed = make_delivery(
        campaign.id,
        subscriber_id=subscribers[0].id,
        status="failed",
        attempts=3,
        error="550 5.1.1 no such user",
        smtp_code=550,
    )
    sent = make_delivery(campaign.id, subscriber_id=subscribers[1].id, status="sent", attempts=1)
    assert lifecycle.retry_failed_deliveries(campaign.id) == 1
    db.session.commit()
    db.session.refresh(failed)
    db.session.refresh(sent)
    assert (failed.status, failed.attempts, failed.error, failed.smtp_code) == ("pending", 0, "", None)
    assert (sent.status, sent.attempts) == ("sent", 1)
    assert campaign.status == "sending"
    assert campaign.finished_at is None
    with pytest.raises(InvalidStateError, match="no failed deliveries"):
        lifecycle.retry_failed_deliveries(campaign.id)


# --- services: figures ------------------------------------------------------------------------------


def test_count_recipients_counts_active_members_once(db, audience):  # noqa: F811
    ids = [lst.id for lst in audience.lists]
    assert services.count_recipients(ids) == len(audience.active)
    assert services.count_recipients([ids[0]]) == len(audience.active) // 2 + 1
    assert services.count_recipients([]) == 0


def test_counts_for_a_page_of_campaigns(db, audience):  # noqa: F811
    first = make_ready_campaign(audience, status="sending")
    second = make_ready_campaign(audience, status="sent")
    for index, status in enumerate(["sent", "sent", "failed", "pending"]):
        make_delivery(first.id, subscriber_id=audience.active[index].id, status=status)
    make_delivery(second.id, subscriber_id=audience.active[0].id, status="sent")
    counts = services.counts_for_campaigns([first, second])
    assert counts[first.id] == {"total": 4, "pending": 1, "sent": 2, "failed": 1}
    assert counts[second.id] == {"total": 1, "pending": 0, "sent": 1, "failed": 0}
    assert services.delivery_stats(first.id) == {
        "total": 4,
        "pending": 1,
        "sending": 0,
        "sent": 2,
        "failed": 1,
    }


def test_delivery_page_is_keyset_paginated_and_filtered(db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sending")
    rows = [make_delivery(campaign.id, status="failed" if index % 3 == 0 else "sent") for index in range(7)]
    first_page, cursor = services.delivery_page(campaign.id, limit=3)
    assert [row.id for row in first_page] == [row.id for row in rows[:3]]
    second_page, cursor2 = services.delivery_page(campaign.id, after=cursor, limit=3)
    assert [row.id for row in second_page] == [row.id for row in rows[3:6]]
    last_page, cursor3 = services.delivery_page(campaign.id, after=cursor2, limit=3)
    assert [row.id for row in last_page] == [rows[6].id]
    assert cursor3 is None
    failed, _ = services.delivery_page(campaign.id, status="failed", limit=10)
    assert [row.id for row in failed] == [rows[0].id, rows[3].id, rows[6].id]
    with pytest.raises(ValidationError, match="Unknown delivery status"):
        services.delivery_page(campaign.id, status="bogus")


@pytest.mark.parametrize(
    ("local", "zone", "offset", "expected"),
    [
        ("2026-07-01T09:30", "Europe/Lisbon", "", datetime(2026, 7, 1, 8, 30, tzinfo=UTC)),
        ("2026-12-01T09:30", "Europe/Lisbon", "", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
        ("2026-12-01T09:30", "America/New_York", "300", datetime(2026, 12, 1, 14, 30, tzinfo=UTC)),
        ("2026-12-01T09:30", "Not/AZone", "-60", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
        ("2026-12-01T09:30", "", "", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
    ],
)
def test_browser_local_time_to_utc(local, zone, offset, expected):
    assert local_time_to_utc(local, zone, offset) == expected


def test_browser_local_time_refuses_garbage():
    with pytest.raises(ValidationError, match="not a date"):
        local_time_to_utc("tomorrow-ish", "UTC", "0")


# --- views ------------------------------------------------------------------------------------------


def _form(audience, **overrides):  # noqa: F811
    payload = campaign_payload(audience, **overrides)
    payload["track_opens"] = "y"
    payload["track_clicks"] = "y"
    return payload


def test_campaign_pages_need_login(client):
    assert client.get("/campaigns/").status_code == 302


def test_index_empty_state_and_nav_link(auth_client):
    html = auth_client.get("/campaigns/").get_data(as_text=True)
    assert "No campaigns yet" in html
    assert 'href="/campaigns/"' in html


def test_index_lists_campaigns_with_counts(auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sent", name="Spring sale")
    make_delivery(campaign.id, subscriber_id=audience.active[0].id, status="sent")
    make_delivery(campaign.id, subscriber_id=audience.active[1].id, status="failed")
    html = auth_client.get("/campaigns/").get_data(as_text=True)
    assert "Spring sale" in html
    row = html[html.index("Spring sale") :]
    assert re.search(r">\s*2\s*</td>", row)
    assert 'text-danger">1' in row.replace(" ", "")


def test_create_through_the_form(auth_client, db, audience):  # noqa: F811
    page = auth_client.get("/campaigns/new").get_data(as_text=True)
    assert audience.lists[0].name in page
    assert audience.layout.name in page
    response = auth_client.post_form("/campaigns/new", _form(audience))
    assert response.status_code == 302
    campaign = db.session.scalar(db.select(Campaign))
    assert campaign.name == "November news"
    assert campaign.status == "draft"
    page = auth_client.get(response.location).get_data(as_text=True)
    assert "November news" in page
    assert 'data-testid="action-send"' in page


def test_form_errors_show_beside_fields(auth_client, db, audience):  # noqa: F811
    response = auth_client.post_form("/campaigns/new", _form(audience, from_email="bad", layout_id=0))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Choose a layout" in html
    assert "invalid-feedback" in html
    assert "bad" in html
    assert db.session.scalar(db.select(Campaign)) is None


def test_edit_refused_once_sending(auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sending")
    response = auth_client.get(f"/campaigns/{campaign.id}/edit")
    assert response.status_code == 302
    page = auth_client.get(response.location).get_data(as_text=True)
    assert "only drafts and scheduled" in page


def test_recipients_count_route(auth_client, db, audience):  # noqa: F811
    ids = [lst.id for lst in audience.lists]
    body = auth_client.get(f"/campaigns/recipients-count?list_ids={ids[0]}&list_ids={ids[1]}").get_json()
    assert body["recipients"] == len(audience.active)


def test_schedule_in_the_browser_timezone(auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    when = (datetime.now(UTC) + timedelta(days=3)).replace(second=0, microsecond=0)
    local = when.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%dT%H:%M")
    response = auth_client.post_form(
        f"/campaigns/{campaign.id}/schedule",
        {"send_at": local, "timezone": "Asia/Tokyo", "utc_offset": "-540"},
    )
    assert response.status_code == 302
    db.session.refresh(campaign)
    assert campaign.status == "scheduled"
    assert campaign.send_at == when
    page = auth_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert f'datetime="{when.isoformat()}"' in page
    assert "Reschedule" in page
    assert 'data-testid="action-cancel"' in page


def test_schedule_in_the_past_shows_a_clear_message(auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    response = auth_client.post_form(
        f"/campaigns/{campaign.id}/schedule",
        {"send_at": "2020-01-01T10:00", "timezone": "UTC", "utc_offset": "0"},
    )
    assert response.status_code == 422
    assert "in the past" in response.get_data(as_text=True)
    db.session.refresh(campaign)
    assert campaign.status == "draft"


def test_action_buttons_follow_the_state(auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sending")
    html = auth_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'data-testid="action-pause"' in html
    assert 'data-testid="action-send"' not in html
    response = auth_client.post_form(f"/campaigns/{campaign.id}/pause")
    assert response.status_code == 302
    db.session.refresh(campaign)
    assert campaign.status == "paused"
    html = auth_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'data-testid="action-resume"' in html
    assert 'data-testid="action-pause"' not in html
    assert "Paused from the dashboard" in html


def test_refused_action_is_flashed_not_a_500(auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sent")
    response = auth_client.post_form(f"/campaigns/{campaign.id}/pause", follow_redirects=True)
    assert response.status_code == 200
    assert "it is sent" in response.get_data(as_text=True)


def test_duplicate_and_delete_through_the_page(auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, name="Weekly")
    response = auth_client.post_form(f"/campaigns/{campaign.id}/duplicate")
    assert response.status_code == 302
    names = set(db.session.scalars(db.select(Campaign.name)))
    assert names == {"Weekly", "Copy of Weekly"}
    response = auth_client.post_form(f"/campaigns/{campaign.id}/delete")
    assert response.status_code == 302
    assert set(db.session.scalars(db.select(Campaign.name))) == {"Copy of Weekly"}


def test_progress_json_and_delivery_log(auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sending", started_at=utcnow() - timedelta(seconds=10))
    make_delivery(
        campaign.id,
        subscriber_id=audience.active[0].id,
        email="a@example.com",
        status="sent",
        sent_at=utcnow(),
        message_id="<m1@example.com>",
    )
    make_delivery(
        campaign.id,
        subscriber_id=audience.active[1].id,
        email="b@example.com",
        status="failed",
        error="550 5.1.1 mailbox unknown",
        smtp_code=550,
    )
    make_delivery(campaign.id, subscriber_id=audience.active[2].id, email="c@example.com")
    body = auth_client.get(f"/campaigns/{campaign.id}/progress.json").get_json()
    assert body["status"] == "sending"
    assert body["stats"] == {"total": 3, "pending": 1, "sending": 0, "sent": 1, "failed": 1}
    assert body["average_rate"] > 0
    assert "pause" in body["actions"]
    html = auth_client.get(f"/campaigns/{campaign.id}?status=failed").get_data(as_text=True)
    log = html[html.index('data-testid="delivery-log"') :]
    assert "b@example.com" in log
    assert "550 5.1.1 mailbox unknown" in log
    assert "a@example.com" not in log


def _statements_of(client, url: str) -> int:
    database.session.remove()  # the request starts from an empty session, whatever the test loaded
    count = 0

    def counted(*_args) -> None:
        nonlocal count
        count += 1

    event.listen(database.engine, "before_cursor_execute", counted)
    try:
        assert client.get(url).status_code == 200
    finally:
        event.remove(database.engine, "before_cursor_execute", counted)
    return count


def test_campaign_page_costs_the_same_queries_however_many_rows_its_log_shows(auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sending", started_at=utcnow())
    make_delivery(campaign.id, status="sent")
    url = f"/campaigns/{campaign.id}"
    auth_client.get(url)
    one_row = _statements_of(auth_client, url)
    for _ in range(5):
        make_delivery(campaign.id, status="sent")
    assert _statements_of(auth_client, url) == one_row


def test_campaign_page_has_no_inline_script(auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    html = auth_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "<script>" not in html
    assert " onclick=" not in html
    assert "js/campaigns.js" in html


def test_new_campaign_form_starts_with_the_last_sender(auth_client, db, audience):  # noqa: F811
    make_ready_campaign(audience, from_name="Acme Letters", from_email="letters@acme.example")
    html = auth_client.get("/campaigns/new").get_data(as_text=True)
    assert 'value="letters@acme.example"' in html
    assert 'value="Acme Letters"' in html


def test_finished_campaign_counts_stay_right_once_cached(db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="cancelled", finished_at=utcnow())
    make_delivery(campaign.id, audience.active[0].id, status="sent")
    make_delivery(campaign.id, audience.active[1].id, status="pending")
    expected = {"total": 2, "pending": 1, "sent": 1, "failed": 0}
    for _ in range(2):  # the second read comes from the cache the first one filled
        _, counts, _ = services.list_campaigns(1)
        db.session.commit()
        assert counts[campaign.id] == expected


def test_draft_page_shows_how_many_would_get_it_now(auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    html = auth_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    shown = re.search(r'data-testid="expected-recipients">([\d,]+)<', html)
    assert shown is not None
    assert int(shown.group(1)) == len(audience.active)


def test_unschedule_takes_a_scheduled_campaign_back_to_draft_and_stales_its_queued_start(db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    lifecycle.schedule_campaign(campaign.id, utcnow() + timedelta(seconds=2))
    db.session.commit()
    version = campaign.schedule_version
    lifecycle.unschedule(campaign.id)
    assert (campaign.status, campaign.send_at, campaign.schedule_version) == ("draft", None, version + 1)
    assert not lifecycle.claim_scheduled_campaign(campaign.id, version, now=utcnow() + timedelta(seconds=5))
    assert "edit" in lifecycle.allowed_actions(campaign)
    with pytest.raises(InvalidStateError, match="it is draft"):
        lifecycle.unschedule_campaign(campaign.id)


def test_the_unschedule_button_shows_only_on_scheduled_campaigns_and_makes_a_draft(auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    draft_page = auth_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'data-testid="action-unschedule"' not in draft_page
    lifecycle.schedule(campaign.id, utcnow() + timedelta(days=1))
    scheduled_page = auth_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'data-testid="action-unschedule"' in scheduled_page
    response = auth_client.post_form(f"/campaigns/{campaign.id}/unschedule", {})
    assert response.status_code == 302
    db.session.refresh(campaign)
    assert campaign.status == "draft"
    assert "it is a draft again" in auth_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)


NO_UNSUBSCRIBE_LAYOUT = "<html><body>{{ message }}</body></html>"


def test_a_layout_without_an_unsubscribe_link_warns_on_a_draft_and_refuses_send_and_schedule(
    auth_client, db, audience  # noqa: F811
):
    audience.layout.html = NO_UNSUBSCRIBE_LAYOUT
    campaign = make_ready_campaign(audience)
    db.session.commit()
    page = f"/campaigns/{campaign.id}"
    assert 'data-testid="unsubscribe-warning"' in auth_client.get(page).get_data(as_text=True)
    sent = auth_client.post_form(f"{page}/send", {}, follow_redirects=True, token_page=page)
    assert "has no unsubscribe link" in sent.get_data(as_text=True)
    when = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    scheduled = auth_client.post_form(f"{page}/schedule", {"send_at": when}, token_page=page)
    assert scheduled.status_code == 422
    assert "has no unsubscribe link" in scheduled.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).status == "draft"


def test_a_scheduled_campaign_whose_layout_lost_its_unsubscribe_link_fails_at_its_start(db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    lifecycle.schedule_campaign(campaign.id, utcnow())
    db.session.commit()
    audience.layout.html = NO_UNSUBSCRIBE_LAYOUT
    db.session.commit()
    assert not lifecycle.start_scheduled(campaign.id, campaign.schedule_version)
    db.session.refresh(campaign)
    assert campaign.status == "failed"
    assert "has no unsubscribe link" in campaign.status_reason


def test_the_built_in_default_layout_has_an_unsubscribe_link():
    from mailapp.layouts.services import has_unsubscribe_link
    from mailapp.sending.render import DEFAULT_LAYOUT

    assert has_unsubscribe_link(DEFAULT_LAYOUT)
    assert not has_unsubscribe_link(NO_UNSUBSCRIBE_LAYOUT)
    assert not has_unsubscribe_link("{% set unsubscribe_url = 'x' %}{{ unsubscribe_url ")


def test_the_list_picker_is_a_checkbox_list_that_keeps_the_chosen_lists(auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    campaign.lists = audience.lists[:1]
    db.session.commit()
    html = auth_client.get(f"/campaigns/{campaign.id}/edit").get_data(as_text=True)
    assert "<select" not in html.split('name="list_ids"')[0].rsplit("<fieldset", 1)[-1]
    boxes = re.findall(r'<input[^>]*name="list_ids"[^>]*>', html)
    assert len(boxes) == len(audience.lists)
    assert all('type="checkbox"' in box for box in boxes)
    checked = [box for box in boxes if "checked" in box]
    assert checked == [box for box in boxes if f'value="{audience.lists[0].id}"' in box]
    assert "data-checklist-filter" in html
