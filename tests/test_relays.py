"""Relays and sender identities through the API and the dashboard: CRUD, a password stored sealed and
never shown, validation naming each field, "Test connection" against a real SMTP server, the choice of
relay (campaign, then identity, then the default row, then MAIL_*), and identities filling campaigns."""

from __future__ import annotations

import socket

from sqlalchemy import select

from mailapp.models import Campaign, SmtpRelay
from mailapp.secret_box import SecretBox
from mailapp.sending.relay_choice import chosen_relay_row
from tests.campaign_fixtures import audience, campaign_payload, make_delivery, make_ready_campaign  # noqa: F401
from tests.smtp import SMTPTestServer

RELAY = {"name": "Mailgun", "host": "127.0.0.1", "port": 2525, "tls_mode": "none", "username": "postmaster",
         "password": "s3cret pass", "cap_per_hour": 500, "rate_per_second": 2.5}


def _problem_fields(response, status: int = 422) -> set[str]:
    assert response.status_code == status, response.get_data(as_text=True)
    return {detail["field"] for detail in response.get_json()["error"]["details"]}


def test_a_relay_password_is_stored_sealed_and_never_shown_again(api, db):
    created = api.post("/api/v1/relays", json=RELAY)
    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert body["password_set"] is True
    assert "password" not in body
    assert "s3cret" not in created.get_data(as_text=True)
    row = db.session.get(SmtpRelay, body["id"])
    assert "s3cret" not in row.password_sealed
    assert SecretBox.for_current_app().open(row.password_sealed) == "s3cret pass"
    assert "s3cret" not in api.get(f"/api/v1/relays/{row.id}").get_data(as_text=True)
    assert "s3cret" not in api.get("/api/v1/relays").get_data(as_text=True)

    kept = api.patch(f"/api/v1/relays/{row.id}", json={"cap_per_day": 9000}).get_json()
    assert (kept["password_set"], kept["cap_per_day"]) == (True, 9000)
    removed = api.patch(f"/api/v1/relays/{row.id}", json={"password": None}).get_json()
    assert removed["password_set"] is False


def test_bad_relay_input_names_each_field_and_writes_nothing(api, db):
    response = api.post("/api/v1/relays", json={
        **RELAY, "port": 70000, "tls_mode": "tls1.0", "cap_per_hour": -1, "rate_per_second": "fast",
        "backup_relay_id": 424242,
    })
    assert _problem_fields(response) == {"port", "tls_mode", "cap_per_hour", "rate_per_second",
                                         "backup_relay_id"}
    assert _problem_fields(api.post("/api/v1/relays", json={**RELAY, "host": "smtp.example.com"})) == {"host"}
    assert _problem_fields(api.post("/api/v1/relays", json={**RELAY, "colour": "red"})) == {"colour"}
    assert _problem_fields(api.post("/api/v1/relays", json={**RELAY, "tls_mode": {}})) == {"tls_mode"}  # fuzz
    assert _problem_fields(api.post("/api/v1/relays", json={"name": "x"})) == {"host"}
    assert db.session.scalar(select(SmtpRelay)) is None
    api.post("/api/v1/relays", json=RELAY)
    assert api.post("/api/v1/relays", json=RELAY).status_code == 409


def test_a_relay_cannot_back_itself_up_through_a_loop(api):
    first = api.post("/api/v1/relays", json={**RELAY, "name": "first"}).get_json()
    second = api.post("/api/v1/relays", json={**RELAY, "name": "second", "backup_relay_id": first["id"]})
    for backup in (second.get_json()["id"], first["id"]):
        looping = api.patch(f"/api/v1/relays/{first['id']}", json={"backup_relay_id": backup})
        assert _problem_fields(looping) == {"backup_relay_id"}


def test_only_one_relay_is_the_default(api):
    first = api.post("/api/v1/relays", json={**RELAY, "name": "first", "is_default": True}).get_json()
    second = api.post("/api/v1/relays", json={**RELAY, "name": "second", "is_default": True}).get_json()
    assert api.get(f"/api/v1/relays/{first['id']}").get_json()["is_default"] is False
    assert api.get(f"/api/v1/relays/{second['id']}").get_json()["is_default"] is True
    assert api.delete(f"/api/v1/relays/{second['id']}").status_code == 204
    assert api.get(f"/api/v1/relays/{second['id']}").status_code == 404


