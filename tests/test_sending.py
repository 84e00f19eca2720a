"""The send engine end to end: a real Celery worker sending through a real SMTP server (aiosmtpd),
checked message by message and row by row."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from email.utils import parseaddr, parsedate_to_datetime

import pytest
from sqlalchemy import select, update

from mailapp.errors import ValidationError
from mailapp.extensions import db
from mailapp.models import Campaign, Delivery, Link, Subscriber, SubscriberList
from mailapp.models.campaign import campaign_lists
from mailapp.sending import engine, ledger, relay, snapshot, tasks, tokens
from mailapp.sending.message import SendError
from mailapp.sending.test_sends import send_test_messages
from tests.factories import CampaignFactory, LayoutFactory, SubscriberFactory, SubscriberListFactory

LAYOUT = (
    "<html><head><style>h1 { color: #123456; } td { padding: 3px; }</style></head><body>"
    "<h1>Hello {{ subscriber.name }}</h1>{{ message }}"
    "<p>You live in {{ subscriber.attributes.city }}.</p>"
    "<table>{% for n in range(2) %}<tr><td>Row {{ n }}</td></tr>{% endfor %}</table>"
    '<p><a href="https://example.com/offer?a=1&amp;b=2">Offer</a> <a href="mailto:help@example.com">Help</a>'
    ' <a href="#top">Top</a> <a href="{{ view_in_browser_url }}">View in browser</a></p>'
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)


# Campaign ids unique in the session: the tables are emptied between tests and ids start again, but a
# batch or retry task an earlier test queued may still reach the worker, and must not find a new
# campaign under its old id.
_campaign_ids = itertools.count(10_000)


def make_campaign(count: int = 6, **fields: object) -> tuple[Campaign, list[Subscriber]]:
    """A campaign in status sending over two overlapping lists of `count` active subscribers, plus an
    unsubscribed and a blocklisted member; the snapshot taken and committed."""
    first, second = SubscriberListFactory(), SubscriberListFactory()
    people = []
    for n in range(count):
        lists = [first, second] if n % 3 == 0 else [first] if n % 3 == 1 else [second]
        people.append(SubscriberFactory(name=f"Reader {n}", attributes={"city": f"City{n}"}, lists=lists))
    SubscriberFactory(status="unsubscribed", lists=[first, second])
    SubscriberFactory(status="blocklisted", lists=[first])
    values = {
        "subject": "News for {{ subscriber.name }}", "reply_to": "replies@example.com",
        "layout": LayoutFactory(html=LAYOUT), "lists": [first, second], "status": "sending",
        "id": next(_campaign_ids),
    }
    values.update(fields)
    campaign = CampaignFactory(**values)
    snapshot.snapshot_recipients(campaign.id)
    db.session.commit()
    # Detached and loaded: reading them later starts no transaction, which on SQLite would hold the
    # write lock (BEGIN IMMEDIATE) while the worker waits for it.
    for row in (campaign, *people):
        db.session.refresh(row)
        db.session.expunge(row)
    db.session.rollback()
    return campaign, people


def first_target_list(campaign_id: int) -> tuple[int, str]:
    """The campaign's target list with the lowest id: the one its List-Id names."""
    found = db.session.execute(
        select(SubscriberList.id, SubscriberList.name).join(campaign_lists)
        .where(campaign_lists.c.campaign_id == campaign_id).order_by(SubscriberList.id).limit(1)
    ).one()
    db.session.rollback()
    return found.id, found.name


def wait_for_status(campaign_id: int, status: str, timeout: float = 30) -> Campaign:
    """Poll the campaign's status. Each read ends its transaction at once: on SQLite every transaction
    takes the write lock (BEGIN IMMEDIATE), and a poller holding it would starve the worker."""
    deadline = time.monotonic() + timeout
    while True:
        campaign = db.session.get(Campaign, campaign_id, populate_existing=True)
        db.session.expunge(campaign)
        db.session.rollback()
        if campaign.status == status:
            return campaign
        if time.monotonic() > deadline:
            stats = ledger.campaign_stats(campaign_id)
            db.session.rollback()
            raise AssertionError(
                f"campaign is {campaign.status}, not {status}: {campaign.status_reason} {stats}"
            )
        time.sleep(0.05)


