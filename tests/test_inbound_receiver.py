"""The inbound SMTP receiver, spoken to over SMTP: who it accepts at RCPT, its limits, and what each
accepted message does to subscribers, suppressions and deliveries."""

from __future__ import annotations

import smtplib
import time

import pytest
from sqlalchemy.exc import OperationalError

from mailapp.models import Delivery
from tests.inbound_fixtures import (
    FEEDBACK_ADDRESS,
    inbound_config_fixture,
    mail_events,
    make_sending_campaign,
    receiver_fixture,
    sample,
    subscriber_status,
    suppression_of,
)

__all__ = ["inbound_config_fixture", "receiver_fixture"]


def rcpt_reply(port: int, address: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail("")
        code, _ = client.rcpt(address)
        return code


def test_only_valid_verp_addresses_and_the_feedback_loop_are_accepted_at_rcpt(
    receiver, inbound_config
) -> None:
    bounce, unsubscribe = inbound_config.addresses(5).bounces, inbound_config.addresses(5).unsubscribe
    assert rcpt_reply(receiver.port, bounce) == 250
    assert rcpt_reply(receiver.port, bounce.upper()) == 250
    assert rcpt_reply(receiver.port, unsubscribe) == 250
    assert rcpt_reply(receiver.port, FEEDBACK_ADDRESS) == 250
    forged = bounce.replace(bounce[20], "a" if bounce[20] != "a" else "b", 1)
    for refused in (
        forged, "bounces+" + "a" * 29 + "@bounce.example.com", "postmaster@bounce.example.com",
        bounce.replace("bounce.example.com", "elsewhere.example.com"), "someone@example.org",
    ):
        assert rcpt_reply(receiver.port, refused) == 550, refused


def test_the_receiver_advertises_and_enforces_its_size_limit(app, receiver, inbound_config) -> None:
    with smtplib.SMTP("127.0.0.1", receiver.port, timeout=30) as client:
        client.ehlo()
        assert int(client.esmtp_features["size"]) == app.config["INBOUND_MAX_BYTES"]
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (app.config["INBOUND_MAX_BYTES"] // 1000 + 10)
    with pytest.raises(smtplib.SMTPException) as refused:
        receiver.send([inbound_config.bounce_address(1)], big)
    assert "552" in str(refused.value)


def test_too_many_recipients_are_refused(receiver, inbound_config) -> None:
    from mailapp.inbound.receiver import MAX_RECIPIENTS

    with smtplib.SMTP("127.0.0.1", receiver.port, timeout=30) as client:
        client.ehlo()
        client.mail("")
        codes = [client.rcpt(inbound_config.bounce_address(n))[0] for n in range(MAX_RECIPIENTS + 1)]
    assert codes[:MAX_RECIPIENTS] == [250] * MAX_RECIPIENTS
    assert codes[-1] == 452


def test_a_dsn_to_the_bounce_address_marks_the_subscriber_bounced_and_suppresses_it(
    db, receiver, inbound_config
) -> None:
    _, rows = make_sending_campaign(["reader@unknown.test", "other@example.com"])
    delivery = rows["reader@unknown.test"]
    raw = sample("postfix_dsn.eml", delivery.id, inbound_config)
    receiver.send([inbound_config.bounce_address(delivery.id)], raw)
    assert subscriber_status("reader@unknown.test") == "bounced"
    assert suppression_of("reader@unknown.test") == ("hard_bounce", "dsn:smtp")
    assert mail_events() == [("hard_bounce", "reader@unknown.test", delivery.id, "dsn:smtp")]
    assert subscriber_status("other@example.com") == "active"
    receiver.send([inbound_config.bounce_address(delivery.id)], raw)  # the MTA sent it again
    assert len(mail_events()) == 1


def test_an_arf_complaint_to_the_feedback_address_unsubscribes_and_suppresses(
    db, receiver, inbound_config
) -> None:
    _, rows = make_sending_campaign(["complainer@yahoo.com"])
    delivery = rows["complainer@yahoo.com"]
    receiver.send([FEEDBACK_ADDRESS], sample("yahoo_arf.eml", delivery.id, inbound_config))
    assert subscriber_status("complainer@yahoo.com") == "unsubscribed"
    assert suppression_of("complainer@yahoo.com") == ("complaint", "arf:smtp")
    assert mail_events() == [("complaint", "complainer@yahoo.com", delivery.id, "arf:smtp")]


def test_a_redacted_complaint_is_mapped_by_our_message_id(db, receiver, inbound_config) -> None:
    campaign, rows = make_sending_campaign(["hidden@aol.com"])
    delivery = rows["hidden@aol.com"]
    raw = sample("aol_arf.eml", delivery.id, inbound_config).replace(b"<44.", f"<{delivery.id}.".encode())
    receiver.send([FEEDBACK_ADDRESS], raw)
    assert subscriber_status("hidden@aol.com") == "unsubscribed"
    assert mail_events() == [("complaint", "hidden@aol.com", delivery.id, "arf:smtp")]


def test_a_message_id_from_another_domain_names_no_delivery(db, receiver, inbound_config) -> None:
    _, rows = make_sending_campaign(["hidden@aol.com"])
    delivery = rows["hidden@aol.com"]
    raw = sample("aol_arf.eml", delivery.id, inbound_config).replace(
        b"<44.0123456789abcdef@example.com>", f"<{delivery.id}.0123456789abcdef@evil.test>".encode()
    )
    receiver.send([FEEDBACK_ADDRESS], raw)
    assert mail_events() == []
    assert subscriber_status("hidden@aol.com") == "active"


def test_a_mail_to_the_mailto_unsubscribe_address_unsubscribes_like_the_one_click_post(
    db, receiver, inbound_config
) -> None:
    _, rows = make_sending_campaign(["leaving@example.com", "staying@example.com"])
    delivery = rows["leaving@example.com"]
    raw = b"From: leaving@example.com\r\nSubject: unsubscribe\r\nMessage-ID: <u1@example.com>\r\n\r\n"
    receiver.send([inbound_config.addresses(delivery.id).unsubscribe], raw, mail_from="leaving@example.com")
    assert subscriber_status("leaving@example.com") == "unsubscribed"
    assert subscriber_status("staying@example.com") == "active"
    row = db.session.get(Delivery, delivery.id)
    assert row.unsubscribed_at is not None
    db.session.rollback()
    assert mail_events() == []  # an unsubscribe, not a complaint


def test_an_out_of_office_reply_changes_nothing(db, receiver, inbound_config) -> None:
    _, rows = make_sending_campaign(["reader@example.org"])
    delivery = rows["reader@example.org"]
    raw = sample("out_of_office.eml", delivery.id, inbound_config)
    receiver.send([inbound_config.bounce_address(delivery.id)], raw)
    assert subscriber_status("reader@example.org") == "active"
    assert mail_events() == []


def test_a_hostile_message_is_accepted_and_dropped(db, receiver, inbound_config) -> None:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(10_000))
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n"
    assert receiver.send([inbound_config.bounce_address(3)], raw) == {}
    assert mail_events() == []


def test_the_database_down_answers_451_so_the_sender_retries(
    db, receiver, inbound_config, monkeypatch
) -> None:
    """The fault is injected: the test cannot stop the shared database on demand."""
    import mailapp.inbound.receiver as receiver_module

    def database_down(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(receiver_module, "process_message", database_down)
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        receiver.send([inbound_config.bounce_address(3)], b"Subject: x\r\n\r\nbody\r\n")
    assert deferred.value.smtp_code == 451


def test_a_processing_bug_is_logged_and_answered_250(
    db, receiver, inbound_config, monkeypatch, caplog
) -> None:
    import mailapp.inbound.receiver as receiver_module

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(receiver_module, "process_message", broken)
    assert receiver.send([inbound_config.bounce_address(3)], b"Subject: x\r\n\r\nbody\r\n") == {}
    assert "processing it failed" in caplog.text
    db.session.rollback()


def test_the_procfile_command_runs_the_receiver_as_a_process(app) -> None:
    """The Procfile's inbound command, stopped by SIGTERM: it refuses a stranger and takes a VERP address."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from mailapp.sending.verp import Verp
    from tests.postfix import free_port

    port = free_port()
    secret_key = "process-secret-key-0123456789abcdef"
    env = {**os.environ, "BOUNCE_DOMAIN": "bounce.example.com", "SECRET_KEY": secret_key}
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "inbound", "serve", "--port", str(port)]
    process = subprocess.Popen(
        flask, env=env, cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert rcpt_reply(port, "someone@example.org") == 550
                break
            except OSError:
                assert process.poll() is None, "the receiver exited"
                assert time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.2)
        verp = Verp("bounce.example.com", env["SECRET_KEY"])
        assert rcpt_reply(port, verp.bounce_address(12)) == 250
        assert rcpt_reply(port, Verp("bounce.example.com", "another key").bounce_address(12)) == 550
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert f"listening on 127.0.0.1:{port}" in stderr


def test_sessions_past_the_limit_are_answered_421_and_a_freed_slot_is_reused(app, inbound_config) -> None:
    import dataclasses
    import socket

    from mailapp.inbound.receiver import start_receiver
    from mailapp.inbound.services import InboundSettings
    from tests.postfix import free_port

    def greeting(sock: socket.socket) -> bytes:
        sock.settimeout(10)
        return sock.recv(512)

    settings = dataclasses.replace(InboundSettings.for_current_app(), max_connections=2)
    port = free_port()
    controller = start_receiver(app, "127.0.0.1", port, settings)
    try:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        assert all(greeting(sock).startswith(b"220") for sock in held)
        with socket.create_connection(("127.0.0.1", port)) as extra:
            assert greeting(extra).startswith(b"421 4.7.0")
            assert extra.recv(512) == b""  # and closed
        held.pop().close()
        # The slot is given back once the receiver sees the close.
        for _ in range(50):
            with socket.create_connection(("127.0.0.1", port)) as again:
                reply = greeting(again)
            if reply.startswith(b"220"):
                break
            time.sleep(0.05)
        assert reply.startswith(b"220")
        for sock in held:
            sock.close()
    finally:
        controller.stop()
