"""The rules every way in applies to subscriber data (CSV import, API, dashboard form): bounded rows and
attributes, NUL refused, line breaks in names and values flattened, non-ASCII local parts refused at
input. Also NUL in list and search inputs: a 4xx, never the 500 psycopg2 would give on PostgreSQL."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from mailapp.addresses import normalize_email
from mailapp.errors import ImportFileError, ValidationError
from mailapp.models import Campaign
from mailapp.models.subscriber import Subscriber, SubscriberList
from mailapp.subscribers import imports
from tests.campaign_fixtures import audience, campaign_payload, make_ready_campaign
from tests.factories import SubscriberFactory, SubscriberListFactory
from tests.test_import import assert_counts_add_up, members_of, run_csv

__all__ = ["audience"]


@pytest.fixture
def target(db) -> SubscriberList:
    return SubscriberListFactory(name="Rules")


def stored(db, email: str) -> Subscriber:
    db.session.expire_all()
    return db.session.scalar(select(Subscriber).where(Subscriber.email == email))


def subscriber_count(db) -> int:
    return db.session.scalar(select(func.count()).select_from(Subscriber))


def assert_422_on(response, field: str) -> dict:
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    # A NUL is caught by the API's JSON check before the subscriber rules see it (code unstorable_text).
    assert error["code"] in {"validation_error", "unstorable_text"}
    # The JSON check names the value's whole path (attributes.city); the subscriber rules the field.
    named = error["details"][0]["field"]
    assert named == field or named.startswith(f"{field}.")
    return error


# --- CSV rows -----------------------------------------------------------------------------------------

def test_an_over_long_line_is_one_invalid_row_and_the_rows_around_it_import(db, target):
    content = (
        "email,name,city\n"
        "ann@example.com,Ann,Paris\n"
        f"big@example.com,Big,{'x' * 70_000}\n"  # line 3
        "bob@example.com,Bob,Oslo\n"
    )
    report = run_csv(target, content)
    assert (report["status"], report["processed"], report["imported"], report["invalid"]) == ("done", 3, 2, 1)
    assert report["errors"] == [{"line": 3, "email": "", "reason": "Line 3 is longer than 65536 bytes."}]
    assert members_of(db, target) == ["ann@example.com", "bob@example.com"]


def test_a_quoted_row_over_the_limit_across_lines_is_invalid_and_later_rows_still_import(db, target):
    long_quoted = "\n".join(["y" * 1000] * 70)
    content = f'email,name,city\nann@example.com,Ann,"{long_quoted}"\nbob@example.com,Bob,Oslo\n'
    report = run_csv(target, content)
    assert report["status"] == "done"
    assert report["errors"][0] == {
        "line": 2, "email": "", "reason": "The row from line 2 is longer than 65536 bytes."
    }
    assert_counts_add_up(report)
    assert members_of(db, target) == ["bob@example.com"]


def test_the_row_limit_is_a_setting(app, db, target, monkeypatch):
    monkeypatch.setitem(app.config, "IMPORT_MAX_LINE_BYTES", 40)
    content = "email,name\nann@example.com,Ann\ncarl@example.com,Carl Wolfgang Amadeus Mozart\n"
    report = run_csv(target, content)
    assert report["imported"] == 1
    assert report["errors"][0]["reason"] == "Line 3 is longer than 40 bytes."


def test_an_attribute_value_over_the_limit_is_an_invalid_row(db, target):
    report = run_csv(target, f"email,city\nann@example.com,{'é' * 1100}\nbob@example.com,Oslo\n")
    assert report["errors"] == [
        {"line": 2, "email": "ann@example.com", "reason": "The value of 'city' is longer than 2048 bytes."}
    ]
    assert members_of(db, target) == ["bob@example.com"]


def test_a_header_with_too_long_an_attribute_name_is_refused(db, target):
    with pytest.raises(ImportFileError, match="longer than 100 characters"):
        imports.start_import(target, "x.csv", io.BytesIO(f"email,{'k' * 101}\na@example.com,1\n".encode()))


def test_a_nul_in_a_row_is_an_invalid_row_and_nothing_of_it_is_stored(db, target):
    # Past the first 64 KiB, which the upload check reads (a NUL there refuses the whole file).
    filler = "".join(f"p{n}@example.com,P{n},Paris\n" for n in range(3000))
    content = f"email,name,city\n{filler}nul@example.com,N\x00ul,Paris\nlast@example.com,Last,Oslo\n"
    report = run_csv(target, content)
    assert report["status"] == "done", report
    assert report["invalid"] == 1
    assert report["errors"] == [
        {"line": 3002, "email": "nul@example.com", "reason": "The row contains a NUL character."}
    ]
    assert report["imported"] == 3001
    assert stored(db, "nul@example.com") is None


def test_line_breaks_and_control_characters_in_names_and_values_become_spaces(db, target):
    content = 'email,name,city\nann@example.com,"Ann\r\nLee","Par\x0bis\nsud"\n'
    report = run_csv(target, content)
    assert report["imported"] == 1
    ann = stored(db, "ann@example.com")
    assert (ann.name, ann.attributes) == ("Ann Lee", {"city": "Par is sud"})


def test_reimporting_a_file_with_flattened_values_changes_nothing(db, target):
    content = 'email,name,city\nann@example.com,"Ann\nLee","Paris\nNord"\n'
    run_csv(target, content)
    again = run_csv(target, content)
    assert (again["processed"], again["skipped"], again["updated"]) == (1, 1, 0)


def test_a_non_ascii_local_part_in_a_csv_row_is_an_invalid_row(db, target):
    report = run_csv(target, "email\njörg@example.com\nann@bücher.example\n")
    assert report["imported"] == 1
    assert report["errors"][0]["line"] == 2
    assert "non-ASCII" in report["errors"][0]["reason"]


# --- email addresses everywhere ------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["jörg@example.com", "用户@example.com", "a\x00b@example.com"])
def test_addresses_that_would_fail_at_send_time_are_refused_at_input(raw):
    with pytest.raises(ValidationError):
        normalize_email(raw)


def test_an_internationalised_domain_is_accepted():
    assert normalize_email("Ann@Bücher.example") == "ann@bücher.example"


def test_api_refuses_a_non_ascii_local_part(api, db):
    error = assert_422_on(api.post("/api/v1/subscribers", json={"email": "jörg@example.com"}), "email")
    assert "non-ASCII" in error["message"]
    assert subscriber_count(db) == 0


def test_a_campaign_from_address_with_a_non_ascii_local_part_is_refused(api, db, audience):
    response = api.post("/api/v1/campaigns", json=campaign_payload(audience, from_email="jörg@example.com"))
    assert response.status_code == 422, response.get_data(as_text=True)
    assert "from_email" in {detail["field"] for detail in response.get_json()["error"]["details"]}
    assert db.session.scalar(select(Campaign)) is None


# --- API and form: attributes, names, NUL --------------------------------------------------------------

def test_api_refuses_more_attributes_than_allowed(api, db):
    attributes = {f"k{n}": "v" for n in range(51)}
    error = assert_422_on(api.post("/api/v1/subscribers", json={"email": "a@example.com",
                                                                "attributes": attributes}), "attributes")
    assert "at most 50" in error["message"]
    assert subscriber_count(db) == 0


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"bio": "x" * 2049}, "'bio' is longer than 2048 bytes"),
        ({"prefs": {"list": ["x" * 2100]}}, "'prefs' is longer than 2048 bytes"),
        ({"k" * 101: "v"}, "longer than 100 characters"),
        ({"": "v"}, "cannot be empty"),
        ({"city\n": "v"}, "control character"),
        ({"city": "Par\x00is"}, "NUL"),
        ({"prefs": {"a": ["b\x00"]}}, "NUL"),
    ],
)
def test_api_refuses_attributes_over_the_limits_or_with_nul(api, db, attributes, message):
    error = assert_422_on(api.post("/api/v1/subscribers", json={"email": "a@example.com",
                                                                "attributes": attributes}), "attributes")
    assert message in error["message"]
    assert subscriber_count(db) == 0


def test_attribute_limits_are_settings(app, api, monkeypatch):
    monkeypatch.setitem(app.config, "SUBSCRIBER_MAX_ATTRIBUTES", 2)
    monkeypatch.setitem(app.config, "SUBSCRIBER_MAX_ATTRIBUTE_BYTES", 4)
    for attributes in ({"a": "1", "b": "2", "c": "3"}, {"a": "12345"}):
        response = api.post("/api/v1/subscribers", json={"email": "a@example.com", "attributes": attributes})
        assert_422_on(response, "attributes")
    response = api.post("/api/v1/subscribers", json={"email": "a@example.com", "attributes": {"a": "1234"}})
    assert response.status_code == 201


@pytest.mark.parametrize(("body", "field"), [
    ({"email": "a\x00@example.com"}, "email"),
    ({"email": "a@example.com", "name": "A\x00nn"}, "name"),
])
def test_api_refuses_nul_in_email_and_name(api, db, body, field):
    error = assert_422_on(api.post("/api/v1/subscribers", json=body), field)
    assert "NUL" in error["message"]
    assert subscriber_count(db) == 0


def test_api_patch_applies_the_same_rules(api, db):
    subscriber = SubscriberFactory(email="ann@example.com", name="Ann")
    db.session.commit()
    url = f"/api/v1/subscribers/{subscriber.id}"
    assert_422_on(api.patch(url, json={"attributes": {"bio": "x" * 3000}}), "attributes")
    assert_422_on(api.patch(url, json={"name": "\x00"}), "name")
    response = api.patch(url, json={"name": "Ann\r\nBcc: x@example.com", "attributes": {"city": "A\nB"}})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert (response.get_json()["name"], response.get_json()["attributes"]) == (
        "Ann Bcc: x@example.com", {"city": "A B"}
    )


def test_the_subscriber_form_shows_the_attribute_limit_next_to_the_field(auth_client, db):
    attributes = "{" + ", ".join(f'"k{n}": 1' for n in range(51)) + "}"
    response = auth_client.post_form(
        "/subscribers/new", {"email": "ann@example.com", "attributes": attributes, "status": "active"},
        token_page="/subscribers/new",
    )
    assert response.status_code == 422
    assert "Too many attributes: 51; at most 50 are allowed." in response.get_data(as_text=True)
    assert subscriber_count(db) == 0


def test_the_subscriber_form_flattens_a_name_with_line_breaks(auth_client, db):
    response = auth_client.post_form(
        "/subscribers/new", {"email": "ann@example.com", "name": "Ann\r\nLee", "status": "active"},
        token_page="/subscribers/new",
    )
    assert response.status_code == 302
    assert stored(db, "ann@example.com").name == "Ann Lee"


# --- list and search inputs ----------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "field"), [
    ({"name": "News\x00"}, "name"),
    ({"name": "News", "description": "about\x00"}, "description"),
])
def test_a_list_with_nul_in_its_name_or_description_is_422(api, db, body, field):
    assert_422_on(api.post("/api/v1/lists", json=body), field)
    existing = SubscriberListFactory(name="Old")
    db.session.commit()
    assert_422_on(api.patch(f"/api/v1/lists/{existing.id}", json=body), field)


def test_a_search_with_nul_is_422_not_a_server_error(api):
    assert_422_on(api.get("/api/v1/subscribers", query_string={"q": "ann\x00"}), "q")


def test_an_upload_filename_with_nul_is_stored_without_it(api, db, target, monkeypatch):
    monkeypatch.setattr("mailapp.subscribers.tasks.run_import.delay", lambda import_id: None)
    response = api.post(
        f"/api/v1/lists/{target.id}/import",
        data={"file": (io.BytesIO(b"email\na@example.com\n"), "peo\x00ple.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    assert imports.get_import(response.get_json()["import_id"]).filename == "people.csv"


def test_a_nul_in_a_row_with_other_faults_is_still_only_that_rows_error(db, target):
    filler = "".join(f"p{n}@example.com,P{n}\n" for n in range(4000))
    content = f"email,name\n{filler}n\x00l@example.com,N,extra\nbad\x00\nlast@example.com,Last\n"
    report = run_csv(target, content)
    assert report["status"] == "done", report
    assert (report["imported"], report["invalid"]) == (4001, 2)
    assert [error["line"] for error in report["errors"]] == [4002, 4003]


def test_a_test_send_to_a_non_ascii_local_part_is_refused_as_bad_input(api, audience, smtp_server):
    campaign = make_ready_campaign(audience)
    response = api.post(f"/api/v1/campaigns/{campaign.id}/test", json={"emails": ["jörg@example.com"]})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"
    assert "non-ASCII" in response.get_json()["error"]["message"]
    assert smtp_server.messages == []


def test_an_import_cannot_take_a_subscriber_past_the_attribute_limit(app, db, target, monkeypatch):
    monkeypatch.setitem(app.config, "SUBSCRIBER_MAX_ATTRIBUTES", 3)
    SubscriberFactory(email="full@example.com", attributes={"a": "1", "b": "2"})
    SubscriberFactory(email="over@example.com", attributes={"a": "1", "b": "2", "c": "3", "d": "4"})
    db.session.commit()
    content = (
        "email,c,e\n"
        "full@example.com,3,5\n"  # 4 keys with c and e: refused
        "over@example.com,30,\n"  # already over the limit, no new key: updated
        "new@example.com,3,5\n"
        "full@example.com,3,\n"  # a repeat of an email already taken from the file
    )
    report = run_csv(target, content)
    assert report["status"] == "done", report
    assert (report["imported"], report["updated"], report["duplicates"], report["invalid"]) == (1, 1, 1, 1)
    assert_counts_add_up(report)
    assert report["errors"] == [{
        "line": 2, "email": "full@example.com",
        "reason": "With this file's columns the subscriber would have more than 3 attributes.",
    }]
    assert stored(db, "full@example.com").attributes == {"a": "1", "b": "2"}
    assert stored(db, "over@example.com").attributes["c"] == "30"
    assert members_of(db, target) == ["new@example.com", "over@example.com"]