def deliveries(campaign_id: int) -> list[Delivery]:
    rows = list(
        db.session.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id).order_by(Delivery.id))
    )
    for row in rows:
        db.session.expunge(row)
    db.session.rollback()
    return rows


@pytest.fixture
def fast_retries(app, monkeypatch):
    for key, value in (
        ("SEND_RETRY_BASE_SECONDS", 0.2), ("SEND_CONNECT_RETRY_SECONDS", 0.2), ("SEND_CONNECT_RETRIES", 1),
    ):
        monkeypatch.setitem(app.config, key, value)


def test_snapshot_takes_each_active_member_once_and_is_idempotent(db) -> None:
    campaign, people = make_campaign(count=7)
    assert campaign.total_recipients == 7
    assert campaign.snapshot_taken_at is not None
    assert snapshot.snapshot_recipients(campaign.id) == 7
    db.session.commit()
    rows = deliveries(campaign.id)
    assert sorted(row.subscriber_id for row in rows) == sorted(person.id for person in people)
    assert {row.status for row in rows} == {"pending"}
    links = db.session.scalars(select(Link).where(Link.campaign_id == campaign.id)).all()
    assert [(link.position, link.url) for link in links] == [(0, "https://example.com/offer?a=1&b=2")]
    expected = {"total": 7, "pending": 7, "sending": 0, "sent": 0, "failed": 0}
    assert ledger.campaign_stats(campaign.id) == expected


def test_each_recipient_gets_one_personalised_message_with_every_header(
    db, smtp_server, celery_worker
) -> None:
    campaign, people = make_campaign(count=9)
    tasks.enqueue_sending(campaign.id)
    finished = wait_for_status(campaign.id, "sent")
    assert finished.finished_at is not None
    messages = smtp_server.wait_for(9)
    time.sleep(0.3)
    assert len(smtp_server.messages) == 9
    by_address = {message.to: message for message in messages}
    rows = {row.email: row for row in deliveries(campaign.id)}
    assert set(by_address) == {person.email for person in people} == set(rows)
    list_id, list_name = first_target_list(campaign.id)
    for person in people:
        received = by_address[person.email]
        message = received.message
        row = rows[person.email]
        assert row.status == "sent"
        assert row.attempts == 1
        assert row.sent_at is not None
        assert message.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
        assert message["Subject"] == f"News for {person.name}"
        assert parseaddr(message["From"]) == ("Example News", "news@example.com")
        assert parseaddr(message["To"]) == (person.name, person.email)
        assert message["Reply-To"] == "replies@example.com"
        assert message["Message-ID"] == row.message_id
        assert message["Message-ID"].endswith("@example.com>")
        assert abs((parsedate_to_datetime(message["Date"]) - row.sent_at).total_seconds()) < 60
        assert message["List-Unsubscribe"] == f"<{tokens.unsubscribe_url(row.id)}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Id"] == f"{list_name} <list-{list_id}.mailapp.test>"
        assert message["Feedback-ID"] == f"{campaign.id}:{list_id}:example.com:mailapp"
        assert message["Precedence"] == "bulk"
        assert max(len(line) for line in received.raw.split(b"\r\n")) <= 998
        html, text = received.html(), received.text()
        assert f"Hello {person.name}" in html
        assert f"You live in {person.attributes['city']}." in html
        assert 'style="color: #123456;"' in html  # CSS inlined
        assert html.count("<tr>") == 2  # the loop inside the table survived inlining
        assert tokens.click_url(row.id, 0) in html
        assert "https://example.com/offer" not in html
        assert 'href="mailto:help@example.com"' in html
        assert 'href="#top"' in html
        assert tokens.view_url(row.id) in html
        assert tokens.unsubscribe_url(row.id) in html
        assert tokens.open_url(row.id) in html
        assert text.startswith(f"Hello {person.name}\r\n\r\n")  # a heading, without "#" marks
        # The text part shows the link's own address; the HTML part's tracked one counts the clicks.
        assert "Offer (https://example.com/offer?a=1&b=2)" in text
        assert tokens.click_url(row.id, 0) not in text
        assert f"Unsubscribe ({tokens.unsubscribe_url(row.id)})" in text
        assert tokens.open_url(row.id) not in text


