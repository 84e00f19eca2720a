"""PostgreSQL restarted mid-send: every connection the workers hold dies. The batch tasks retry on
OperationalError, pool_pre_ping replaces the dead connections, the sweeper hands back the leases of
batches that died, and the campaign completes with nobody lost. Duplicates are bounded by the sent
marks not yet written when the database went away (SEND_MARK_GROUP per worker process)."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import FULL, outcome, record_result
from tests.faults.servers import wait_until

pytestmark = pytest.mark.faults

RECIPIENTS = 10_000 if FULL else 1_500
DOWN_SECONDS = 10 if FULL else 3
CONCURRENCY = 4
MARK_GROUP = 20  # the engine's SEND_MARK_GROUP default


def test_postgres_restarted_mid_send(fault_cluster):
    cluster = fault_cluster
    campaign_id, expected = cluster.create_campaign(RECIPIENTS, "pgrestart")
    cluster.start(workers=1, beats=1, concurrency=CONCURRENCY)
    started = time.monotonic()
    cluster.send_now(campaign_id)

    wait_until(lambda: cluster.smtp.total() >= RECIPIENTS // 3, 120, "a third of the campaign to go out")
    postgres = cluster.servers.postgres
    postgres.stop(mode="fast")
    received_before = cluster.smtp.total()
    time.sleep(DOWN_SECONDS)
    postgres.start()
    up_at = time.monotonic()

    status = cluster.wait_finished(campaign_id, timeout=600 if FULL else 180)
    lost, duplicates = outcome(expected, cluster.smtp.counts())
    record_result("postgres_restarted", {
        "recipients": RECIPIENTS, "down_s": DOWN_SECONDS, "received_before": received_before,
        "lost": len(lost), "duplicates": duplicates,
        "finished_after_restart_s": round(time.monotonic() - up_at, 1),
        "seconds": round(time.monotonic() - started, 1),
    })
    assert status == "sent", cluster.delivery_statuses(campaign_id)
    assert not lost, f"{len(lost)} recipients never received the campaign, e.g. {sorted(lost)[:5]}"
    assert duplicates <= CONCURRENCY * MARK_GROUP
    assert cluster.delivery_statuses(campaign_id) == {"sent": RECIPIENTS}
