"""The campaigns JSON API: every route, its error shapes, and refused transitions (409 invalid_state)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailapp.models import Campaign
from mailapp.models.base import utcnow
from tests.campaign_fixtures import audience, campaign_payload, make_delivery, make_ready_campaign  # noqa: F401


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()["error"]
    assert body["code"] == code
    return body


def test_api_needs_a_token(client):
    assert client.get("/api/v1/campaigns").status_code == 401


def test_create_get_list(api, audience):  # noqa: F811
    response = api.post("/api/v1/campaigns", json=campaign_payload(audience))
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["status"] == "draft"
    assert created["from_email"] == "news@example.com"
    assert created["list_ids"] == sorted(lst.id for lst in audience.lists)
    assert created["track_opens"] is True
    assert created["stats"] == {"total": 0, "pending": 0, "sent": 0, "failed": 0}
    one = api.get(f"/api/v1/campaigns/{created['id']}").get_json()
    for key in ("id", "name", "status", "send_at", "started_at", "finished_at", "stats"):
        assert one[key] == created[key]
    page = api.get("/api/v1/campaigns").get_json()
    assert page["total"] == 1
    assert [item["id"] for item in page["items"]] == [created["id"]]


def test_create_refuses_bad_input_with_422(api, db, audience):  # noqa: F811
    cases = [
        ({"subject": "Hello\r\nBcc: x@example.com"}, "subject"),
        ({"from_email": "not an email"}, "from_email"),
        ({"layout_id": 424242}, "layout_id"),
        ({"list_ids": [424242]}, "list_ids"),
        ({"subject": "{{ subscriber.__class__ }}"}, "subject"),
    ]
    for overrides, field in cases:
        response = api.post("/api/v1/campaigns", json=campaign_payload(audience, **overrides))
        body = _error(response, 422, "validation_error")
        assert field in {detail["field"] for detail in body["details"]}, overrides
    assert db.session.scalar(db.select(Campaign)) is None


def test_create_refuses_a_non_object_body(api):
    _error(api.post("/api/v1/campaigns", json=["x"]), 422, "validation_error")


def test_patch_only_while_draft_or_scheduled(api, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    response = api.patch(
        f"/api/v1/campaigns/{campaign.id}", json={"subject": "Changed {{ subscriber.email }}"}
    )
    assert response.status_code == 200
    assert response.get_json()["subject"] == "Changed {{ subscriber.email }}"
    _error(api.patch(f"/api/v1/campaigns/{campaign.id}", json={"name": "a\nb"}), 422, "validation_error")
    campaign.status = "sending"
    db.session.commit()
    body = _error(api.patch(f"/api/v1/campaigns/{campaign.id}", json={"name": "Late"}), 409, "invalid_state")
    assert "sending" in body["message"]


def test_delete_and_not_found(api, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    assert api.delete(f"/api/v1/campaigns/{campaign.id}").status_code == 204
    _error(api.get(f"/api/v1/campaigns/{campaign.id}"), 404, "not_found")


def test_schedule_with_offset(api, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    when = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    local = when.astimezone(__import__("zoneinfo").ZoneInfo("America/Sao_Paulo")).isoformat()
    response = api.post(f"/api/v1/campaigns/{campaign.id}/schedule", json={"send_at": local})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "scheduled"
    assert datetime.fromisoformat(body["send_at"]) == when
    zulu = api.post(
        f"/api/v1/campaigns/{campaign.id}/schedule",
        json={"send_at": (when + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")},
    )
    assert datetime.fromisoformat(zulu.get_json()["send_at"]) == when + timedelta(hours=1)


def test_schedule_refuses_past_or_offsetless_times(api, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    cases = [
        ("2020-01-01T10:00:00+00:00", "in the past"),
        ((datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None).isoformat(), "no UTC offset"),
        ("next tuesday", "not an ISO 8601"),
        (None, "required"),
    ]
    for send_at, fragment in cases:
        response = api.post(f"/api/v1/campaigns/{campaign.id}/schedule", json={"send_at": send_at})
        body = _error(response, 422, "validation_error")
        assert fragment in body["message"], send_at
        db.session.refresh(campaign)
        assert campaign.status == "draft"


def test_refused_transitions_are_409_with_the_current_state(api, db, audience):  # noqa: F811
    cases = [
        ("cancel", "draft"),
        ("pause", "scheduled"),
        ("resume", "sending"),
        ("send", "sent"),
        ("retry-failed", "draft"),
        ("cancel", "sent"),
        ("schedule", "paused"),
    ]
    payload = {"send_at": (utcnow() + timedelta(hours=1)).isoformat()}
    for route, status in cases:
        campaign = make_ready_campaign(audience, status=status)
        response = api.post(f"/api/v1/campaigns/{campaign.id}/{route}", json=payload)
        body = _error(response, 409, "invalid_state")
        assert f"it is {status}" in body["message"], route
        db.session.refresh(campaign)
        assert campaign.status == status


def test_pause_cancel_of_sending(api, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sending", started_at=utcnow())
    paused = api.post(f"/api/v1/campaigns/{campaign.id}/pause").get_json()
    assert paused["status"] == "paused"
    assert paused["status_reason"]
    cancelled = api.post(f"/api/v1/campaigns/{campaign.id}/cancel").get_json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["finished_at"]


def test_cancel_scheduled(api, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    api.post(
        f"/api/v1/campaigns/{campaign.id}/schedule",
        json={"send_at": (utcnow() + timedelta(days=1)).isoformat()},
    )
    body = api.post(f"/api/v1/campaigns/{campaign.id}/cancel").get_json()
    assert body["status"] == "cancelled"
    assert db.session.get(Campaign, campaign.id).schedule_version == 2


def test_deliveries_pages_and_keyset_pages(api, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sent")
    rows = [
        make_delivery(
            campaign.id,
            status="failed" if index == 2 else "sent",
            error="550 no" if index == 2 else "",
            attempts=1,
        )
        for index in range(5)
    ]
    paged = api.get(f"/api/v1/campaigns/{campaign.id}/deliveries?page=2&per_page=2").get_json()
    assert [item["email"] for item in paged["items"]] == [rows[2].email, rows[3].email]
    assert (paged["page"], paged["per_page"], paged["total"]) == (2, 2, 5)
    first = api.get(f"/api/v1/campaigns/{campaign.id}/deliveries?per_page=2&after=0").get_json()
    assert [item["email"] for item in first["items"]] == [rows[0].email, rows[1].email]
    assert set(first["items"][0]) >= {
        "subscriber_id",
        "email",
        "status",
        "attempts",
        "sent_at",
        "message_id",
        "error",
    }
    second = api.get(f"/api/v1/campaigns/{campaign.id}/deliveries?per_page=2&after={first['next_after']}")
    assert [item["email"] for item in second.get_json()["items"]] == [rows[2].email, rows[3].email]
    failed = api.get(f"/api/v1/campaigns/{campaign.id}/deliveries?status=failed").get_json()
    assert [(item["email"], item["error"]) for item in failed["items"]] == [(rows[2].email, "550 no")]
    assert failed["total"] == 1
    failed_keyset = api.get(f"/api/v1/campaigns/{campaign.id}/deliveries?status=failed&after=0").get_json()
    assert failed_keyset["next_after"] is None
    _error(api.get(f"/api/v1/campaigns/{campaign.id}/deliveries?status=nope"), 422, "validation_error")
    _error(api.get(f"/api/v1/campaigns/{campaign.id}/deliveries?per_page=0"), 422, "validation_error")
    stats = api.get(f"/api/v1/campaigns/{campaign.id}").get_json()["stats"]
    assert stats == {"total": 5, "pending": 0, "sent": 4, "failed": 1}


def test_retry_failed(api, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sent", finished_at=utcnow(), snapshot_taken_at=utcnow())
    make_delivery(campaign.id, status="failed", attempts=5, error="550 no")
    response = api.post(f"/api/v1/campaigns/{campaign.id}/retry-failed")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["retried"] == 1
    assert body["status"] == "sending"
    assert body["stats"]["pending"] == 1


def test_test_send_refuses_bad_input(api, audience, smtp_server):  # noqa: F811
    campaign = make_ready_campaign(audience)
    cases = [
        ({"emails": "a@example.com"}, "list"),
        ({"emails": []}, "at least one"),
        ({"emails": ["nope"]}, "Invalid email"),
        ({"emails": ["a@example.com"], "subscriber_id": 987654}, "987654"),
    ]
    for payload, fragment in cases:
        body = _error(
            api.post(f"/api/v1/campaigns/{campaign.id}/test", json=payload), 422, "validation_error"
        )
        assert fragment in body["message"], payload
    assert smtp_server.messages == []


def test_unschedule_through_the_api_makes_a_draft_and_refuses_a_draft(api, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    api.post(
        f"/api/v1/campaigns/{campaign.id}/schedule",
        json={"send_at": (utcnow() + timedelta(days=1)).isoformat()},
    )
    body = api.post(f"/api/v1/campaigns/{campaign.id}/unschedule").get_json()
    assert (body["status"], body["send_at"]) == ("draft", None)
    assert db.session.get(Campaign, campaign.id).schedule_version == 2
    again = api.post(f"/api/v1/campaigns/{campaign.id}/unschedule")
    assert "it is draft" in _error(again, 409, "invalid_state")["message"]


def test_send_and_schedule_refuse_a_layout_without_an_unsubscribe_link_with_422(api, db, audience):  # noqa: F811
    audience.layout.html = "<p>{{ message }}</p>"
    campaign = make_ready_campaign(audience)
    db.session.commit()
    tomorrow = {"send_at": (utcnow() + timedelta(days=1)).isoformat()}
    for route, body in (("send", None), ("schedule", tomorrow)):
        response = api.post(f"/api/v1/campaigns/{campaign.id}/{route}", json=body)
        error = _error(response, 422, "validation_error")
        assert "has no unsubscribe link" in error["message"]
        assert error["details"][0]["field"] == "layout_id"
    assert db.session.get(Campaign, campaign.id).status == "draft"