def test_test_connection_reports_the_greeting_and_the_ehlo_extensions(api, smtp_server):
    relay = api.post("/api/v1/relays", json={**RELAY, "port": smtp_server.port, "password": None}).get_json()
    result = api.post(f"/api/v1/relays/{relay['id']}/test").get_json()
    assert result["ok"] is True, result
    assert result["greeting"].startswith("220 ")
    assert "PIPELINING" in result["extensions"]
    assert result["error"] is None


def test_test_connection_says_in_words_why_it_failed(api):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    relay = api.post("/api/v1/relays", json={**RELAY, "port": port}).get_json()
    result = api.post(f"/api/v1/relays/{relay['id']}/test").get_json()
    assert result == {"ok": False, "greeting": "", "extensions": [],
                      "error": f"127.0.0.1:{port} refused the connection: nothing listens on that port."}


def test_test_connection_reports_a_missing_starttls(api, smtp_server):
    starttls = {**RELAY, "port": smtp_server.port, "tls_mode": "starttls"}
    relay = api.post("/api/v1/relays", json=starttls).get_json()
    result = api.post(f"/api/v1/relays/{relay['id']}/test").get_json()
    assert result["ok"] is False
    assert result["greeting"].startswith("220 ")
    assert "does not offer STARTTLS" in result["error"]


def test_sender_identities_crud_and_a_campaign_filled_from_one(api, db, audience):  # noqa: F811
    relay = api.post("/api/v1/relays", json=RELAY).get_json()
    identity = api.post("/api/v1/sender-identities", json={
        "name": "Newsletter", "from_name": "Example News", "from_email": "News@Example.com",
        "reply_to": "replies@example.com", "relay_id": relay["id"],
    })
    assert identity.status_code == 201, identity.get_data(as_text=True)
    identity = identity.get_json()
    assert identity["from_email"] == "news@example.com"
    assert identity["domain"] == "example.com"
    bad = api.post("/api/v1/sender-identities", json={"name": "x", "from_email": "nope"})
    assert _problem_fields(bad) == {"from_email"}
    assert _problem_fields(api.patch(f"/api/v1/sender-identities/{identity['id']}",
                                     json={"from_name": "Bad\r\nBcc: x@example.com"})) == {"from_name"}

    payload = campaign_payload(audience, sender_identity_id=identity["id"])
    for name in ("from_name", "from_email", "reply_to"):
        payload.pop(name)
    campaign = api.post("/api/v1/campaigns", json=payload)
    assert campaign.status_code == 201, campaign.get_data(as_text=True)
    campaign = campaign.get_json()
    assert (campaign["from_name"], campaign["from_email"], campaign["reply_to"]) == (
        "Example News", "news@example.com", "replies@example.com")
    assert (campaign["sender_identity_id"], campaign["relay_id"]) == (identity["id"], None)
    # Typing stays possible: a typed field wins over the identity's.
    typed = api.post("/api/v1/campaigns", json=campaign_payload(
        audience, sender_identity_id=identity["id"], from_name="Someone Else")).get_json()
    assert typed["from_name"] == "Someone Else"

    assert api.delete(f"/api/v1/sender-identities/{identity['id']}").status_code == 204
    kept = api.get(f"/api/v1/campaigns/{campaign['id']}").get_json()
    assert (kept["sender_identity_id"], kept["from_email"]) == (None, "news@example.com")


def test_the_campaigns_relay_wins_then_the_identitys_then_the_default_row_then_mail_server(api, db, audience):  # noqa: F811
    default = api.post("/api/v1/relays", json={**RELAY, "name": "default row"}).get_json()
    by_identity = api.post("/api/v1/relays", json={**RELAY, "name": "identity's"}).get_json()
    by_campaign = api.post("/api/v1/relays", json={**RELAY, "name": "campaign's"}).get_json()
    identity = api.post("/api/v1/sender-identities", json={
        "name": "N", "from_email": "news@example.com", "relay_id": by_identity["id"]}).get_json()
    campaign_id = api.post("/api/v1/campaigns", json=campaign_payload(
        audience, sender_identity_id=identity["id"], relay_id=by_campaign["id"])).get_json()["id"]

    def chosen() -> str | None:
        db.session.expire_all()
        row = chosen_relay_row(db.session.get(Campaign, campaign_id))
        return row.name if row is not None else None

    assert chosen() == "campaign's"
    api.patch(f"/api/v1/relays/{by_campaign['id']}", json={"enabled": False})
    assert chosen() == "identity's"
    api.patch(f"/api/v1/campaigns/{campaign_id}", json={"relay_id": None, "sender_identity_id": None})
    assert chosen() is None  # the MAIL_* relay
    api.patch(f"/api/v1/relays/{default['id']}", json={"is_default": True})
    assert chosen() == "default row"


