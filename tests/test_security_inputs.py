"""Security of what strangers and scripts send in, where the areas' own tests leave gaps: tracking tokens
of one kind replayed as another or signed with another key, SSTI payloads through every API that stores
a template, requests over the upload limit, and the login throttle and password hashes.

Covered elsewhere and not repeated here: the SSTI list against the validator and POST /api/v1/layouts
(test_templating, test_layouts), tampered tokens per endpoint (test_tracking, test_unsubscribe), the
layout and CSV size limits inside the services (test_layouts, test_import)."""

from __future__ import annotations

import io
from pathlib import Path

from sqlalchemy import select

from mailapp.auth.services import create_user
from mailapp.models import Campaign, Layout, Subscriber
from mailapp.sending import tokens
from tests.campaign_fixtures import audience, campaign_payload, make_ready_campaign
from tests.conftest import TEST_PASSWORD
from tests.factories import LayoutFactory, SubscriberListFactory
from tests.test_security import snapshot
from tests.test_templating import SSTI_PAYLOADS
from tests.tracking_fixtures import empty_open_buffer, make_campaign, make_delivery, settle

__all__ = ["audience", "empty_open_buffer"]

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def token_under_another_key(app, kind: str, delivery_id: int, position: int | None = None) -> str:
    """A well-formed token for a real delivery, signed by an installation with a different SECRET_KEY."""
    real_key = app.config["SECRET_KEY"]
    app.config["SECRET_KEY"] = "another-installations-secret"
    try:
        return tokens.make_token(kind, delivery_id, position)
    finally:
        app.config["SECRET_KEY"] = real_key


# --- tracking tokens ----------------------------------------------------------------------------------


def test_tokens_of_another_kind_or_another_key_write_nothing(app, client, db):
    """Each public endpoint, given every other kind's token for the same delivery (a click token replayed
    as an unsubscribe, an open token as a click...) or its own kind signed with another SECRET_KEY,
    refuses it and writes nothing: no open, click or unsubscribe, no counter moved."""
    delivery = make_delivery(make_campaign())
    made = {
        "open": tokens.make_token("open", delivery.id),
        "click": tokens.make_token("click", delivery.id, 0),
        "unsubscribe": tokens.make_token("unsubscribe", delivery.id),
        "view": tokens.make_token("view", delivery.id),
    }
    foreign = {
        kind: [token for other, token in made.items() if other != kind]
        + [token_under_another_key(app, kind, delivery.id, 0 if kind == "click" else None)]
        for kind in made
    }
    before = snapshot(db)
    failures = []
    for token in foreign["open"]:
        response = client.get(f"/o/{token}.gif")
        if response.status_code != 200 or response.mimetype != "image/gif":
            failures.append(f"/o/{token}.gif: {response.status_code} {response.mimetype}")
    for kind, prefix in (("click", "/c/"), ("view", "/v/"), ("unsubscribe", "/u/")):
        for token in foreign[kind]:
            responses = [client.get(prefix + token)]
            if kind == "unsubscribe":
                responses.append(client.post(prefix + token, data=ONE_CLICK))
            for response in responses:
                if response.status_code != 404 or "Location" in response.headers:
                    failures.append(f"{response.request.method} {prefix}{token}: {response.status_code}")
    settle()
    assert not failures, "\n".join(failures)
    assert snapshot(db) == before
    # The same delivery's own tokens do work: the refusals above were about the token, not the row.
    assert client.get(f"/c/{made['click']}").status_code == 302
    assert client.post(f"/u/{made['unsubscribe']}", data=ONE_CLICK).status_code == 200
    assert db.session.get(Subscriber, delivery.subscriber_id).status != "active"


# --- SSTI through the API -----------------------------------------------------------------------------


def test_layout_update_refuses_ssti_and_keeps_the_stored_html(api, db):
    layout = LayoutFactory()
    original = layout.html
    accepted = []
    for payload in SSTI_PAYLOADS:
        response = api.patch(f"/api/v1/layouts/{layout.id}", json={"html": f"<p>{payload}</p>"})
        body = response.get_json() or {}
        if response.status_code != 422 or body.get("error", {}).get("code") != "template_error":
            accepted.append((payload, response.status_code))
    assert accepted == []
    db.session.expire_all()
    assert db.session.get(Layout, layout.id).html == original


