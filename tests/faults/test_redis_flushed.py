"""Redis restarted empty while two campaigns wait for their time and a third is sending: every queued
message (the scheduled starts' ETA messages, the batches) is gone, yet the scheduled campaigns start on
time (the beat dispatcher starts overdue schedules from the database) and the sending one completes
(its running batches carry on, the sweeper queues new ones). Nobody lost, nobody sent twice.

Celery 5.7/kombu 5.7 workers may not survive the lost connection: "Unrecoverable error: AttributeError
'NoneType' object has no attribute 'hostname'" while restoring unacked messages, then a warm shutdown
that waits for the running batches. The test restarts an exited worker as a supervisor would, and
then holds the schedules to "on time after the worker is back"; the figures say when that happened."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from mailapp.models import utcnow
from tests.faults.conftest import FULL, outcome, record_result
from tests.faults.servers import wait_until

pytestmark = pytest.mark.faults

SENDING_RECIPIENTS = 10_000 if FULL else 1_500
SCHEDULED_RECIPIENTS = 200
FLUSH_AFTER = 300  # messages of the sending campaign, well before the first schedule's time
# The dispatcher runs every 2 s; Celery reconnects to the broker within a few seconds more.
ON_TIME_SECONDS = 10


def test_redis_restarted_and_flushed(fault_cluster):
    cluster = fault_cluster
    sending_id, sending_expected = cluster.create_campaign(SENDING_RECIPIENTS, "flush-sending")
    scheduled = [cluster.create_campaign(SCHEDULED_RECIPIENTS, f"flush-scheduled{n}") for n in (1, 2)]
    # More pool processes than the sending campaign's batch tasks (SEND_PARALLELISM, 4): a batch task
    # holds its process until the campaign is done, and the dispatcher needs a free one to run at all.
    cluster.start(workers=1, beats=1, concurrency=6)

    cluster.send_now(sending_id)
    wait_until(lambda: cluster.smtp.total() >= FLUSH_AFTER, 60, "the campaign to be sending")
    # Scheduled now, so their ETA start messages sit in Redis when it is flushed a moment later.
    now = utcnow()
    send_times = [now + timedelta(seconds=6), now + timedelta(seconds=12)]
    for (campaign_id, _), send_at in zip(scheduled, send_times, strict=True):
        cluster.schedule(campaign_id, send_at)
    received_at_flush = cluster.smtp.total()
    redis_server = cluster.servers.redis
    redis_server.flushall()
    redis_server.kill()
    time.sleep(1)
    redis_server.start()
    flushed_at = time.monotonic()
    flushed_utc = utcnow()

    # Celery 5.7/kombu 5.7 can lose the worker on a broker connection loss ("Unrecoverable error:
    # AttributeError ... 'hostname'" while restoring unacked messages): restarted like a supervisor would.
    for campaign_id, _ in [*scheduled, (sending_id, None)]:
        assert cluster.wait_finished(campaign_id, timeout=600 if FULL else 120, supervised=True) == "sent"
    received = cluster.smtp.counts()
    # Late by how much after the send time, or after a worker was back if it had to be restarted.
    lateness = [
        (cluster.started_at(campaign_id) - max(send_at, cluster.restarted_at or send_at)).total_seconds()
        for (campaign_id, _), send_at in zip(scheduled, send_times, strict=True)
    ]
    results = {"sending": outcome(sending_expected, received)}
    for campaign_id, expected in scheduled:
        results[f"scheduled {campaign_id}"] = outcome(expected, received)
    record_result("redis_flushed", {
        "sending_recipients": SENDING_RECIPIENTS, "received_at_flush": received_at_flush,
        "scheduled_late_s": [round(late, 1) for late in lateness],
        "worker_back_after_flush_s": (
            round((cluster.restarted_at - flushed_utc).total_seconds(), 1) if cluster.restarted_at else None
        ),
        "lost": {name: len(lost) for name, (lost, _) in results.items()},
        "duplicates": {name: dups for name, (_, dups) in results.items()},
        "completed_after_flush_s": round(time.monotonic() - flushed_at, 1),
        "worker_restarts": cluster.restarts,
    })
    assert 0 < received_at_flush < SENDING_RECIPIENTS
    for name, (lost, duplicates) in results.items():
        assert not lost, f"{name}: {len(lost)} recipients lost, e.g. {sorted(lost)[:5]}"
        assert duplicates == 0, f"{name}: {duplicates} duplicates"
    assert all(late <= ON_TIME_SECONDS for late in lateness), (lateness, cluster.restarts)
