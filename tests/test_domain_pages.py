"""The sending domains pages and API: add, see the records to publish (the very strings dkimpy then
verifies signatures against), check, delete; private keys never leave the server."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest

from mailapp.models import SendingDomain
from mailapp.sending.test_sends import send_test_messages
from tests.dkim_check import verify_dkim
from tests.dns_server import DnsTestServer, dns_server_for
from tests.test_sending import make_campaign

RECORD_RE = re.compile(
    r'data-purpose="(?P<purpose>[\w-]+)".*?<code class="user-select-all">(?P<name>[^<]+)</code>.*?'
    r'data-testid="record-value">(?P<value>[^<]+)</code>', re.S,
)


@pytest.fixture
def dns_server(app) -> Iterator[DnsTestServer]:
    with dns_server_for(app) as server:
        yield server


def page_records(page: str) -> dict[str, tuple[str, str]]:
    return {match["purpose"]: (html.unescape(match["name"]), html.unescape(match["value"]))
            for match in RECORD_RE.finditer(page)}


def test_a_domain_added_in_the_dashboard_signs_mail_that_verifies_against_the_records_its_page_shows(
    db, auth_client, smtp_server
) -> None:
    response = auth_client.post_form("/domains/new", {"domain": "Example.com", "ed25519": "y"},
                                     token_page="/domains/new")
    assert response.status_code == 302
    page = auth_client.get(response.headers["Location"]).get_data(as_text=True)
    records = page_records(page)
    assert set(records) == {"dkim", "dkim-ed25519", "spf", "dmarc"}
    assert "PRIVATE KEY" not in page
    sealed = db.session.query(SendingDomain).one().rsa_private_key_sealed
    assert sealed not in page
    campaign, _ = make_campaign(count=1, status="draft")
    send_test_messages(campaign.id, ["qa@example.org"], None)
    (message,) = smtp_server.wait_for(1)
    published = {name: value for name, value in records.values()}
    assert [(result.algorithm, result.valid) for result in verify_dkim(message.raw, published)] == [
        ("rsa-sha256", True), ("ed25519-sha256", True)]


def test_a_bad_domain_is_shown_as_a_form_error(db, auth_client) -> None:
    response = auth_client.post_form("/domains/new", {"domain": "not a domain"}, token_page="/domains/new")
    assert response.status_code == 422
    assert "is not a domain name" in response.get_data(as_text=True)
    response = auth_client.post_form("/domains/new", {"domain": "example.com", "selector": "-x-"},
                                     token_page="/domains/new")
    assert response.status_code == 422
    assert "The selector must be" in response.get_data(as_text=True)
    assert db.session.query(SendingDomain).count() == 0


def test_the_list_links_each_domain_and_the_nav_links_the_list(db, auth_client) -> None:
    auth_client.post_form("/domains/new", {"domain": "example.com"}, token_page="/domains/new")
    domain_id = db.session.query(SendingDomain).one().id
    page = auth_client.get("/domains/").get_data(as_text=True)
    assert f'href="/domains/{domain_id}">example.com</a>' in page
    assert 'href="/domains/"' in auth_client.get("/").get_data(as_text=True)


def test_checking_from_the_page_shows_the_findings(db, auth_client, dns_server) -> None:
    auth_client.post_form("/domains/new", {"domain": "example.com"}, token_page="/domains/new")
    sending_domain = db.session.query(SendingDomain).one()
    dns_server.records[("example.com", "TXT")] = ["v=spf1 +all"]
    response = auth_client.post_form(f"/domains/{sending_domain.id}/check", token_page="/domains/")
    assert response.status_code == 302
    page = auth_client.get(f"/domains/{sending_domain.id}").get_data(as_text=True)
    assert "No DKIM record at" in page
    assert "lets anyone on the internet send as example.com" in page
    assert "No DMARC record" in page


def test_deleting_asks_first_then_deletes(db, auth_client) -> None:
    auth_client.post_form("/domains/new", {"domain": "example.com"}, token_page="/domains/new")
    domain_id = db.session.query(SendingDomain).one().id
    confirm = auth_client.get(f"/domains/{domain_id}/delete")
    assert confirm.status_code == 200
    assert "will no longer be DKIM-signed" in confirm.get_data(as_text=True)
    assert db.session.query(SendingDomain).count() == 1
    assert auth_client.post(f"/domains/{domain_id}/delete").status_code == 400  # no CSRF token
    confirm_page = f"/domains/{domain_id}/delete"
    response = auth_client.post_form(confirm_page, token_page=confirm_page)
    assert response.status_code == 302
    db.session.rollback()
    assert db.session.query(SendingDomain).count() == 0


def test_the_api_adds_lists_checks_and_deletes_domains(db, api, dns_server) -> None:
    created = api.post("/api/v1/sending-domains", json={"domain": "Bücher.example", "ed25519": True})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert (body["domain"], body["domain_unicode"]) == ("xn--bcher-kva.example", "bücher.example")
    assert body["private_keys"] == ["rsa-sha256", "ed25519-sha256"]
    assert "PRIVATE KEY" not in created.get_data(as_text=True)
    assert body["last_check"] is None
    dkim = next(record for record in body["records"] if record["purpose"] == "dkim")
    assert "".join(dkim["strings"]) == dkim["value"]
    dns_server.records[(dkim["name"], "TXT")] = [dkim["value"]]
    checked = api.post(f"/api/v1/sending-domains/{body['id']}/check").get_json()
    statuses = {finding["record"]: finding["status"] for finding in checked["last_check"]["findings"]}
    assert statuses == {"dkim": "ok", "dkim-ed25519": "error", "spf": "error", "dmarc": "error"}
    assert checked["last_check"]["passed"] is False
    listed = api.get("/api/v1/sending-domains").get_json()
    assert [item["id"] for item in listed["items"]] == [body["id"]]
    assert api.get(f"/api/v1/sending-domains/{body['id']}").get_json()["last_check"] == checked["last_check"]
    assert api.delete(f"/api/v1/sending-domains/{body['id']}").status_code == 204
    assert api.get(f"/api/v1/sending-domains/{body['id']}").status_code == 404


@pytest.mark.parametrize(("payload", "status", "field"), [
    ({}, 422, "domain"),
    ({"domain": "x"}, 422, "domain"),
    ({"domain": 7}, 422, "domain"),
    ({"domain": "example.com", "ed25519": "yes"}, 422, "ed25519"),
    ({"domain": "example.com", "selector": "a b"}, 422, "selector"),
    ({"domain": "example.com", "private_key": "..."}, 422, "private_key"),
])
def test_the_api_refuses_bad_input_naming_the_field(db, api, payload, status, field) -> None:
    response = api.post("/api/v1/sending-domains", json=payload)
    assert response.status_code == status
    assert response.get_json()["error"]["details"][0]["field"] == field


def test_the_api_answers_409_for_a_domain_already_there(db, api) -> None:
    assert api.post("/api/v1/sending-domains", json={"domain": "example.com"}).status_code == 201
    again = api.post("/api/v1/sending-domains", json={"domain": "EXAMPLE.COM."})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "conflict"
