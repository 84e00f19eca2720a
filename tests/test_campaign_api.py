"""The campaigns JSON API: every route, its error shapes, and refused transitions (409 invalid_state)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailapp.models import Campaign
from mailapp.models.base import utcnow
from tests.campaign_fixtures import audience, campaign_payload, make_delivery, make_ready_campaign  # noqa: F401


def _error(response, status: int, code: str) -> dict:  # noqa: ANN001
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


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"subject": "Hello\r\nBcc: x@example.com"}, "subject"),
        ({"from_email": "not an email"}, "from_email"),
        ({"layout_id": 424242}, "layout_id"),
        ({"list_ids": [424242]}, "list_ids"),
        ({"subject": "{{ subscriber.__class__ }}"}, "subject"),
    ],
)
def test_create_refuses_bad_input_with_422(api, audience, overrides, field):  # noqa: F811
    body = _error(
        api.post("/api/v1/campaigns", json=campaign_payload(audience, **overrides)), 422, "validation_error"
    )
    assert field in {detail["field"] for detail in body["details"]}


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


@pytest.mark.parametrize(
    ("send_at", "fragment"),
    [
        ("2020-01-01T10:00:00+00:00", "in the past"),
        ((datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None).isoformat(), "no UTC offset"),
        ("next tuesday", "not an ISO 8601"),
        (None, "required"),
    ],
)
def test_schedule_refuses_past_or_offsetless_times(api, db, audience, send_at, fragment):  # noqa: F811
    campaign = make_ready_campaign(audience)
    body = _error(
        api.post(f"/api/v1/campaigns/{campaign.id}/schedule", json={"send_at": send_at}),
        422,
        "validation_error",
    )
    assert fragment in body["message"]
    db.session.refresh(campaign)
    assert campaign.status == "draft"


@pytest.mark.parametrize(
    ("route", "status"),
    [
        ("cancel", "draft"),
        ("pause", "scheduled"),
        ("resume", "sending"),
        ("send", "sent"),
        ("retry-failed", "draft"),
        ("cancel", "sent"),
        ("schedule", "paused"),
    ],
)
def test_refused_transitions_are_409_with_the_current_state(api, audience, route, status):  # noqa: F811
    campaign = make_ready_campaign(audience, status=status)
    payload = {"send_at": (utcnow() + timedelta(hours=1)).isoformat()}
    body = _error(api.post(f"/api/v1/campaigns/{campaign.id}/{route}", json=payload), 409, "invalid_state")
    assert f"it is {status}" in body["message"]


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


def test_deliveries_keyset_pages(api, db, audience):  # noqa: F811
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
    first = api.get(f"/api/v1/campaigns/{campaign.id}/deliveries?per_page=2").get_json()
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
    assert failed["next_after"] is None
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


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"emails": "a@example.com"}, "list"),
        ({"emails": []}, "at least one"),
        ({"emails": ["nope"]}, "Invalid email"),
        ({"emails": ["a@example.com"], "subscriber_id": 987654}, "987654"),
    ],
)
def test_test_send_refuses_bad_input(api, audience, payload, fragment):  # noqa: F811
    campaign = make_ready_campaign(audience)
    body = _error(api.post(f"/api/v1/campaigns/{campaign.id}/test", json=payload), 422, "validation_error")
    assert fragment in body["message"]
