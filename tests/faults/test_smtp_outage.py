"""The SMTP relay goes away mid-campaign and comes back: the batches retry with backoff and, when the
outage outlasts their retries, the campaign pauses with the reason (the engine's design); resuming it
(as the marketer would) sends the rest. Nobody is lost; the only possible duplicates are the messages
on the wire when the relay vanished, at most one per worker process.
Short form: 1,000 recipients, a 5 s outage; MAILAPP_FAULTS_FULL=1: 10,000 recipients, 30 s."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import FULL, outcome, record_result
from tests.faults.servers import wait_until

pytestmark = pytest.mark.faults

RECIPIENTS = 10_000 if FULL else 1_000
OUTAGE_SECONDS = 30 if FULL else 5
CONCURRENCY = 4
# The short form retries after 5 s instead of the default 60 s: the same path (retry, back off, pause
# or finish), without a minute of CI spent waiting for the first retry. The full form keeps the default.
RETRY_ENV = {} if FULL else {"SEND_RETRY_BASE_SECONDS": "5"}


def test_smtp_outage_mid_campaign_loses_nobody(fault_cluster):
    cluster = fault_cluster
    campaign_id, expected = cluster.create_campaign(RECIPIENTS, "outage")
    cluster.start(workers=1, beats=1, concurrency=CONCURRENCY, **RETRY_ENV)
    started = time.monotonic()
    cluster.send_now(campaign_id)

    wait_until(lambda: cluster.smtp.total() >= RECIPIENTS // 3, 120, "a third of the campaign to go out")
    cluster.smtp.stop()
    down_at = time.monotonic()
    received_before = cluster.smtp.total()
    time.sleep(OUTAGE_SECONDS)
    statuses_during = cluster.delivery_statuses(campaign_id)
    status_during = cluster.campaign_status(campaign_id)
    cluster.smtp.start()
    up_at = time.monotonic()

    # The engine retries the relay for a while, then pauses the campaign saying why.
    status = cluster.wait_finished(campaign_id, timeout=300 if FULL else 180, also=frozenset({"paused"}))
    paused = status == "paused"
    reason = ""
    if paused:
        reason = str(cluster.scalar("SELECT status_reason FROM campaigns WHERE id = :c", c=campaign_id))
        cluster.resume(campaign_id)
        status = cluster.wait_finished(campaign_id, timeout=300 if FULL else 180)
    lost, duplicates = outcome(expected, cluster.smtp.counts())
    record_result("smtp_outage", {
        "recipients": RECIPIENTS, "outage_s": OUTAGE_SECONDS, "received_before_outage": received_before,
        "status_during_outage": status_during, "deliveries_during_outage": statuses_during,
        "paused": paused, "pause_reason": reason, "lost": len(lost), "duplicates": duplicates,
        "finished_after_outage_s": round(time.monotonic() - up_at, 1),
        "seconds": round(time.monotonic() - started, 1), "outage_started_s": round(down_at - started, 1),
    })
    assert status == "sent", cluster.delivery_statuses(campaign_id)
    assert not lost, f"{len(lost)} recipients never received the campaign, e.g. {sorted(lost)[:5]}"
    assert duplicates <= CONCURRENCY
    assert cluster.delivery_statuses(campaign_id) == {"sent": RECIPIENTS}