@pytest.fixture(params=["pipelining", "lockstep"])
def relay_mode(request, smtp_server) -> str:
    """The test server with and without ESMTP PIPELINING: the engine speaks both ways."""
    smtp_server.handler.pipelining = request.param == "pipelining"
    return request.param


def test_a_temporary_failure_is_retried_and_succeeds(
    db, smtp_server, celery_worker, fast_retries, relay_mode
) -> None:
    campaign, people = make_campaign(count=3)
    smtp_server.script_replies(people[1].email, ["451 4.3.0 Try again later"])
    tasks.enqueue_sending(campaign.id)
    wait_for_status(campaign.id, "sent")
    assert Counter(message.to for message in smtp_server.messages) == Counter(p.email for p in people)
    retried = next(row for row in deliveries(campaign.id) if row.email == people[1].email)
    assert retried.status == "sent"
    assert retried.attempts == 2


def test_a_permanent_failure_fails_only_that_recipient(db, smtp_server, celery_worker, relay_mode) -> None:
    campaign, people = make_campaign(count=4)
    smtp_server.script_replies(people[2].email, ["550 5.1.1 No such user here"])
    tasks.enqueue_sending(campaign.id)
    wait_for_status(campaign.id, "sent")
    rows = {row.email: row for row in deliveries(campaign.id)}
    failed = rows.pop(people[2].email)
    assert failed.status == "failed"
    assert failed.smtp_code == 550
    assert "No such user here" in failed.error
    assert {row.status for row in rows.values()} == {"sent"}
    assert sorted(message.to for message in smtp_server.messages) == sorted(rows)
    assert ledger.campaign_stats(campaign.id)["failed"] == 1


def test_too_many_failures_in_a_row_pause_the_campaign(
    db, smtp_server, celery_worker, app, monkeypatch, relay_mode
) -> None:
    monkeypatch.setitem(app.config, "SEND_MAX_CONSECUTIVE_FAILURES", 3)
    monkeypatch.setitem(app.config, "SEND_PARALLELISM", 1)
    campaign, people = make_campaign(count=6)
    for person in people:
        smtp_server.script_replies(person.email, ["554 5.7.1 Rejected"])
    tasks.enqueue_sending(campaign.id)
    paused = wait_for_status(campaign.id, "paused")
    assert "3 messages in a row failed" in paused.status_reason
    assert "554" in paused.status_reason
    stats = ledger.campaign_stats(campaign.id)
    assert stats["failed"] == 3
    assert stats["pending"] == 3
    assert stats["sending"] == 0


def test_a_server_that_is_down_pauses_the_campaign_and_resume_finishes_it(
    db, smtp_server, celery_worker, fast_retries
) -> None:
    campaign, people = make_campaign(count=5)
    smtp_server.stop()
    try:
        tasks.enqueue_sending(campaign.id)
        paused = wait_for_status(campaign.id, "paused")
        assert "Cannot connect to the SMTP server" in paused.status_reason
        assert ledger.campaign_stats(campaign.id)["pending"] == 5
    finally:
        smtp_server.start()
    db.session.execute(
        update(Campaign).where(Campaign.id == campaign.id).values(status="sending", status_reason="")
    )
    db.session.commit()
    tasks.enqueue_sending(campaign.id)
    wait_for_status(campaign.id, "sent")
    assert sorted(message.to for message in smtp_server.messages) == sorted(p.email for p in people)


