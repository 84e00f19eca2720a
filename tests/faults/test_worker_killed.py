"""A worker SIGKILLed mid-campaign and restarted, as a crashed host would be: nobody is lost, and the
only duplicates are the messages that were in flight when it died (accepted by the SMTP server but not
yet recorded as sent). Short form: 1,500 recipients, one kill; MAILAPP_FAULTS_FULL=1: 10,000, three."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import FULL, outcome, record_result
from tests.faults.servers import wait_until

pytestmark = pytest.mark.faults

RECIPIENTS = 10_000 if FULL else 1_500
KILLS = 3 if FULL else 1
CONCURRENCY = 4


def test_worker_killed_mid_campaign_loses_nobody(fault_cluster):
    cluster = fault_cluster
    campaign_id, expected = cluster.create_campaign(RECIPIENTS, "killed")
    worker, _beat = cluster.start(workers=1, beats=1, concurrency=CONCURRENCY)
    started = time.monotonic()
    cluster.send_now(campaign_id)

    kills = []
    for number in range(1, KILLS + 1):
        target = RECIPIENTS * number // (KILLS + 1)
        wait_until(lambda t=target: cluster.smtp.total() >= t, 120, f"{target} messages before kill {number}")
        worker.kill()
        killed_at = time.monotonic()
        time.sleep(0.5)  # a message the dead worker had fully written may still be landing
        received = cluster.smtp.counts()
        unsent = cluster.unsent_emails(campaign_id)
        # Leased by the dead worker: nobody sends them until the lease runs out and the sweeper acts.
        leased = cluster.unsent_emails(campaign_id, status="sending")
        # Accepted by the server, never recorded as sent: these will go out a second time.
        in_flight = sum(1 for email in unsent if received[email] > 0)
        worker.restart()
        restarted_after = time.monotonic() - killed_at
        total_at_restart = cluster.smtp.total()
        wait_until(lambda t=total_at_restart: cluster.smtp.total() > t, 150, f"sending to resume ({number})",
                   state=lambda: cluster.describe(campaign_id))
        resumed_after = time.monotonic() - killed_at
        wait_until(lambda u=leased: not (u & cluster.unsent_emails(campaign_id)),
                   150, f"the rows leased at kill {number} to be sent",
                   state=lambda: cluster.describe(campaign_id))
        kills.append({
            "kill": number, "received_before": sum(received.values()), "leased": len(leased),
            "in_flight": in_flight, "restart_s": round(restarted_after, 1),
            "resumed_s": round(resumed_after, 1), "recovered_s": round(time.monotonic() - killed_at, 1),
        })

    status = cluster.wait_finished(campaign_id, timeout=600 if FULL else 180)
    elapsed = time.monotonic() - started
    lost, duplicates = outcome(expected, cluster.smtp.counts())
    in_flight_total = sum(kill["in_flight"] for kill in kills)
    record_result("worker_killed", {
        "recipients": RECIPIENTS, "concurrency": CONCURRENCY, "kills": kills, "lost": len(lost),
        "duplicates": duplicates, "in_flight_total": in_flight_total, "seconds": round(elapsed, 1),
    })
    assert status == "sent", cluster.delivery_statuses(campaign_id)
    assert not lost, f"{len(lost)} recipients never received the campaign, e.g. {sorted(lost)[:5]}"
    assert duplicates <= in_flight_total
    assert cluster.delivery_statuses(campaign_id) == {"sent": RECIPIENTS}
