"""A relay's hourly and daily caps: counted across worker processes (Redis, or the instance folder's file
on the embedded default), never passed, and a capped campaign waits with the reason on its page."""

from __future__ import annotations

import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailapp.models import Campaign, Delivery, SmtpRelay, utcnow
from mailapp.sending import ledger, relay_choice, tasks
from mailapp.sending.caps import CappedRateLimiter, CapReached
from tests.faults.servers import REPO_ROOT, Worker, wait_until
from tests.smtp import SMTPTestServer
from tests.test_sending import make_campaign

HOURLY_CAP = 200
RECIPIENTS = 400


def _wait_for_a_whole_window() -> None:
    """A test that counts one hour's sends must not straddle two hours."""
    now = datetime.now(UTC)
    seconds_left = 3600 - (now.minute * 60 + now.second)
    if seconds_left < 90:
        time.sleep(seconds_left + 1)


@pytest.mark.parametrize("backend", ["file", "redis"])
def test_a_cap_allows_exactly_its_count_and_then_says_when_the_window_opens(app, tmp_path, backend) -> None:
    redis_url = app.config["REDIS_URL"] if backend == "redis" else ""
    if backend == "redis" and not redis_url:
        pytest.skip("needs REDIS_URL: runs in the PostgreSQL + Redis pass")
    _wait_for_a_whole_window()
    relay = f"cap-test-{os.getpid()}-{time.time_ns()}"
    limiter = CappedRateLimiter(0, relay, redis_url, tmp_path, hour_cap=5, day_cap=50, relay_name="Mailgun")
    for _ in range(5):
        limiter.wait()
    with pytest.raises(CapReached) as reached:
        limiter.wait()
    next_hour = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    assert reached.value.resumes_at == next_hour
    assert reached.value.reason == (
        f"Waiting: relay Mailgun reached its hourly cap of 5; resumes at {next_hour:%H:%M} UTC."
    )
    # A refused reservation counts nothing: another limiter of the same relay sees the same count.
    other = CappedRateLimiter(0, relay, redis_url, tmp_path, hour_cap=6, relay_name="Mailgun")
    other.wait()
    with pytest.raises(CapReached):
        other.wait()


def test_the_sweeper_leaves_a_campaign_waiting_for_its_cap_alone_until_the_window_opens(db) -> None:
    campaign, _ = make_campaign(count=2)
    assert ledger.campaigns_needing_workers() == [campaign.id]
    window_opens = utcnow() + timedelta(minutes=30)
    assert relay_choice.hold_for_cap(campaign.id, window_opens, "Waiting: test")  # queues the continuation
    assert not relay_choice.hold_for_cap(campaign.id, window_opens, "Waiting: test")  # the others do not
    db.session.commit()
    assert ledger.campaigns_needing_workers() == []
    relay_choice.end_hold(campaign.id)  # not yet: the window has not opened
    db.session.commit()
    assert db.session.get(Campaign, campaign.id).status_reason == "Waiting: test"
    db.session.rollback()


def _worker_env(app, smtp_port: int, workdir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MAILAPP_", "CELERY_"))}
    env.update(
        MAILAPP_ENV="development", MAILAPP_INSTANCE_DIR=app.instance_path, PYTHONPATH=str(REPO_ROOT),
        SECRET_KEY=app.config["SECRET_KEY"], DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        CELERY_BROKER_URL=app.config["CELERY_BROKER_URL"], REDIS_URL=app.config["REDIS_URL"] or "",
        MAIL_SERVER="127.0.0.1", MAIL_PORT=str(smtp_port), PUBLIC_URL=app.config["PUBLIC_URL"],
        DEVINBOX_ENABLED="false", SEND_BATCH_SIZE="25", SEND_PARALLELISM="4",
        SQLA_BROKER_POLL_SECONDS="0.2",
    )
    return env


def test_an_hourly_cap_holds_across_two_worker_processes_and_the_rest_waits(app, db, tmp_path) -> None:
    _wait_for_a_whole_window()
    server = SMTPTestServer()
    server.start()
    relay = SmtpRelay(name="capped relay", host="127.0.0.1", port=server.port, tls_mode="none",
                      cap_per_hour=HOURLY_CAP, max_connections=4)
    db.session.add(relay)
    db.session.commit()
    campaign, people = make_campaign(count=RECIPIENTS, relay_id=relay.id)
    workers = [Worker(index, 2, _worker_env(app, server.port, tmp_path), tmp_path) for index in range(2)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready(" ready.")
        tasks.enqueue_sending(campaign.id)

        def settled() -> Campaign | None:
            row = db.session.get(Campaign, campaign.id, populate_existing=True)
            leased = db.session.scalar(
                select(func.count()).where(Delivery.campaign_id == campaign.id, Delivery.status == "sending")
            )
            db.session.expunge(row)
            db.session.rollback()
            return row if row.waiting_until is not None and leased == 0 else None

        waiting = wait_until(settled, 120, "the campaign to wait for its relay's cap",
                             state=lambda: ledger.campaign_stats(campaign.id))
        time.sleep(2)  # anything still on its way would arrive now
        received = Counter(message.to for message in server.messages)
        stats = ledger.campaign_stats(campaign.id)
        db.session.rollback()
    finally:
        for worker in workers:
            worker.kill()
        server.stop()
    assert sum(received.values()) == HOURLY_CAP  # the cap: not one over, across both processes
    assert max(received.values()) == 1
    assert stats["sent"] == HOURLY_CAP
    assert stats["pending"] == RECIPIENTS - HOURLY_CAP
    assert waiting.status == "sending"
    next_hour = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    assert waiting.waiting_until == next_hour
    assert waiting.status_reason == (
        f"Waiting: relay capped relay reached its hourly cap of {HOURLY_CAP}; "
        f"resumes at {next_hour:%H:%M} UTC."
    )
    assert {worker.name for worker in workers if "mailapp.sending.tasks.send_batch" in worker.tail()} == {
        "worker0", "worker1"
    }


def test_once_the_window_opens_the_sweeper_picks_the_campaign_up_and_the_reason_goes(db) -> None:
    campaign, _ = make_campaign(count=2)
    assert relay_choice.hold_for_cap(campaign.id, utcnow() - timedelta(seconds=1), "Waiting: test")
    db.session.commit()
    assert ledger.campaigns_needing_workers() == [campaign.id]  # the backstop for a lost continuation
    relay_choice.end_hold(campaign.id)  # what each send task does first
    db.session.commit()
    reopened = db.session.get(Campaign, campaign.id)
    assert (reopened.status, reopened.status_reason, reopened.waiting_until) == ("sending", "", None)
    db.session.rollback()
