"""Two beat processes and three workers at once: both dispatchers race to start the same scheduled
campaigns, both sweepers run, every worker claims from the same campaigns. The atomic claims (one
start per schedule version, leases taken with SKIP LOCKED) leave every recipient exactly one message."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from mailapp.models import utcnow
from tests.faults.conftest import FULL, outcome, record_result

pytestmark = pytest.mark.faults

SENT_NOW_RECIPIENTS = 10_000 if FULL else 1_500
SCHEDULED = 3
SCHEDULED_RECIPIENTS = 1_000 if FULL else 200


def test_two_beats_three_workers_send_each_message_once(fault_cluster):
    cluster = fault_cluster
    now_id, now_expected = cluster.create_campaign(SENT_NOW_RECIPIENTS, "crowd-now")
    scheduled = [cluster.create_campaign(SCHEDULED_RECIPIENTS, f"crowd-at{n}") for n in range(SCHEDULED)]
    cluster.start(workers=3, beats=2, concurrency=2)
    started = time.monotonic()

    send_at = utcnow() + timedelta(seconds=3)
    for campaign_id, _ in scheduled:
        cluster.schedule(campaign_id, send_at)
    cluster.send_now(now_id)

    campaigns = [(now_id, now_expected), *scheduled]
    for campaign_id, _ in campaigns:
        assert cluster.wait_finished(campaign_id, timeout=600 if FULL else 120) == "sent"
    received = cluster.smtp.counts()
    results = {campaign_id: outcome(expected, received) for campaign_id, expected in campaigns}
    record_result("two_beats_three_workers", {
        "recipients": SENT_NOW_RECIPIENTS + SCHEDULED * SCHEDULED_RECIPIENTS,
        "lost": sum(len(lost) for lost, _ in results.values()),
        "duplicates": sum(dups for _, dups in results.values()),
        "seconds": round(time.monotonic() - started, 1),
    })
    for campaign_id, (lost, duplicates) in results.items():
        assert not lost, f"campaign {campaign_id}: {len(lost)} lost, e.g. {sorted(lost)[:5]}"
        assert duplicates == 0, f"campaign {campaign_id}: {duplicates} duplicates"
    assert sum(received.values()) == SENT_NOW_RECIPIENTS + SCHEDULED * SCHEDULED_RECIPIENTS