def test_campaign_subjects_refuse_ssti_on_create_and_edit(api, db, audience):
    draft = make_ready_campaign(audience, subject="Plain subject")
    accepted = []
    for payload in SSTI_PAYLOADS:
        subject = payload.replace("\n", " ")[:500]
        created = api.post("/api/v1/campaigns", json=campaign_payload(audience, subject=subject))
        edited = api.patch(f"/api/v1/campaigns/{draft.id}", json={"subject": subject})
        for response in (created, edited):
            details = (response.get_json() or {}).get("error", {}).get("details") or []
            if response.status_code != 422 or "subject" not in {d.get("field") for d in details}:
                accepted.append((payload, response.request.method, response.status_code))
    assert accepted == []
    db.session.expire_all()
    assert db.session.scalars(select(Campaign.subject)).all() == ["Plain subject"]


# --- upload limits ------------------------------------------------------------------------------------


def test_requests_over_the_upload_limit_are_refused_with_413_and_store_nothing(
    app, auth_client, api, db, monkeypatch
):
    """A body over MAX_CONTENT_LENGTH is refused before any view reads it: the layout and CSV upload
    forms and the CSV import API answer 413 (the error page, or the JSON error shape), keep no file in
    UPLOAD_DIR and write no row."""
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 64 * 1024)
    target = SubscriberListFactory()
    token = auth_client.csrf_token("/layouts/new")
    big_layout = b"<html><body>" + b"<p>{{ subscriber.name }}</p>" * 4000 + b"</body></html>"
    big_csv = b"email,name\n" + b"".join(b"reader%d@example.com,Reader\n" % n for n in range(4000))
    uploads = Path(app.config["UPLOAD_DIR"])
    files_before = set(uploads.glob("*")) if uploads.exists() else set()
    before = snapshot(db, ignore={"api_tokens"})

    def form(content: bytes, filename: str, **fields: str) -> dict:
        return {"file": (io.BytesIO(content), filename), "csrf_token": token, **fields}

    pages = [
        auth_client.post("/layouts/new", data=form(big_layout, "big.html", name="Big"),
                         content_type="multipart/form-data"),
        auth_client.post(f"/lists/{target.id}/import", data=form(big_csv, "big.csv"),
                         content_type="multipart/form-data"),
    ]
    for response in pages:
        assert response.status_code == 413
        assert "Too Large" in response.get_data(as_text=True)
    # The layout API sets its own request limit from LAYOUT_MAX_BYTES (test_layouts covers it).
    api_calls = [
        api.post(f"/api/v1/lists/{target.id}/import", data={"file": (io.BytesIO(big_csv), "big.csv")},
                 content_type="multipart/form-data"),
    ]
    for response in api_calls:
        assert response.status_code == 413
        assert response.get_json()["error"]["code"] == "request_entity_too_large"
    assert snapshot(db, ignore={"api_tokens"}) == before  # only its last_used_at moved
    assert (set(uploads.glob("*")) if uploads.exists() else set()) == files_before


# --- login --------------------------------------------------------------------------------------------


def test_a_throttled_address_is_refused_even_with_the_right_password(client, db, user):
    """The throttle counts attempts per address and per account, not failures: guessing right after the
    limit is still refused, so it cannot be used to confirm a guess. The account stays shut from any
    other address too; another address signing in to another account is unaffected."""
    statuses = [client.login(user.email, "wrong").status_code for _ in range(12)]
    assert statuses[-1] == 429
    assert client.login(user.email).status_code == 429
    create_user("colleague@example.com", TEST_PASSWORD)
    db.session.commit()

    def from_elsewhere(email: str) -> int:
        form = {"email": email, "password": TEST_PASSWORD, "csrf_token": client.csrf_token()}
        return client.post("/login", data=form, environ_base={"REMOTE_ADDR": "198.51.100.9"}).status_code

    assert from_elsewhere(user.email) == 429
    assert from_elsewhere("colleague@example.com") == 302


def test_password_hashes_are_salted_and_hold_no_password(db):
    first = create_user("one@example.com", TEST_PASSWORD)
    second = create_user("two@example.com", TEST_PASSWORD)
    db.session.commit()
    assert first.password_hash != second.password_hash
    for stored in (first.password_hash, second.password_hash):
        assert TEST_PASSWORD not in stored
