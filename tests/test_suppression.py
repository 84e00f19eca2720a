"""The suppression core: recording bounces and complaints with the bounce policy, suppressing and
lifting addresses, the snapshot skipping suppressed addresses, and hard bounces recorded at send time
from the real SMTP server's reply."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailapp.errors import ValidationError
from mailapp.extensions import db as database
from mailapp.models import (
    Campaign,
    Delivery,
    MailEvent,
    MailEventKind,
    Subscriber,
    Suppression,
    SuppressionReason,
    utcnow,
)
from mailapp.sending import snapshot, tasks
from mailapp.sending.suppression import (
    BouncePolicy,
    IncomingEvent,
    is_suppressed,
    lift_suppression,
    record_mail_event,
    suppress_address,
)
from tests.campaign_fixtures import make_delivery
from tests.conftest import is_postgres
from tests.factories import CampaignFactory, SubscriberFactory, SubscriberListFactory
from tests.test_sending import deliveries, make_campaign, wait_for_status

POLICY = BouncePolicy(soft_bounce_limit=3, soft_bounce_window_days=30)


def hard(email: str, **fields: object) -> IncomingEvent:
    return IncomingEvent(kind=MailEventKind.HARD_BOUNCE, email=email, source="dsn", **fields)


def fresh(subscriber: Subscriber) -> Subscriber:
    database.session.expire_all()
    return database.session.get(Subscriber, subscriber.id)


def events_of(email: str) -> list[MailEvent]:
    statement = select(MailEvent).where(MailEvent.email == email).order_by(MailEvent.id)
    return list(database.session.scalars(statement))


def test_a_hard_bounce_marks_the_subscriber_bounced_and_suppresses_the_address_at_once(db) -> None:
    person = SubscriberFactory(email="gone@example.com")
    campaign = CampaignFactory(status="sending")
    delivery = make_delivery(campaign.id, person.id)
    event = hard("Gone@Example.com", delivery_id=delivery.id, status_code="5.1.1", diagnostic="User unknown")
    assert record_mail_event(event, POLICY)
    db.session.commit()
    assert fresh(person).status == "bounced"
    assert is_suppressed("GONE@example.com")
    suppression = db.session.scalar(select(Suppression))
    assert (suppression.email, suppression.reason, suppression.source, suppression.campaign_id) == (
        "gone@example.com", "hard_bounce", "dsn", campaign.id
    )
    assert "5.1.1 User unknown" in suppression.detail
    [event] = events_of("gone@example.com")
    assert (event.kind, event.subscriber_id, event.delivery_id, event.campaign_id) == (
        "hard_bounce", person.id, delivery.id, campaign.id
    )


def test_the_same_report_twice_is_recorded_once(db) -> None:
    SubscriberFactory(email="twice@example.com")
    event = hard("twice@example.com", dedupe_key="imap:<abc@mx.example>")
    assert record_mail_event(event, POLICY) is True
    assert record_mail_event(event, POLICY) is False
    db.session.commit()
    assert len(events_of("twice@example.com")) == 1


def test_reports_without_a_dedupe_key_are_each_recorded(db) -> None:
    for _ in range(2):
        assert record_mail_event(hard("nokey@example.com"), POLICY)
    db.session.commit()
    assert len(events_of("nokey@example.com")) == 2
    assert db.session.scalar(select(func.count()).select_from(Suppression)) == 1


def test_an_event_without_a_delivery_finds_its_subscriber_by_address(db) -> None:
    person = SubscriberFactory(email="found@example.com")
    record_mail_event(hard("FOUND@example.com"), POLICY)
    db.session.commit()
    assert events_of("found@example.com")[0].subscriber_id == person.id
    assert fresh(person).status == "bounced"


def test_soft_bounces_suppress_only_when_the_limit_is_reached_within_the_window(db) -> None:
    person = SubscriberFactory(email="full@example.com")
    now = utcnow()
    old = IncomingEvent(MailEventKind.SOFT_BOUNCE, "full@example.com", "dsn", status_code="4.2.2",
                        occurred_at=now - timedelta(days=40))
    record_mail_event(old, POLICY)  # outside the window: does not count
    for n in range(2):
        record_mail_event(IncomingEvent(MailEventKind.SOFT_BOUNCE, "full@example.com", "dsn",
                                        status_code="4.2.2", diagnostic=f"Mailbox full {n}"), POLICY)
    db.session.commit()
    assert fresh(person).status == "active"
    assert not is_suppressed("full@example.com")
    record_mail_event(IncomingEvent(MailEventKind.SOFT_BOUNCE, "full@example.com", "dsn",
                                    status_code="5.2.2", diagnostic="Mailbox full again"), POLICY)
    db.session.commit()
    assert fresh(person).status == "bounced"
    suppression = db.session.scalar(select(Suppression))
    assert suppression.reason == "soft_bounce"
    assert suppression.detail.startswith("3 soft bounces within 30 days; the last: 5.2.2 Mailbox full again")


def test_a_complaint_unsubscribes_the_subscriber_and_suppresses_the_address(db) -> None:
    person = SubscriberFactory(email="angry@example.com")
    campaign = CampaignFactory(status="sent")
    delivery = make_delivery(campaign.id, person.id, status="sent")
    record_mail_event(IncomingEvent(MailEventKind.COMPLAINT, "angry@example.com", "arf",
                                    delivery_id=delivery.id, dedupe_key="arf:1"), POLICY)
    db.session.commit()
    person = fresh(person)
    assert person.status == "unsubscribed"
    assert person.unsubscribed_at is not None
    assert person.unsubscribed_campaign_id == campaign.id
    assert db.session.scalar(select(Suppression.reason)) == "complaint"


def test_a_bounce_does_not_change_an_unsubscribed_or_blocklisted_subscriber(db) -> None:
    unsubscribed = SubscriberFactory(email="left@example.com", status="unsubscribed")
    blocked = SubscriberFactory(email="blocked@example.com", status="blocklisted")
    record_mail_event(hard("left@example.com"), POLICY)
    record_mail_event(IncomingEvent(MailEventKind.COMPLAINT, "blocked@example.com", "arf"), POLICY)
    db.session.commit()
    assert fresh(unsubscribed).status == "unsubscribed"
    assert fresh(blocked).status == "blocklisted"
    assert is_suppressed("left@example.com")
    assert is_suppressed("blocked@example.com")


def test_a_report_for_an_address_that_is_no_subscriber_still_suppresses_it(db) -> None:
    assert record_mail_event(hard("stranger@example.com", delivery_id=2**70), POLICY)
    db.session.commit()
    [event] = events_of("stranger@example.com")
    assert (event.subscriber_id, event.delivery_id) == (None, None)
    assert is_suppressed("stranger@example.com")


@pytest.mark.parametrize(
    "address", ["", "   ", "no-at-sign", "a" * 320 + "@example.com", "a\r\n@example.com"]
)
def test_an_unusable_address_is_refused_and_nothing_is_written(db, address: str) -> None:
    with pytest.raises(ValidationError):
        record_mail_event(hard(address), POLICY)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(MailEvent)) == 0


def test_hostile_text_is_stored_bounded_and_without_nul(db) -> None:
    record_mail_event(hard("odd@example.com", status_code="5.1.1" * 10, diagnostic="bad\x00" + "x" * 100_000,
                           dedupe_key="k" * 5000), POLICY)
    db.session.commit()
    [event] = events_of("odd@example.com")
    assert "\x00" not in event.diagnostic
    assert len(event.diagnostic) <= 4000
    assert len(event.status_code) <= 20
    assert event.dedupe_key.startswith("sha256:")
    assert record_mail_event(hard("odd@example.com", dedupe_key="k" * 5000), POLICY) is False


def test_suppressing_is_idempotent_and_lifting_keeps_the_record_and_the_status(db) -> None:
    person = SubscriberFactory(email="manual@example.com", status="bounced")
    first = suppress_address("Manual@example.com", SuppressionReason.MANUAL, "dashboard", "asked by phone")
    again = suppress_address("manual@example.com", SuppressionReason.IMPORT, "import")
    db.session.commit()
    assert first.id == again.id
    assert again.reason == "manual"  # the first reason stands
    assert lift_suppression("MANUAL@example.com", "typo fixed", "dashboard") is True
    assert lift_suppression("manual@example.com") is False
    db.session.commit()
    assert not is_suppressed("manual@example.com")
    row = db.session.scalar(select(Suppression))
    assert (row.lifted_reason, row.lifted_by) == ("typo fixed", "dashboard")
    assert row.lifted_at is not None
    assert fresh(person).status == "bounced"  # lifting resubscribes no one
    back = suppress_address("manual@example.com", SuppressionReason.COMPLAINT, "webhook:ses")
    db.session.commit()
    assert (back.id, back.reason, back.lifted_at, back.lifted_reason) == (row.id, "complaint", None, "")


def test_the_snapshot_skips_suppressed_addresses_whatever_their_list(db) -> None:
    first, second = SubscriberListFactory(), SubscriberListFactory()
    people = [SubscriberFactory(lists=[first] if n % 2 else [first, second]) for n in range(5)]
    suppress_address(people[1].email, SuppressionReason.MANUAL, "dashboard")
    suppress_address(people[3].email.upper(), SuppressionReason.HARD_BOUNCE, "smtp")
    lift_suppression(people[3].email)
    suppress_address(people[4].email, SuppressionReason.IMPORT, "import")
    campaign = CampaignFactory(lists=[first, second], status="sending")
    assert snapshot.snapshot_recipients(campaign.id) == 3
    db.session.commit()
    expected = {people[0].email, people[2].email, people[3].email}
    assert {row.email for row in deliveries(campaign.id)} == expected


@pytest.mark.e2e
def test_a_hard_bounce_from_the_relay_fails_the_delivery_and_suppresses_the_address(
    db, smtp_server, celery_worker
) -> None:
    campaign, people = make_campaign(count=4)
    gone, blocked = people[1], people[2]
    smtp_server.script_replies(
        gone.email, ["550 5.1.1 The email account that you tried to reach does not exist"]
    )
    smtp_server.script_replies(blocked.email, ["550 5.7.1 Message rejected as spam"])
    tasks.enqueue_sending(campaign.id)
    wait_for_status(campaign.id, "sent")
    rows = {row.email: row for row in deliveries(campaign.id)}
    assert (rows[gone.email].status, rows[blocked.email].status) == ("failed", "failed")
    assert sorted(message.to for message in smtp_server.messages) == sorted(
        person.email for person in people if person not in (gone, blocked)
    )
    [event] = events_of(gone.email)
    assert (event.kind, event.source, event.status_code, event.dedupe_key) == (
        "hard_bounce", "smtp", "5.1.1", f"smtp:{rows[gone.email].id}"
    )
    assert event.campaign_id == campaign.id
    assert "does not exist" in event.diagnostic
    assert fresh(gone).status == "bounced"
    assert is_suppressed(gone.email)
    # A policy refusal fails the delivery but says nothing about the address.
    assert events_of(blocked.email) == []
    assert fresh(blocked).status == "active"
    assert not is_suppressed(blocked.email)
    db.session.rollback()


@pytest.mark.e2e
def test_an_address_suppressed_after_the_snapshot_is_not_sent(db, smtp_server, celery_worker) -> None:
    campaign, people = make_campaign(count=4)
    suppress_address(people[0].email, SuppressionReason.COMPLAINT, "webhook:ses")
    database.session.execute(
        Subscriber.__table__.update().where(Subscriber.id == people[3].id).values(status="bounced")
    )
    database.session.commit()
    tasks.enqueue_sending(campaign.id)
    wait_for_status(campaign.id, "sent")
    rows = {row.email: row for row in deliveries(campaign.id)}
    assert rows[people[0].email].status == "failed"
    assert "suppressed" in rows[people[0].email].error
    assert rows[people[3].email].status == "failed"
    assert "bounced" in rows[people[3].email].error
    received = sorted(message.to for message in smtp_server.messages)
    assert received == sorted([people[1].email, people[2].email])


@pytest.mark.postgres
@pytest.mark.skipif(not is_postgres(), reason="concurrent writers need PostgreSQL")
def test_two_workers_recording_the_same_address_at_once_raise_nothing_and_count_every_soft_bounce(
    app, db
) -> None:
    person = SubscriberFactory(email="race@example.com")
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker(n: int) -> None:
        with app.app_context():
            try:
                barrier.wait()
                record_mail_event(IncomingEvent(MailEventKind.SOFT_BOUNCE, "race@example.com", "dsn",
                                                dedupe_key=f"race:{n % 3}"), POLICY)
                record_mail_event(hard("RACE@example.com", dedupe_key="race-hard"), POLICY)
                database.session.commit()
            except BaseException as error:  # the assertion below reports it
                errors.append(error)
            finally:
                database.session.remove()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    kinds = sorted(event.kind for event in events_of("race@example.com"))
    assert kinds == ["hard_bounce", "soft_bounce", "soft_bounce", "soft_bounce"]
    assert db.session.scalar(select(func.count()).select_from(Suppression)) == 1
    assert fresh(person).status == "bounced"


def sent_campaign_with(recipients: int) -> tuple[int, list[Delivery]]:
    campaign = CampaignFactory(status="sending")
    rows = [make_delivery(campaign.id, status="sent") for _ in range(recipients)]
    return campaign.id, rows


def test_complaints_over_the_rate_pause_a_sending_campaign_with_the_figures(db) -> None:
    policy = BouncePolicy(auto_pause_min_sent=10, auto_pause_complaint_rate=0.003)
    campaign_id, rows = sent_campaign_with(10)
    record_mail_event(IncomingEvent(MailEventKind.COMPLAINT, rows[0].email, "arf", delivery_id=rows[0].id),
                      policy)
    db.session.commit()
    campaign = db.session.get(Campaign, campaign_id, populate_existing=True)
    assert campaign.status == "paused"
    assert campaign.status_reason.startswith("Paused: complaint rate 10% (1 of 10 sent) passed 0.3%")


def test_a_campaign_that_has_sent_too_few_is_not_paused(db) -> None:
    policy = BouncePolicy(auto_pause_min_sent=11)
    campaign_id, rows = sent_campaign_with(10)
    for row in rows[:3]:
        record_mail_event(hard(row.email, delivery_id=row.id), policy)
    db.session.commit()
    assert db.session.get(Campaign, campaign_id, populate_existing=True).status == "sending"


def test_hard_bounces_within_the_rate_leave_the_campaign_sending(db) -> None:
    policy = BouncePolicy(auto_pause_min_sent=10, auto_pause_hard_bounce_rate=0.1)
    campaign_id, rows = sent_campaign_with(10)
    record_mail_event(hard(rows[0].email, delivery_id=rows[0].id), policy)  # 10%: not past 10%
    db.session.commit()
    assert db.session.get(Campaign, campaign_id, populate_existing=True).status == "sending"
    record_mail_event(hard(rows[1].email, delivery_id=rows[1].id), policy)
    db.session.commit()
    campaign = db.session.get(Campaign, campaign_id, populate_existing=True)
    assert campaign.status == "paused"
    assert "hard-bounce rate 20% (2 of 10 sent) passed 10%" in campaign.status_reason


@pytest.mark.e2e
def test_a_campaign_whose_relay_reports_too_many_hard_bounces_pauses_itself(
    app, db, smtp_server, celery_worker, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "AUTO_PAUSE_MIN_SENT", 3)
    campaign, people = make_campaign(count=10)
    for person in people[-3:]:
        smtp_server.script_replies(person.email, ["550 5.1.1 No such user"])
    tasks.enqueue_sending(campaign.id)
    paused = wait_for_status(campaign.id, "paused")
    assert "hard-bounce rate" in paused.status_reason
    assert "passed 5%" in paused.status_reason
    assert all(is_suppressed(person.email) for person in people[-3:])


def test_the_recipient_count_before_sending_leaves_out_suppressed_addresses(db) -> None:
    from mailapp.campaigns.services import count_recipients

    members = SubscriberListFactory()
    people = [SubscriberFactory(lists=[members]) for _ in range(4)]
    suppress_address(people[0].email, SuppressionReason.MANUAL, "dashboard")
    suppress_address(people[1].email, SuppressionReason.MANUAL, "dashboard")
    lift_suppression(people[1].email)
    db.session.commit()
    assert count_recipients([members.id]) == 3
