"""System mail (signup confirmations and welcomes, invites, password resets) goes the way campaigns
do: queued after the commit, sent by the real worker through the relay choice and the DKIM signer of the
sender's domain, with a log row per message on the subscriber's page and in the API."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from mailapp.domains import services as domains
from mailapp.extensions import db
from mailapp.models import SystemMessage
from tests.dkim_check import verify_dkim
from tests.test_dkim import published_for
from tests.test_signup import mail_arrives, make_form, sign_up, subscriber
from tests.test_teams import invite


def settled_rows(count: int, timeout: float = 30) -> dict[str, SystemMessage]:
    """The system messages by address, once `count` exist and the worker is done with them all. Each
    read ends its transaction: on SQLite a transaction holds the write lock the worker needs."""
    deadline = time.monotonic() + timeout
    while True:
        rows = db.session.scalars(select(SystemMessage), execution_options={"populate_existing": True}).all()
        db.session.expunge_all()
        db.session.rollback()
        if len(rows) >= count and all(row.status != "queued" for row in rows):
            return {row.email: row for row in rows}
        assert time.monotonic() < deadline, [(row.email, row.status) for row in rows]
        time.sleep(0.05)


@pytest.fixture
def signed_sender(app, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_DEFAULT_SENDER", "news@example.com")
    sending_domain = domains.create_domain("example.com")
    db.session.commit()
    return published_for(sending_domain)


def test_a_confirmation_arrives_dkim_signed_and_its_row_says_sent(
    auth_client, api, smtp_server, celery_worker, signed_sender
):
    make_form()
    assert sign_up(auth_client).status_code == 303
    (message,) = mail_arrives(smtp_server, 1)
    assert [(result.domain, result.valid) for result in verify_dkim(message.raw, signed_sender)] == [
        ("example.com", True)
    ]
    assert message.message["From"] == "news@example.com"
    row = settled_rows(1)["ana@example.com"]
    assert (row.kind, row.email, row.status, row.attempts, row.smtp_code) == (
        "confirmation", "ana@example.com", "sent", 1, 250)
    assert row.message_id == message.message["Message-ID"]
    assert row.sent_at is not None
    # The one-time link is not kept once the message is sent.
    assert row.content_sealed == ""
    found = subscriber()
    page = auth_client.get(f"/subscribers/{found.id}").get_data(as_text=True)
    assert 'data-kind="confirmation" data-status="sent"' in page
    shown = api.get(f"/api/v1/subscribers/{found.id}").get_json()["system_messages"]
    assert [(item["kind"], item["status"], item["message_id"]) for item in shown] == [
        ("confirmation", "sent", row.message_id)]


def test_a_5xx_from_the_relay_leaves_a_failed_row_with_the_reply(client, smtp_server, celery_worker):
    make_form()
    smtp_server.script_replies("ana@example.com", ["550 5.1.1 No such user here"])
    refused = sign_up(client)
    accepted = sign_up(client, email="bob@example.com")
    # The page answers the same whether or not the mail goes out.
    assert (refused.status_code, refused.headers["Location"]) == (
        accepted.status_code, accepted.headers["Location"])
    rows = settled_rows(2)
    failed = rows["ana@example.com"]
    assert (failed.status, failed.smtp_code, failed.attempts) == ("failed", 550, 1)
    assert "No such user here" in failed.error
    assert failed.content_sealed == ""
    assert rows["bob@example.com"].status == "sent"
    assert [message.to for message in smtp_server.messages] == ["bob@example.com"]


def test_an_invite_is_logged_as_system_mail_too(auth_client, smtp_server, celery_worker):
    invite(auth_client, "new@example.com")
    assert [message.to for message in mail_arrives(smtp_server, 1)] == ["new@example.com"]
    row = settled_rows(1)["new@example.com"]
    assert (row.kind, row.status, row.subscriber_id, row.content_sealed) == ("invite", "sent", None, "")


def test_a_4xx_is_tried_again_with_backoff_and_then_sent(
    app, monkeypatch, client, smtp_server, celery_worker
):
    monkeypatch.setitem(app.config, "SEND_CONNECT_RETRY_SECONDS", 0.05)
    make_form()
    smtp_server.script_replies("ana@example.com", ["451 4.3.0 Try again later"])
    sign_up(client)
    row = settled_rows(1)["ana@example.com"]
    assert (row.status, row.attempts, row.smtp_code) == ("sent", 2, 250)
    assert len(mail_arrives(smtp_server, 1)) == 1


def test_a_relay_that_keeps_deferring_fails_the_row_with_the_last_reply(
    app, monkeypatch, client, smtp_server, celery_worker
):
    monkeypatch.setitem(app.config, "SEND_CONNECT_RETRY_SECONDS", 0.05)
    monkeypatch.setitem(app.config, "SEND_CONNECT_RETRIES", 1)
    make_form()
    smtp_server.script_replies("ana@example.com", ["451 4.3.0 Try again later"] * 2)
    sign_up(client)
    row = settled_rows(1)["ana@example.com"]
    assert (row.status, row.attempts, row.smtp_code) == ("failed", 2, 451)
    assert "Try again later (tried 2 times)" in row.error