def test_concurrent_and_redelivered_batches_send_each_message_once(
    db, smtp_server, celery_worker, app, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "SEND_BATCH_SIZE", 3)
    campaign, people = make_campaign(count=30)
    tasks.enqueue_sending(campaign.id)
    tasks.enqueue_sending(campaign.id)  # a duplicated start
    # and the same task run twice more, right here, as a redelivered message would be
    runners = [threading.Thread(target=_run_in_app, args=(app, campaign.id)) for _ in range(2)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    wait_for_status(campaign.id, "sent")
    time.sleep(0.5)
    counts = Counter(message.to for message in smtp_server.messages)
    assert counts == Counter(person.email for person in people)
    assert {row.status for row in deliveries(campaign.id)} == {"sent"}


def _run_in_app(app, campaign_id: int) -> None:
    with app.app_context():
        tasks.send_batch.run(campaign_id)


def test_a_crashed_workers_rows_are_sent_after_their_lease_expires(
    db, smtp_server, celery_worker
) -> None:
    campaign, people = make_campaign(count=8)
    # A worker claims five rows with a short lease and dies before sending any.
    abandoned = ledger.claim_batch(campaign.id, 5, lease_seconds=0.3)
    assert len(abandoned) == 5
    db.session.commit()
    tasks.send_batch.run(campaign.id)  # the others go out; the leased five are not touched
    assert len(smtp_server.messages) == 3
    assert ledger.campaign_stats(campaign.id)["sending"] == 5
    time.sleep(0.4)
    result = tasks.sweep_expired_leases.run()
    assert result["released"] == 5
    assert result["requeued"] == [campaign.id]
    wait_for_status(campaign.id, "sent")
    time.sleep(0.3)
    assert Counter(message.to for message in smtp_server.messages) == Counter(p.email for p in people)


def test_a_paused_campaign_sends_nothing_and_keeps_its_rows_pending(db, smtp_server) -> None:
    campaign, _ = make_campaign(count=3, status="paused")
    result = tasks.send_batch.run(campaign.id)
    assert result["stopped"] == "paused"
    assert smtp_server.messages == []
    assert ledger.campaign_stats(campaign.id)["pending"] == 3


def test_pausing_mid_batch_releases_the_unsent_rows(db, smtp_server, app, monkeypatch, relay_mode) -> None:
    monkeypatch.setitem(app.config, "SEND_MARK_GROUP", 2)
    campaign, _ = make_campaign(count=8)
    original = ledger.write_outcomes

    def pause_after_first_group(outcomes, message_id_suffix) -> None:
        original(outcomes, message_id_suffix)
        db.session.execute(update(Campaign).where(Campaign.id == campaign.id).values(status="paused"))

    monkeypatch.setattr(ledger, "write_outcomes", pause_after_first_group)
    result = engine.send_campaign(campaign.id)
    assert result.stopped == "paused"
    # Pipelined, the next message's envelope was already accepted when the group was written: that one
    # message still goes out (and is marked sent), the rest stay pending.
    sent = 2 if relay_mode == "lockstep" else 3
    stats = ledger.campaign_stats(campaign.id)
    assert stats == {"total": 8, "pending": 8 - sent, "sending": 0, "sent": sent, "failed": 0}
    assert len(smtp_server.messages) == sent


def test_a_relay_that_hangs_up_mid_message_gets_that_message_again_later(
    db, smtp_server, app, monkeypatch, relay_mode
) -> None:
    monkeypatch.setitem(app.config, "SEND_RETRY_BASE_SECONDS", 0.2)
    campaign, people = make_campaign(count=6)
    smtp_server.handler.hang_up_on.add(people[2].email.lower())
    first_run = engine.send_campaign(campaign.id)
    # The rest of the batch went out over a new connection in the same run; the message whose answer
    # never came may or may not have been taken, so it is retried later, as a counted attempt.
    rows = {row.email: row for row in deliveries(campaign.id)}
    in_doubt = rows.pop(people[2].email)
    assert (in_doubt.status, in_doubt.attempts) == ("pending", 1)
    assert "lost" in in_doubt.error
    assert {row.status for row in rows.values()} == {"sent"}
    assert first_run.retry_in is not None
    time.sleep(first_run.retry_in)
    engine.send_campaign(campaign.id)
    assert Counter(message.to for message in smtp_server.messages) == Counter(p.email for p in people)
    retried = next(row for row in deliveries(campaign.id) if row.email == people[2].email)
    assert (retried.status, retried.attempts) == ("sent", 2)
    assert wait_for_status(campaign.id, "sent").status == "sent"


def test_a_relay_that_stops_answering_times_out_instead_of_holding_the_batch(
    db, smtp_server, app, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "SEND_SMTP_TIMEOUT_SECONDS", 0.3)
    campaign, _ = make_campaign(count=3)
    smtp_server.handler.delay_seconds = 1.5  # every message: longer than the timeout
    started = time.monotonic()
    with pytest.raises(relay.SMTPUnavailable, match="keeps dropping the connection"):
        engine.send_campaign(campaign.id)
    assert time.monotonic() - started < 5
    rows = sorted(deliveries(campaign.id), key=lambda row: row.id)
    # The two messages that got no answer may or may not have been taken: retried later, counted.
    assert [(row.status, row.attempts) for row in rows] == [("pending", 1), ("pending", 1), ("pending", 0)]
    assert "timed out" in rows[0].error


def test_a_relay_that_keeps_hanging_up_stops_the_run_with_nothing_lost(
    db, smtp_server, relay_mode
) -> None:
    campaign, people = make_campaign(count=6)
    ordered = sorted(people, key=lambda person: person.id)
    smtp_server.handler.hang_up_on.update({ordered[1].email.lower(), ordered[2].email.lower()})
    with pytest.raises(relay.SMTPUnavailable, match="keeps dropping the connection"):
        engine.send_campaign(campaign.id)
    rows = {row.email: row for row in deliveries(campaign.id)}
    assert (rows[ordered[0].email].status, rows[ordered[0].email].attempts) == ("sent", 1)
    # The two messages whose answer never came: retried later, each a counted attempt.
    for person in ordered[1:3]:
        assert (rows[person.email].status, rows[person.email].attempts) == ("pending", 1)
    # The rest were never tried: back to pending for the task's retry.
    for person in ordered[3:]:
        assert (rows[person.email].status, rows[person.email].attempts) == ("pending", 0)
    assert [message.to for message in smtp_server.messages] == [ordered[0].email]


def test_a_name_with_a_line_break_fails_that_delivery_and_injects_nothing(db, smtp_server) -> None:
    campaign, people = make_campaign(count=3)
    db.session.execute(
        update(Subscriber).where(Subscriber.id == people[0].id).values(name="Eve\r\nBcc: x@evil.test")
    )
    db.session.commit()
    tasks.send_batch.run(campaign.id)
    rows = {row.email: row for row in deliveries(campaign.id)}
    assert rows[people[0].email].status == "failed"
    assert "line break" in rows[people[0].email].error
    assert sorted(message.to for message in smtp_server.messages) == sorted(p.email for p in people[1:])
    assert all(b"evil.test" not in message.raw for message in smtp_server.messages)


def test_unsubscribed_after_the_snapshot_is_not_sent(db, smtp_server) -> None:
    campaign, people = make_campaign(count=2)
    db.session.execute(update(Subscriber).where(Subscriber.id == people[0].id).values(status="unsubscribed"))
    db.session.commit()
    tasks.send_batch.run(campaign.id)
    assert [message.to for message in smtp_server.messages] == [people[1].email]
    assert wait_for_status(campaign.id, "sent", timeout=1).status == "sent"


def test_send_test_messages(db, smtp_server) -> None:
    campaign, people = make_campaign(count=1, status="draft")
    send_test_messages(campaign.id, ["qa@example.com", "Boss@Example.com"], people[0].id)
    send_test_messages(campaign.id, ["sample@example.com"], None)
    messages = smtp_server.wait_for(3)
    expected = ["boss@example.com", "qa@example.com", "sample@example.com"]
    assert sorted(message.to for message in messages) == expected
    first = next(message for message in messages if message.to == "qa@example.com")
    assert first.message["Subject"] == f"[Test] News for {people[0].name}"
    list_id, list_name = first_target_list(campaign.id)
    # A test send looks like the real message to filters, but stays out of Gmail's feedback loop.
    assert first.message["List-Id"] == f"{list_name} <list-{list_id}.mailapp.test>"
    assert first.message["Precedence"] == "bulk"
    assert "Feedback-ID" not in first.message
    sample = next(message for message in messages if message.to == "sample@example.com")
    assert sample.message["Subject"] == "[Test] News for Jane Doe"
    assert "Lisbon" in sample.html()
    assert ledger.campaign_stats(campaign.id)["total"] == 1  # the snapshot's row only
    with pytest.raises(ValidationError):
        send_test_messages(campaign.id, ["not an address"], None)
    smtp_server.script_replies("refused@example.com", ["550 5.1.1 Unknown"])
    with pytest.raises(SendError, match="550"):
        send_test_messages(campaign.id, ["refused@example.com"], None)
    smtp_server.stop()
    try:
        with pytest.raises(SendError, match="Cannot connect"):
            send_test_messages(campaign.id, ["qa@example.com"], None)
    finally:
        smtp_server.start()


def test_a_slow_relay_keeps_renewing_its_lease(db, app, smtp_server, monkeypatch) -> None:
    """A batch that takes several leases to send renews its lease as it goes, so the sweeper never hands
    its rows to another worker (which would send them twice)."""
    monkeypatch.setitem(app.config, "SEND_LEASE_SECONDS", 2)
    monkeypatch.setitem(app.config, "SEND_BATCH_SIZE", 24)
    smtp_server.handler.delay_seconds = 0.2  # 24 messages: 4.8 s, more than two leases
    campaign, people = make_campaign(count=24)
    released: list[int] = []
    done = threading.Event()

    def sweep() -> None:
        with app.app_context():
            while not done.is_set():
                released.append(ledger.release_expired_leases())
                db.session.commit()
                time.sleep(0.2)

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    try:
        result = engine.send_campaign(campaign.id)
    finally:
        done.set()
        sweeper.join()
    assert result.sent == 24
    assert sum(released) == 0
    assert Counter(message.to for message in smtp_server.messages) == Counter(p.email for p in people)


def test_a_long_send_hands_its_worker_slot_back_and_continues(db, app, smtp_server, monkeypatch) -> None:
    """After SEND_RUN_SECONDS a send run stops between batches and says so; the task queues its
    continuation, so beat tasks queued meanwhile get a worker. The next run picks up where it stopped."""
    monkeypatch.setitem(app.config, "SEND_RUN_SECONDS", 0.3)
    monkeypatch.setitem(app.config, "SEND_BATCH_SIZE", 3)
    smtp_server.handler.delay_seconds = 0.1
    campaign, people = make_campaign(count=12)
    first = engine.send_campaign(campaign.id)
    assert first.run_over
    assert 0 < first.sent < 12
    runs, result = 1, first
    while result.run_over:  # what send_batch does: queue the continuation
        result = engine.send_campaign(campaign.id)
        runs += 1
        assert runs < 20
    assert runs > 1
    assert wait_for_status(campaign.id, "sent", timeout=5).status == "sent"
    assert Counter(message.to for message in smtp_server.messages) == Counter(p.email for p in people)
