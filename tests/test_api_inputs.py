"""Inputs that once made the JSON API answer 500: ids beyond the database's 64-bit keys (in paths,
query strings and bodies), strings the database cannot store, bodies nested or sized to exhaust the
parser. Each is a 4xx in the one error shape, and nothing is written."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import func, select

from mailapp.models import Campaign, Layout, Subscriber, SubscriberList
from mailapp.models.subscriber import SubscriberImport
from tests.campaign_fixtures import audience, campaign_payload, make_ready_campaign
from tests.factories import LayoutFactory, SubscriberFactory, SubscriberListFactory

__all__ = ["audience"]

TOO_BIG = 2**63  # one past BIGINT
WAY_TOO_BIG = 2**64 + 1


def _error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    body = response.get_json()
    assert set(body["error"]) == {"code", "message", "details"}
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.mark.parametrize("path", [
    "/api/v1/lists/{n}", "/api/v1/lists/{n}/export", "/api/v1/subscribers/{n}", "/api/v1/layouts/{n}",
    "/api/v1/campaigns/{n}", "/api/v1/campaigns/{n}/deliveries", "/api/v1/campaigns/{n}/report",
    "/api/v1/imports/{n}",
])
def test_an_id_beyond_64_bits_in_an_api_path_is_a_json_404(api, path):
    for number in (TOO_BIG, WAY_TOO_BIG, 0):
        _error(api.get(path.format(n=number)), 404, "not_found")


def test_an_id_beyond_64_bits_in_a_path_is_a_404_for_writes_too(api):
    for method, path in [("patch", "/api/v1/lists/{n}"), ("delete", "/api/v1/subscribers/{n}"),
                         ("post", "/api/v1/campaigns/{n}/send"), ("post", "/api/v1/layouts/{n}/preview")]:
        _error(getattr(api, method)(path.format(n=TOO_BIG), json={}), 404, "not_found")


def test_an_id_beyond_64_bits_in_a_dashboard_path_is_a_404_page(auth_client):
    for path in ("/lists/{n}", "/campaigns/{n}", "/subscribers/{n}", "/reports/campaigns/{n}"):
        response = auth_client.get(path.format(n=TOO_BIG))
        assert response.status_code == 404, path
        assert response.mimetype == "text/html"


def test_the_largest_64_bit_id_is_still_routed_and_simply_not_found(api):
    body = _error(api.get(f"/api/v1/lists/{2**63 - 1}"), 404, "not_found")
    assert str(2**63 - 1) in body["message"]


@pytest.mark.parametrize("query", [
    f"/api/v1/subscribers?list_id={TOO_BIG}", "/api/v1/subscribers?list_id=%C2%B2",
    f"/api/v1/subscribers?page={TOO_BIG}", f"/api/v1/lists?page={WAY_TOO_BIG}",
    "/api/v1/lists?page=%C2%B2", f"/api/v1/layouts?per_page={TOO_BIG}", "/api/v1/campaigns?page=-1",
])
def test_an_out_of_range_number_in_a_query_string_is_a_422(api, query):
    error = _error(api.get(query), 422, "validation_error")
    assert error["details"][0]["field"] in query


def test_an_out_of_range_keyset_position_in_the_delivery_log_is_a_422(api, audience):
    campaign = make_ready_campaign(audience)
    for after in (TOO_BIG, WAY_TOO_BIG, -1):
        error = _error(api.get(f"/api/v1/campaigns/{campaign.id}/deliveries?after={after}"), 422)
        assert error["details"][0]["field"] == "after"


def test_out_of_range_ids_in_a_campaign_body_are_a_422_naming_the_field(api, db, audience):
    for overrides, field in [({"layout_id": TOO_BIG}, "layout_id"), ({"list_ids": [WAY_TOO_BIG]}, "list_ids"),
                             ({"layout_id": str(TOO_BIG)}, "layout_id"), ({"list_ids": [-5]}, "list_ids")]:
        error = _error(api.post("/api/v1/campaigns", json=campaign_payload(audience, **overrides)), 422)
        assert field in {detail["field"] for detail in error["details"]}, overrides
    assert db.session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_an_out_of_range_subscriber_id_for_a_test_send_or_a_preview_is_a_422(api, audience, smtp_server):
    campaign = make_ready_campaign(audience)
    payload = {"emails": ["qa@example.com"], "subscriber_id": TOO_BIG}
    _error(api.post(f"/api/v1/campaigns/{campaign.id}/test", json=payload), 422, "validation_error")
    assert smtp_server.messages == []
    error = _error(api.post(f"/api/v1/layouts/{audience.layout.id}/preview", json={"subscriber_id": TOO_BIG}),
                   422, "validation_error")
    assert error["details"][0]["field"] == "subscriber_id"


def test_an_out_of_range_list_id_for_a_subscriber_is_a_422(api, db):
    _error(api.post("/api/v1/subscribers", json={"email": "a@example.com", "list_ids": [TOO_BIG]}), 422)
    subscriber = SubscriberFactory()
    _error(api.patch(f"/api/v1/subscribers/{subscriber.id}", json={"list_ids": [WAY_TOO_BIG]}), 422)
    assert db.session.scalar(select(func.count()).select_from(SubscriberList)) == 0


def _raw(api, method: str, url: str, text: str | bytes):
    return getattr(api, method)(url, data=text, content_type="application/json")


@pytest.mark.parametrize("escaped", ["\\ud800", "\\udfff", "x\\udc00y", "\\ud83d"])
def test_a_lone_surrogate_in_a_json_string_is_a_422_naming_the_field(api, db, escaped):
    error = _error(_raw(api, "post", "/api/v1/lists", f'{{"name": "{escaped}"}}'), 422, "unstorable_text")
    assert error["details"][0]["field"] == "name"
    error = _error(_raw(api, "post", "/api/v1/subscribers",
                        f'{{"email": "a@example.com", "attributes": {{"city": ["ok", "{escaped}"]}}}}'),
                   422, "unstorable_text")
    assert error["details"][0]["field"] == "attributes.city[1]"
    assert db.session.scalar(select(func.count()).select_from(SubscriberList)) == 0


def test_a_surrogate_pair_is_one_character_and_is_accepted(api):
    response = _raw(api, "post", "/api/v1/lists", '{"name": "Emoji \\ud83d\\ude00"}')
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["name"] == "Emoji \U0001f600"


def test_a_nul_character_in_a_json_string_or_key_is_a_422(api, db):
    error = _error(api.post("/api/v1/lists", json={"name": "a\x00b"}), 422, "unstorable_text")
    assert error["details"][0]["field"] == "name"
    layout = LayoutFactory()
    response = api.patch(f"/api/v1/layouts/{layout.id}", json={"html": "<p>\x00</p>"})
    assert _error(response, 422, "unstorable_text")["details"][0]["field"] == "html"
    body = {"email": "a@example.com", "attributes": {"k\x00": 1}}
    error = _error(api.post("/api/v1/subscribers", json=body), 422, "unstorable_text")
    assert error["details"][0]["field"] == "attributes"
    assert db.session.scalar(select(func.count()).select_from(SubscriberList)) == 0


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,
    '{"name": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}",
    '{"name": "x", "attributes": ' + "[" * 33 + "]" * 33 + "}",
])
def test_deeply_nested_json_is_refused_before_it_is_parsed(api, body):
    error = _error(_raw(api, "post", "/api/v1/subscribers", body), 422, "invalid_json")
    assert "deeper than 32" in error["message"]


def test_brackets_inside_strings_do_not_count_as_nesting(api):
    # Escaped quotes inside the string do not end it, so the brackets after them are text too.
    name = "[" * 100 + '"{' * 50
    response = _raw(api, "post", "/api/v1/lists", json.dumps({"name": name}))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["name"] == name
    nested = {"email": "a@example.com", "attributes": {"deep": json.loads("[" * 30 + "]" * 30)}}
    assert api.post("/api/v1/subscribers", json=nested).status_code == 201


@pytest.mark.parametrize("text", ["not json", '{"a": NaN}', '{"a": 1e999}', '{"a": ' + "9" * 5000 + "}",
                                  b'{"name": "caf\xe9"}'])
def test_a_body_that_is_not_usable_json_is_a_422(api, text):
    _error(_raw(api, "post", "/api/v1/lists", text), 422, "invalid_json")


def test_a_json_body_over_the_api_limit_is_a_413_before_it_is_read(api, app, db):
    limit = app.config["API_MAX_JSON_BYTES"]
    error = _error(api.post("/api/v1/lists", json={"name": "Big", "description": "x" * limit}), 413,
                   "request_entity_too_large")
    assert error["details"][0]["limit"] == limit
    assert db.session.scalar(select(func.count()).select_from(SubscriberList)) == 0


def test_a_layout_near_its_own_limit_still_arrives_as_json(api, app):
    html = "<p>{{ message }}</p>" + "é" * (app.config["LAYOUT_MAX_BYTES"] // 2 - 100)
    assert len(json.dumps({"html": html}).encode()) > app.config["API_MAX_JSON_BYTES"]
    response = api.post("/api/v1/layouts", json={"name": "Big", "html": html})
    assert response.status_code == 201, response.get_data(as_text=True)[:300]


def test_a_list_with_a_large_but_valid_id_in_a_body_is_simply_missing(api, audience):
    error = _error(api.post("/api/v1/campaigns", json=campaign_payload(audience, list_ids=[2**63 - 1])), 422)
    assert "No such list" in error["details"][0]["message"]


def test_a_layout_or_list_name_taken_up_to_the_case_of_a_non_ascii_letter_is_a_409(api, db):
    first = api.post("/api/v1/layouts", json={"name": "Été", "html": "<p>{{ message }}</p>"})
    assert first.status_code == 201, first.get_data(as_text=True)
    _error(api.post("/api/v1/layouts", json={"name": "Été", "html": "<p>x</p>"}), 409, "conflict")
    other = api.post("/api/v1/layouts", json={"name": "Autumn", "html": "<p>x</p>"}).get_json()
    _error(api.patch(f"/api/v1/layouts/{other['id']}", json={"name": "Été"}), 409, "conflict")
    assert api.post("/api/v1/lists", json={"name": "Élan"}).status_code == 201
    _error(api.post("/api/v1/lists", json={"name": "Élan"}), 409, "conflict")
    target = api.post("/api/v1/lists", json={"name": "Other"}).get_json()
    _error(api.patch(f"/api/v1/lists/{target['id']}", json={"name": "Élan"}), 409, "conflict")
    assert api.get(f"/api/v1/layouts/{other['id']}").get_json()["name"] == "Autumn"


@pytest.mark.parametrize("query", ["/api/v1/subscribers?q=a%00b", "/api/v1/campaigns?status=%00",
                                   "/api/v1/lists?x%00=1"])
def test_a_nul_character_in_a_query_string_is_a_422(api, query):
    error = _error(api.get(query), 422, "validation_error")
    assert "NUL" in error["message"]


# --- the dashboard shares the URL map and the same database ------------------------------------------


@pytest.mark.parametrize("url", [
    f"/lists?page={TOO_BIG}", f"/subscribers?page={TOO_BIG}", f"/subscribers?list_id={TOO_BIG}",
    f"/subscribers?before={TOO_BIG}", f"/subscribers?after={WAY_TOO_BIG}", f"/campaigns/?page={TOO_BIG}",
    f"/campaigns/recipients-count?list_ids={TOO_BIG}", f"/reports/?page={TOO_BIG}",
    f"/layouts/?page={TOO_BIG}",
    f"/campaigns/{{campaign}}?after={TOO_BIG}", f"/reports/campaigns/{{campaign}}/recipients?after={TOO_BIG}",
    f"/layouts/{{layout}}/preview?subscriber_id={TOO_BIG}",
])
def test_an_out_of_range_number_in_a_dashboard_query_string_is_ignored(auth_client, audience, url):
    campaign = make_ready_campaign(audience)
    response = auth_client.get(url.format(campaign=campaign.id, layout=audience.layout.id))
    assert response.status_code == 200, response.get_data(as_text=True)[:300]


def test_an_out_of_range_list_id_is_left_out_of_the_recipient_count(auth_client, audience):
    first = audience.lists[0].id
    response = auth_client.get(f"/campaigns/recipients-count?list_ids={first}&list_ids={TOO_BIG}")
    assert response.get_json()["list_ids"] == [first]


def test_a_nul_character_in_a_dashboard_query_string_is_a_422_page(auth_client):
    response = auth_client.get("/subscribers?q=a%00b")
    assert response.status_code == 422
    assert response.mimetype == "text/html"
    assert "NUL" in response.get_data(as_text=True)


def test_a_nul_character_in_a_multipart_layout_is_a_422_naming_the_field(api, db):
    response = api.post("/api/v1/layouts", data={"name": "\x00", "html": "<p>{{ message }}</p>"},
                        content_type="multipart/form-data")
    assert _error(response, 422, "unstorable_text")["details"][0]["field"] == "name"
    upload = (io.BytesIO(b"<p>{{ message }}\x00</p>"), "layout.html")
    response = api.post("/api/v1/layouts", data={"name": "Plain", "file": upload},
                        content_type="multipart/form-data")
    assert _error(response, 422, "validation_error")["details"][0]["field"] == "file"  # refused as binary
    assert db.session.scalar(select(func.count()).select_from(Layout)) == 0


def test_a_nul_character_in_an_import_file_name_is_dropped(api, db):
    target = SubscriberListFactory()
    upload = (io.BytesIO(b"email\nann@example.com\n"), "peo\x00ple.csv")
    response = api.post(f"/api/v1/lists/{target.id}/import", data={"file": upload},
                        content_type="multipart/form-data")
    assert response.status_code == 202, response.get_data(as_text=True)
    record = db.session.get(SubscriberImport, response.get_json()["import_id"])
    assert record.filename == "people.csv"


def test_attributes_given_as_deeply_nested_json_text_are_a_422(api, auth_client, db):
    deep = "[" * 100_000 + "]" * 100_000
    error = _error(api.post("/api/v1/subscribers", json={"email": "a@example.com", "attributes": deep}), 422)
    assert error["details"][0]["field"] == "attributes"
    response = auth_client.post_form("/subscribers/new", {"email": "b@example.com", "attributes": deep},
                                     token_page="/subscribers/new")
    assert response.status_code in (200, 422)
    assert "deeper than 32" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0
