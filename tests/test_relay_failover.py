"""Several relays end to end, with a real Celery worker and two real SMTP servers (aiosmtpd): a relay
taken down mid-campaign hands its recipients to its backup, each recipient gets exactly one message,
the delivery log names the relay that sent each, and the relay is used again once it recovers."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from mailapp.extensions import db
from mailapp.models import SmtpRelay, utcnow
from mailapp.sending import tasks
from tests.smtp import SMTPTestServer
from tests.test_sending import deliveries, make_campaign, wait_for_status


@pytest.fixture
def two_servers() -> Iterator[tuple[SMTPTestServer, SMTPTestServer]]:
    primary, backup = SMTPTestServer(), SMTPTestServer()
    primary.start()
    backup.start()
    yield primary, backup
    primary.stop()
    backup.stop()


@pytest.fixture
def quick_failover(app, monkeypatch) -> float:
    recovery = 2.0
    for key, value in (("SEND_CONNECT_RETRIES", 1), ("SEND_CONNECT_RETRY_SECONDS", 0.2),
                       ("SEND_RETRY_BASE_SECONDS", 0.2), ("RELAY_RECOVERY_SECONDS", recovery)):
        monkeypatch.setitem(app.config, key, value)
    return recovery


def _relay_row(relay_id: int) -> SmtpRelay:
    row = db.session.scalar(select(SmtpRelay).where(SmtpRelay.id == relay_id))
    db.session.expunge(row)
    db.session.rollback()
    return row


def test_a_relay_taken_down_mid_campaign_fails_over_to_its_backup_and_back_once_it_recovers(
    db, celery_worker, two_servers, quick_failover
) -> None:
    primary_server, backup_server = two_servers
    backup = SmtpRelay(name="backup relay", host="127.0.0.1", port=backup_server.port, tls_mode="none")
    # Slow enough that the campaign is still on the primary when it goes down.
    primary = SmtpRelay(name="primary relay", host="127.0.0.1", port=primary_server.port, tls_mode="none",
                        rate_per_second=40, backup_relay=backup)
    db.session.add_all([backup, primary])
    db.session.commit()
    primary_id, backup_id = primary.id, backup.id
    campaign, people = make_campaign(count=120, relay_id=primary_id)

    tasks.enqueue_sending(campaign.id)
    primary_server.wait_for(20, timeout=30)
    primary_server.stop()
    wait_for_status(campaign.id, "sent", timeout=90)

    on_primary = Counter(message.to for message in primary_server.messages)
    on_backup = Counter(message.to for message in backup_server.messages)
    assert on_primary + on_backup == Counter(person.email for person in people)  # each exactly once
    assert on_primary
    assert on_backup
    rows = deliveries(campaign.id)
    assert {row.email: row.relay_name for row in rows} == {
        email: "primary relay" if email in on_primary else "backup relay" for email in on_primary + on_backup
    }
    assert _relay_row(primary_id).failed_over_until is not None
    assert "127.0.0.1" in _relay_row(primary_id).failover_reason

    # The primary comes back: once RELAY_RECOVERY_SECONDS have passed, the next send probes it and
    # stays there.
    primary_server.start()
    time.sleep(max(0.0, (_relay_row(primary_id).failed_over_until - utcnow()).total_seconds()) + 0.2)
    before_on_primary, before_on_backup = len(primary_server.messages), len(backup_server.messages)
    second, readers = make_campaign(count=10, relay_id=primary_id)
    tasks.enqueue_sending(second.id)
    wait_for_status(second.id, "sent", timeout=60)
    assert Counter(message.to for message in primary_server.messages[before_on_primary:]) == Counter(
        person.email for person in readers
    )
    assert len(backup_server.messages) == before_on_backup
    assert {row.relay_name for row in deliveries(second.id)} == {"primary relay"}
    assert _relay_row(primary_id).failed_over_until is None
    assert _relay_row(backup_id).failed_over_until is None


def test_without_a_backup_an_unreachable_relay_pauses_the_campaign_naming_it(
    db, celery_worker, two_servers, quick_failover
) -> None:
    primary_server, _ = two_servers
    alone = SmtpRelay(name="lonely relay", host="127.0.0.1", port=primary_server.port, tls_mode="none")
    db.session.add(alone)
    db.session.commit()
    primary_server.stop()
    campaign, _ = make_campaign(count=3, relay_id=alone.id)
    tasks.enqueue_sending(campaign.id)
    paused = wait_for_status(campaign.id, "paused", timeout=30)
    assert f"127.0.0.1:{primary_server.port}" in paused.status_reason


def test_a_relay_that_defers_everything_fails_over_to_its_backup(
    db, app, celery_worker, two_servers, quick_failover, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "RELAY_FAILOVER_DEFERRALS", 3)
    monkeypatch.setitem(app.config, "RELAY_RECOVERY_SECONDS", 3600)
    primary_server, backup_server = two_servers
    backup = SmtpRelay(name="backup relay", host="127.0.0.1", port=backup_server.port, tls_mode="none")
    primary = SmtpRelay(name="busy relay", host="127.0.0.1", port=primary_server.port, tls_mode="none",
                        backup_relay=backup)
    db.session.add_all([backup, primary])
    db.session.commit()
    primary_id = primary.id
    campaign, people = make_campaign(count=8, relay_id=primary_id)
    for person in people:
        primary_server.script_replies(person.email, ["451 4.7.1 Greylisted, try again later"] * 10)

    tasks.enqueue_sending(campaign.id)
    wait_for_status(campaign.id, "sent", timeout=60)

    assert primary_server.messages == []
    assert Counter(message.to for message in backup_server.messages) == Counter(p.email for p in people)
    assert {row.relay_name for row in deliveries(campaign.id)} == {"backup relay"}
    relay = _relay_row(primary_id)
    assert relay.failed_over_until is not None
    assert "451 4.7.1 Greylisted" in relay.failover_reason
