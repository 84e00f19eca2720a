"""The global send rate with real workers (issue 5): two worker processes sharing one campaign and one
relay, with MAIL_RATE_LIMIT=50, hand the SMTP server at most 55 messages/s over any 20 s, and each
recipient gets exactly one message. The bucket is in Redis, so it holds across the workers' processes."""

from __future__ import annotations

import re

import pytest

from tests.faults.conftest import outcome, record_result

pytestmark = pytest.mark.faults

RATE = 50
WINDOW = 20.0
LIMIT = 55  # messages/s over the window: the rate, and room for the bucket's burst
# Enough for the window to fit inside the send with a few seconds to spare.
RECIPIENTS = int(RATE * (WINDOW + 4))
BATCH_DONE = re.compile(r"mailapp\.sending\.tasks\.send_batch\[[^\]]+\] succeeded")


def _most_in_any_window(arrivals: list[float], window: float) -> int:
    """The largest number of arrivals in any `window` seconds (a window opening at each arrival)."""
    ordered = sorted(arrivals)
    most, end = 0, 0
    for start, opened_at in enumerate(ordered):
        while end < len(ordered) and ordered[end] < opened_at + window:
            end += 1
        most = max(most, end - start)
    return most


def test_two_workers_sharing_a_campaign_hold_the_global_rate(fault_cluster):
    cluster = fault_cluster
    campaign_id, expected = cluster.create_campaign(RECIPIENTS, "rate")
    workers = cluster.start(workers=2, concurrency=2, MAIL_RATE_LIMIT=str(RATE))
    cluster.send_now(campaign_id)
    assert cluster.wait_finished(campaign_id, timeout=WINDOW * 4 + 60) == "sent"

    arrivals = cluster.smtp.arrivals()
    span = max(arrivals) - min(arrivals)
    most = _most_in_any_window(arrivals, WINDOW)
    lost, duplicates = outcome(expected, cluster.smtp.counts())
    batches_done = {worker.name: len(BATCH_DONE.findall(worker.log.read_text())) for worker in workers}
    record_result("rate_limit_two_workers", {
        "recipients": RECIPIENTS, "limit_per_s": RATE, "seconds": round(span, 1),
        "most_in_20s_per_s": round(most / WINDOW, 1), "lost": len(lost), "duplicates": duplicates,
    })  # fmt: skip

    assert span > WINDOW, f"the send took {span:.1f} s: too short to measure a {WINDOW:g} s window"
    assert most / WINDOW <= LIMIT, f"{most} messages in {WINDOW:g} s: {most / WINDOW:.1f}/s"
    # and the limit did not stall the send (loose: a loaded machine may not keep up)
    assert len(arrivals) / span >= RATE * 0.6
    assert all(batches_done.values()), f"both workers must take part: send batches done {batches_done}"
    assert not lost, f"{len(lost)} lost, e.g. {sorted(lost)[:5]}"
    assert duplicates == 0
