"""The API's one error shape: whatever refused a request (bad JSON, an unknown field, a missing object,
an action the state forbids, a missing token, a body too large, a route that does not exist), the body
is {"error": {"code", "message", "details"}} and details is a list of {field, message}."""

from __future__ import annotations

import pytest

from mailapp.errors import ConflictError, MailappError, ValidationError
from tests.campaign_fixtures import audience, campaign_payload, make_ready_campaign
from tests.factories import SubscriberListFactory

__all__ = ["audience"]


def _details_of(response) -> list:
    assert response.status_code >= 400, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    details = body["error"]["details"]
    assert isinstance(details, list), details
    for problem in details:
        assert isinstance(problem, dict), problem
        assert problem["field"] is None or isinstance(problem["field"], str), problem
        assert isinstance(problem["message"], str), problem
        assert problem["message"], problem
    return details


def test_every_kind_of_api_error_lists_its_details_as_field_and_message(api, app, client, db, audience):
    campaign = make_ready_campaign(audience, status="sent")
    taken = SubscriberListFactory(name="Taken")
    db.session.commit()
    limit = app.config["API_MAX_JSON_BYTES"]
    refusals = {
        "invalid_json": api.post("/api/v1/lists", data="{nope", content_type="application/json"),
        "not_an_object": api.post("/api/v1/lists", json=[1, 2]),
        "bad_query": api.get("/api/v1/subscribers?list_id=seven"),
        "unknown_field": api.post("/api/v1/campaigns", json={**campaign_payload(audience), "colour": "red"}),
        "no_name": api.post("/api/v1/lists", json={}),
        "unstorable": api.post("/api/v1/lists", json={"name": "a\x00b"}),
        "conflict": api.post("/api/v1/lists", json={"name": taken.name}),
        "invalid_state": api.post(f"/api/v1/campaigns/{campaign.id}/pause"),
        "not_found": api.get("/api/v1/campaigns/999999"),
        "template": api.post("/api/v1/layouts", json={"name": "Bad", "html": "<p>{{ customer }}</p>"}),
        "too_large": api.post("/api/v1/lists", json={"name": "Big", "description": "x" * limit}),
        "unauthorized": client.get("/api/v1/lists"),
        "no_route": api.get("/api/v1/no-such-thing"),
        "wrong_method": api.delete("/api/v1/lists"),
    }
    named = {}
    for kind, response in refusals.items():
        named[kind] = [problem["field"] for problem in _details_of(response)]
    assert named["unknown_field"] == ["colour"]
    assert named["no_name"] == ["name"]
    assert named["conflict"] == ["name"]
    assert named["bad_query"] == ["list_id"]
    assert named["unstorable"] == ["name"]


def test_a_detail_given_without_a_message_says_what_the_error_says():
    error = ValidationError("The name is missing.", [{"field": "name"}])
    assert error.details == [{"field": "name", "message": "The name is missing."}]


def test_a_detail_given_alone_is_still_a_list_of_one():
    error = ConflictError("Taken.", {"field": "name"})
    assert error.to_dict()["error"]["details"] == [{"field": "name", "message": "Taken."}]


@pytest.mark.parametrize("details", [None, []])
def test_an_error_without_details_has_an_empty_list(details):
    assert MailappError("No.", details).to_dict()["error"]["details"] == []