def test_the_delivery_log_names_the_relay_of_each_message(api, auth_client, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience, status="sent")
    make_delivery(campaign.id, audience.active[0].id, status="sent", relay_name="Mailgun EU")
    log = api.get(f"/api/v1/campaigns/{campaign.id}/deliveries").get_json()
    assert [item["relay_name"] for item in log["items"]] == ["Mailgun EU"]
    page = auth_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'data-testid="delivery-relay">Mailgun EU<' in page
    assert 'data-testid="campaign-relay">via the default relay<' in page


def test_the_relays_page_adds_a_relay_tests_it_and_never_shows_its_password(auth_client, db, smtp_server):
    page = auth_client.get("/relays/").get_data(as_text=True)
    assert "default (MAIL_SERVER)" in page
    response = auth_client.post_form("/relays/new", {
        "name": "Local", "host": "127.0.0.1", "port": smtp_server.port, "tls_mode": "none",
        "password": "hunter2 secret", "max_connections": 2, "rate_per_second": "1.5", "cap_per_hour": 100,
        "cap_per_day": 0, "backup_relay_id": 0, "enabled": "y",
    }, token_page="/relays/new")
    assert response.status_code == 302, response.get_data(as_text=True)
    relay = db.session.scalar(select(SmtpRelay))
    saved = (relay.name, relay.rate_per_second, relay.cap_per_hour, relay.max_connections)
    assert saved == ("Local", 1.5, 100, 2)
    page = auth_client.get("/relays/").get_data(as_text=True)
    assert "hunter2" not in page
    assert ">set<" in page
    assert "hunter2" not in auth_client.get(f"/relays/{relay.id}/edit").get_data(as_text=True)
    tested = auth_client.post_form(f"/relays/{relay.id}/test", token_page="/relays/").get_data(as_text=True)
    assert 'data-testid="relay-test-result"' in tested
    assert "Greeting: <code>220 " in tested
    refused = auth_client.post_form("/relays/new", {
        "name": "Far", "host": "smtp.example.com", "port": 25, "tls_mode": "none", "max_connections": 1,
        "cap_per_hour": 0, "cap_per_day": 0,
    }, token_page="/relays/new")
    assert refused.status_code == 422
    assert "RELAY_ALLOWED_HOSTS" in refused.get_data(as_text=True)


def test_the_campaign_form_offers_the_identities_and_relays(auth_client, api, audience):  # noqa: F811
    api.post("/api/v1/relays", json=RELAY)
    api.post("/api/v1/sender-identities", json={"name": "Newsletter", "from_email": "news@example.com"})
    page = auth_client.get("/campaigns/new").get_data(as_text=True)
    assert "Newsletter &lt;news@example.com&gt;" in page
    assert "&#34;from_email&#34;: &#34;news@example.com&#34;" in page  # what the picker fills in
    assert ">Mailgun</option>" in page


def test_a_test_send_goes_through_the_campaigns_relay(api, db, smtp_server, audience):  # noqa: F811
    own = SMTPTestServer()
    own.start()
    try:
        relay = api.post("/api/v1/relays", json={**RELAY, "port": own.port, "password": None}).get_json()
        campaign = make_ready_campaign(audience, relay_id=relay["id"])
        response = api.post(f"/api/v1/campaigns/{campaign.id}/test", json={"emails": ["qa@example.com"]})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert [message.to for message in own.wait_for(1)] == ["qa@example.com"]
        assert smtp_server.messages == []
    finally:
        own.stop()


def test_an_identity_names_the_sending_domain_that_signs_its_mail(api, auth_client, db):
    from mailapp.domains.services import create_domain

    unsigned = api.post("/api/v1/sender-identities", json={
        "name": "Letters", "from_email": "letters@news.example.com"}).get_json()
    assert unsigned["sending_domain_id"] is None
    assert 'data-testid="identity-unsigned"' in auth_client.get("/relays/").get_data(as_text=True)

    parent = create_domain("example.com")
    db.session.commit()
    # The parent signs a subdomain's mail (as the DKIM signer does), so the identity shows it.
    signed = api.get(f"/api/v1/sender-identities/{unsigned['id']}").get_json()
    assert signed["sending_domain_id"] == parent.id
    page = auth_client.get("/relays/").get_data(as_text=True)
    assert 'data-testid="identity-signed"' in page
    assert "DKIM: example.com" in page
