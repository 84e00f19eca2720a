"""The bounce mailbox poller against a real Dovecot (tests/dovecot.py): messages put in the mailbox with
IMAP APPEND are read once, recorded, and marked only after the commit; a second poll changes nothing."""

from __future__ import annotations

import threading

import pytest

from mailapp.errors import ValidationError
from mailapp.inbound.mailbox import ImapSettings, poll_lock
from mailapp.inbound.tasks import poll_bounce_mailbox
from tests.dovecot import DovecotInstance
from tests.inbound_fixtures import (
    inbound_config_fixture,
    mail_events,
    make_sending_campaign,
    sample,
    subscriber_status,
    suppression_of,
)

__all__ = ["inbound_config_fixture"]

USER, PASSWORD = "bounces", "mailbox-password"


@pytest.fixture
def dovecot(app, inbound_config, monkeypatch):
    with DovecotInstance({USER: PASSWORD}) as instance:
        for key, value in (
            ("BOUNCE_IMAP_HOST", "127.0.0.1"), ("BOUNCE_IMAP_PORT", instance.port),
            ("BOUNCE_IMAP_SECURITY", "none"), ("BOUNCE_IMAP_USER", USER),
            ("BOUNCE_IMAP_PASSWORD", PASSWORD), ("BOUNCE_IMAP_AFTER", "seen"),
        ):
            monkeypatch.setitem(app.config, key, value)
        yield instance


def test_a_dsn_and_an_arf_report_in_the_mailbox_are_recorded_once(db, dovecot, inbound_config) -> None:
    _, rows = make_sending_campaign(["reader@unknown.test", "complainer@yahoo.com"])
    bounced, complained = rows["reader@unknown.test"], rows["complainer@yahoo.com"]
    dovecot.append(USER, sample("postfix_dsn.eml", bounced.id, inbound_config))
    dovecot.append(USER, sample("yahoo_arf.eml", complained.id, inbound_config))
    dovecot.append(USER, sample("out_of_office.eml", bounced.id, inbound_config))

    first = poll_bounce_mailbox()
    assert first | {"read": 3, "recorded": 2, "repeated": 0, "dropped": 0, "left": 0} == first
    assert subscriber_status("reader@unknown.test") == "bounced"
    assert suppression_of("reader@unknown.test") == ("hard_bounce", "dsn:imap")
    assert subscriber_status("complainer@yahoo.com") == "unsubscribed"
    assert suppression_of("complainer@yahoo.com") == ("complaint", "arf:imap")
    events = mail_events()
    assert sorted(events) == sorted([
        ("hard_bounce", "reader@unknown.test", bounced.id, "dsn:imap"),
        ("complaint", "complainer@yahoo.com", complained.id, "arf:imap"),
    ])
    assert dovecot.messages(USER, criteria="UNSEEN") == []
    assert len(dovecot.messages(USER)) == 3

    second = poll_bounce_mailbox()
    assert second["read"] == 0
    assert mail_events() == events


def test_a_poll_that_died_before_marking_reads_again_and_counts_nothing_twice(
    db, dovecot, inbound_config
) -> None:
    _, rows = make_sending_campaign(["reader@unknown.test"])
    dovecot.append(USER, sample("postfix_dsn.eml", rows["reader@unknown.test"].id, inbound_config))
    assert poll_bounce_mailbox()["recorded"] == 1
    client = dovecot.connect(USER)  # as if the poll had committed and then died before the STORE
    client.select("INBOX")
    client.uid("STORE", b"1:*", "-FLAGS", r"(\Seen)")
    client.logout()
    again = poll_bounce_mailbox()
    assert (again["read"], again["recorded"], again["repeated"]) == (1, 0, 1)
    assert len(mail_events()) == 1


def test_processed_messages_can_be_moved_or_deleted(app, db, dovecot, inbound_config, monkeypatch) -> None:
    client = dovecot.connect(USER)
    client.create("Processed")
    client.logout()
    monkeypatch.setitem(app.config, "BOUNCE_IMAP_AFTER", "move:Processed")
    dovecot.append(USER, sample("delayed_dsn.eml", 1, inbound_config))
    assert poll_bounce_mailbox()["read"] == 1
    assert dovecot.messages(USER) == []
    assert len(dovecot.messages(USER, mailbox="Processed")) == 1
    monkeypatch.setitem(app.config, "BOUNCE_IMAP_AFTER", "delete")
    dovecot.append(USER, sample("delayed_dsn.eml", 1, inbound_config))
    assert poll_bounce_mailbox()["read"] == 1
    assert dovecot.messages(USER) == []


def test_a_message_over_the_size_limit_is_never_downloaded(
    app, db, dovecot, inbound_config, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "INBOUND_MAX_BYTES", 1000)
    dovecot.append(USER, b"Subject: big\r\n\r\n" + b"x" * 2000 + b"\r\n")
    result = poll_bounce_mailbox()
    assert (result["read"], result["dropped"]) == (0, 1)
    assert dovecot.messages(USER, criteria="UNSEEN") == []


def test_only_one_poll_runs_at_a_time(app, db, dovecot, inbound_config) -> None:
    dovecot.append(USER, sample("delayed_dsn.eml", 1, inbound_config))
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with poll_lock(app.config.get("REDIS_URL") or "", app.config["INSTANCE_DIR"]) as acquired:
            assert acquired
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert held.wait(10)
        assert poll_bounce_mailbox() == {"skipped": "another poll is running"}
    finally:
        release.set()
        holder.join()
    assert poll_bounce_mailbox()["read"] == 1


def test_plain_text_imap_is_refused_to_anything_but_loopback(app) -> None:
    config = dict(app.config) | {"BOUNCE_IMAP_HOST": "imap.example.com", "BOUNCE_IMAP_SECURITY": "none"}
    with pytest.raises(ValidationError, match="loopback"):
        ImapSettings.from_config(config)
    with pytest.raises(ValidationError, match="BOUNCE_IMAP_AFTER"):
        ImapSettings.from_config(config | {"BOUNCE_IMAP_SECURITY": "ssl", "BOUNCE_IMAP_AFTER": "archive"})


def test_beat_polls_the_mailbox_only_when_a_host_is_set() -> None:
    from config import TestConfig

    config = TestConfig()
    assert "poll-bounce-mailbox" not in config.CELERY["beat_schedule"]
    config.BOUNCE_IMAP_HOST = "imap.example.com"
    entry = config.CELERY["beat_schedule"]["poll-bounce-mailbox"]
    assert entry == {"task": "mailapp.inbound.tasks.poll_bounce_mailbox", "schedule": 60.0}
