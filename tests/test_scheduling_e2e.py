"""Scheduling end to end, with the real Celery worker and the real SMTP server: a campaign starts at its
time (not before), reschedules and cancels leave stale start messages harmless, duplicate starts send
each message once, and the dispatcher covers lost messages and starts that died half-way."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from mailapp.campaigns import lifecycle, tasks
from mailapp.models import Campaign
from mailapp.models.base import utcnow
from tests.campaign_fixtures import Audience, make_audience, make_ready_campaign
from tests.conftest import is_postgres

pytestmark = pytest.mark.e2e

# Issue 5: within 2 s of its time on Redis + PostgreSQL, 5 s on the embedded default.
START_LATENCY_LIMIT = 2.0 if is_postgres() else 5.0
LEAD = 3.0  # seconds ahead a test schedules: long enough to look before, short enough for CI


@pytest.fixture
def ready(db, celery_worker, smtp_server) -> Audience:
    return make_audience(4)


def _session_done(db) -> None:
    # The test thread must hold no transaction while the worker writes (SQLite takes its write lock at
    # BEGIN), and must re-read what the worker committed.
    db.session.rollback()
    db.session.expire_all()


def _campaign_row(db, campaign_id: int) -> Campaign:
    _session_done(db)
    campaign = db.session.scalar(select(Campaign).where(Campaign.id == campaign_id))
    db.session.expunge(campaign)
    _session_done(db)
    return campaign


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _wait_for_status(db, campaign_id: int, status: str, timeout: float = 15) -> Campaign:
    _wait_for(lambda: _campaign_row(db, campaign_id).status == status, timeout, f"status {status}")
    return _campaign_row(db, campaign_id)


def _schedule(db, campaign_id: int, delay: float) -> Campaign:
    campaign = lifecycle.schedule_campaign(campaign_id, utcnow() + timedelta(seconds=delay))
    db.session.commit()
    lifecycle.queue_start(
        campaign.id, campaign.schedule_version, campaign.send_at, campaign.start_queued_version
    )
    row = _campaign_row(db, campaign_id)
    return row


def _received(smtp_server) -> Counter:
    return Counter(message.to for message in smtp_server.messages)


def _assert_each_recipient_once(smtp_server, audience: Audience) -> None:
    expected = {subscriber.email for subscriber in audience.active}
    assert _received(smtp_server) == Counter(expected)


def test_scheduled_campaign_is_sent_at_its_time_not_before(db, ready, smtp_server, api):
    campaign = make_ready_campaign(ready)
    send_at = (utcnow() + timedelta(seconds=LEAD)).isoformat()
    response = api.post(f"/api/v1/campaigns/{campaign.id}/schedule", json={"send_at": send_at})
    assert response.status_code == 200, response.get_data(as_text=True)
    _session_done(db)
    time.sleep(LEAD - 1.0)
    assert smtp_server.messages == []
    assert _campaign_row(db, campaign.id).status == "scheduled"

    assert smtp_server.wait_for(len(ready.active), timeout=LEAD + 10)
    finished = _wait_for_status(db, campaign.id, "sent")
    _assert_each_recipient_once(smtp_server, ready)
    latency = (finished.started_at - finished.send_at).total_seconds()
    assert 0 <= latency < START_LATENCY_LIMIT, f"started {latency:.2f}s after its time"
    assert finished.total_recipients == len(ready.active)


def test_rescheduled_campaign_ignores_its_old_start_message(db, ready, smtp_server):
    campaign = make_ready_campaign(ready)
    first = _schedule(db, campaign.id, 1.0)
    moved = _schedule(db, campaign.id, LEAD)
    assert moved.schedule_version == first.schedule_version + 1
    time.sleep(LEAD - 0.8)  # the first message's time has passed: it must have done nothing
    assert smtp_server.messages == []
    assert _campaign_row(db, campaign.id).status == "scheduled"
    assert smtp_server.wait_for(len(ready.active), timeout=10)
    finished = _wait_for_status(db, campaign.id, "sent")
    assert finished.started_at >= moved.send_at
    _assert_each_recipient_once(smtp_server, ready)


def test_cancelled_campaign_is_never_sent(db, ready, smtp_server):
    campaign = make_ready_campaign(ready)
    _schedule(db, campaign.id, 1.0)
    lifecycle.cancel_campaign(campaign.id)
    db.session.commit()
    time.sleep(2.5)
    tasks.dispatch_due_campaigns()
    time.sleep(0.5)
    row = _campaign_row(db, campaign.id)
    assert row.status == "cancelled"
    assert row.started_at is None
    assert smtp_server.messages == []


def test_starting_twice_sends_each_message_once(db, ready, smtp_server):
    campaign = make_ready_campaign(ready)
    scheduled = _schedule(db, campaign.id, 0)
    # The ETA message from _schedule, two more duplicates through the broker, and one inline.
    tasks.start_campaign.delay(campaign.id, scheduled.schedule_version)
    tasks.start_campaign.delay(campaign.id, scheduled.schedule_version)
    lifecycle.start_scheduled(campaign.id, scheduled.schedule_version)
    _session_done(db)
    assert smtp_server.wait_for(len(ready.active), timeout=15)
    _wait_for_status(db, campaign.id, "sent")
    time.sleep(1.5)  # any duplicate would have arrived by now
    _assert_each_recipient_once(smtp_server, ready)


def test_send_now_through_the_api(db, ready, smtp_server, api):
    campaign = make_ready_campaign(ready)
    response = api.post(f"/api/v1/campaigns/{campaign.id}/send")
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "sending"
    assert body["started_at"]
    _session_done(db)
    assert smtp_server.wait_for(len(ready.active), timeout=15)
    finished = _wait_for_status(db, campaign.id, "sent")
    assert finished.total_recipients == len(ready.active)
    _assert_each_recipient_once(smtp_server, ready)
    again = api.post(f"/api/v1/campaigns/{campaign.id}/send")
    assert again.status_code == 409
    assert "it is sent" in again.get_json()["error"]["message"]
    _session_done(db)


def test_send_now_from_the_dashboard(db, ready, smtp_server, auth_client):
    campaign = make_ready_campaign(ready)
    response = auth_client.post_form(f"/campaigns/{campaign.id}/send")
    assert response.status_code == 302
    _session_done(db)
    assert smtp_server.wait_for(len(ready.active), timeout=15)
    _wait_for_status(db, campaign.id, "sent")
    page = auth_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    _session_done(db)
    for subscriber in ready.active:
        assert subscriber.email in page
    _assert_each_recipient_once(smtp_server, ready)


def test_dispatcher_starts_a_campaign_whose_start_message_was_lost(db, ready, smtp_server):
    campaign = make_ready_campaign(ready)
    # Scheduled, but no message queued (as after a broker restart) and already due.
    lifecycle.schedule_campaign(campaign.id, utcnow())
    db.session.commit()
    result = tasks.dispatch_due_campaigns()
    assert result["started"] == [campaign.id]
    _session_done(db)
    assert smtp_server.wait_for(len(ready.active), timeout=15)
    _wait_for_status(db, campaign.id, "sent")
    _assert_each_recipient_once(smtp_server, ready)


def test_dispatcher_requeues_a_lost_start_message_so_the_campaign_starts_on_time(db, ready, smtp_server, app):
    assert app.config["SCHEDULE_LOOKAHEAD_SECONDS"] > LEAD
    campaign = make_ready_campaign(ready)
    # Queued (within the horizon) but its message lost: nothing in the broker.
    send_at = lifecycle.schedule_campaign(campaign.id, utcnow() + timedelta(seconds=LEAD)).send_at
    db.session.commit()
    result = tasks.dispatch_due_campaigns()
    assert result["requeued"] == [campaign.id]
    assert result["started"] == []
    _session_done(db)
    assert smtp_server.wait_for(len(ready.active), timeout=LEAD + 10)
    finished = _wait_for_status(db, campaign.id, "sent")
    latency = (finished.started_at - send_at).total_seconds()
    # On time, from the requeued message (no beat runs here, and this dispatcher call found it early).
    assert 0 <= latency < START_LATENCY_LIMIT, f"started {latency:.2f}s after its time"
    _assert_each_recipient_once(smtp_server, ready)


def test_dispatcher_finishes_a_start_whose_worker_died_before_the_snapshot(db, ready, smtp_server):
    campaign = make_ready_campaign(ready, status="sending", started_at=utcnow() - timedelta(minutes=2))
    result = tasks.dispatch_due_campaigns()
    assert result["recovered"] == [campaign.id]
    _session_done(db)
    assert smtp_server.wait_for(len(ready.active), timeout=15)
    finished = _wait_for_status(db, campaign.id, "sent")
    assert finished.total_recipients == len(ready.active)
    _assert_each_recipient_once(smtp_server, ready)


def test_resume_sends_what_is_left(db, ready, smtp_server, api):
    campaign = make_ready_campaign(ready, status="sending", started_at=utcnow())
    from mailapp.sending.snapshot import snapshot_recipients

    snapshot_recipients(campaign.id)
    lifecycle.pause_on_request(campaign.id)
    db.session.commit()
    time.sleep(0.5)
    assert smtp_server.messages == []
    response = api.post(f"/api/v1/campaigns/{campaign.id}/resume")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["status"] == "sending"
    _session_done(db)
    assert smtp_server.wait_for(len(ready.active), timeout=15)
    _wait_for_status(db, campaign.id, "sent")
    _assert_each_recipient_once(smtp_server, ready)


def test_retry_failed_sends_the_failed_ones_again(db, ready, smtp_server, api):
    refused = ready.active[0].email
    # A policy refusal: the address stays sendable (a 5.1.1 would suppress it; see test_suppression.py).
    smtp_server.script_replies(refused, ["554 5.7.1 message refused by policy"])
    campaign = make_ready_campaign(ready)
    assert api.post(f"/api/v1/campaigns/{campaign.id}/send").status_code == 202
    _session_done(db)
    assert smtp_server.wait_for(len(ready.active) - 1, timeout=15)
    _wait_for_status(db, campaign.id, "sent")
    failed = api.get(f"/api/v1/campaigns/{campaign.id}/deliveries?status=failed").get_json()["items"]
    assert [item["email"] for item in failed] == [refused]
    assert "554" in failed[0]["error"]
    response = api.post(f"/api/v1/campaigns/{campaign.id}/retry-failed")
    assert response.status_code == 200, response.get_data(as_text=True)
    _session_done(db)
    assert smtp_server.wait_for(len(ready.active), timeout=15)
    _wait_for_status(db, campaign.id, "sent")
    _assert_each_recipient_once(smtp_server, ready)
    stats = api.get(f"/api/v1/campaigns/{campaign.id}").get_json()["stats"]
    _session_done(db)
    assert stats == {"total": len(ready.active), "pending": 0, "sent": len(ready.active), "failed": 0}


def test_test_send_renders_for_the_chosen_subscriber(db, ready, smtp_server, api):
    campaign = make_ready_campaign(ready)
    chosen = ready.active[1]
    response = api.post(
        f"/api/v1/campaigns/{campaign.id}/test",
        json={"emails": ["boss@example.com", "me@example.com"], "subscriber_id": chosen.id},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    _session_done(db)
    assert smtp_server.wait_for(2, timeout=5)
    assert sorted(message.to for message in smtp_server.messages) == ["boss@example.com", "me@example.com"]
    for message in smtp_server.messages:
        assert chosen.name in message.message["Subject"]
        assert chosen.name in message.html()
    assert _campaign_row(db, campaign.id).status == "draft", "a test send changes nothing"
