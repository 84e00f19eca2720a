"""Benchmark: a whole campaign sent to a relay that is 20 ms away (every reply of the sink held back 20
ms by bench/delaying_proxy.py), against the fast-relay "send: whole campaign" row of the same run.

With one round trip a message (PIPELINING), one connection carries at most 1 / 20 ms = 50 messages a
second, whatever the machine: the rows show what the default settings give, and what more connections
per campaign (worker threads, SEND_PARALLELISM) give back.

- "smoke": 300 recipients, in this process (engine.send_campaign), through the proxy.
- "full": 100,000 recipients, PostgreSQL + Redis, two worker processes, each row for at most
  LIMIT_SECONDS (the rate is the messages marked sent over the time taken); the campaign is cancelled
  afterwards so nothing of it is left for later rows.

Run it alone: through bench.run, `--only baselines,bench_send,bench_slow_relay`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import bench_send  # noqa: E402
from bench.common import SINK_PORT_ENV, result_row, sink_address, sink_note  # noqa: E402
from bench.delaying_proxy import DelayingProxy  # noqa: E402

DELAY_SECONDS = 0.020
SCALE_RECIPIENTS = {"smoke": 100, "full": 100_000}
LIMIT_SECONDS = {"smoke": 60.0, "full": 90.0}
SEND_ROW = {"smoke": "send: whole campaign (smoke, in-process)", "full": "send: whole campaign"}
TARGET = ">= 80%"  # of the fast-relay send rate
# (label, worker pool, threads per worker, SEND_PARALLELISM): the default, then more connections.
FULL_SETUPS = (
    ("2 worker processes, 1 connection each (the default)", "solo", 1, 4),
    ("2 worker processes x 24 threads, 48 connections", "threads", 24, 48),
)


@contextlib.contextmanager
def slow_relay() -> Iterator[DelayingProxy]:
    """The proxy in front of the harness's sink, exported as the sink for the block."""
    host, port = sink_address()
    saved = os.environ[SINK_PORT_ENV]
    with DelayingProxy(host, port, delay=DELAY_SECONDS) as proxy:
        os.environ[SINK_PORT_ENV] = str(proxy.port)
        try:
            yield proxy
        finally:
            os.environ[SINK_PORT_ENV] = saved


def _sent_count(campaign_id: int) -> int:
    from sqlalchemy import func, select

    from mailapp.extensions import db
    from mailapp.models import Delivery, DeliveryStatus

    count = db.session.scalar(select(func.count()).where(
        Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.SENT
    ))
    db.session.rollback()
    return int(count or 0)


def _cancel(campaign_id: int) -> None:
    """What is left of a campaign stopped at its time limit must not be sent by later rows' workers."""
    from mailapp.extensions import db
    from mailapp.models import Campaign, CampaignStatus

    campaign = db.session.get(Campaign, campaign_id, populate_existing=True)
    if campaign.status == CampaignStatus.SENDING:
        campaign.status = CampaignStatus.CANCELLED
    db.session.commit()


def run_smoke(recipients: int) -> list[dict[str, Any]]:
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite"
    with slow_relay():
        app = bench_send._make_app(database_url, os.environ.get("CELERY_BROKER_URL", "memory://"))
        from mailapp.sending import engine

        with app.app_context():
            campaign_id = bench_send._prepare_campaign(recipients)
            started = time.perf_counter()
            engine.send_campaign(campaign_id)
            elapsed = time.perf_counter() - started
            assert bench_send._finished(campaign_id), "the campaign did not finish"
    return [result_row("send, relay 20 ms away (smoke, in-process)", recipients / elapsed, "msg/s",
                       baseline=SEND_ROW["smoke"], target=TARGET,
                       notes=f"{recipients} recipients, 1 connection {sink_note()}".strip())]


def run_full(recipients: int) -> list[dict[str, Any]]:
    rows = []
    with slow_relay():
        app = bench_send._make_app(os.environ["DATABASE_URL"], os.environ["CELERY_BROKER_URL"])
        with app.app_context():
            for label, pool, threads, parallelism in FULL_SETUPS:
                app.config["SEND_PARALLELISM"] = parallelism  # enqueue_sending, in this process
                campaign_id = bench_send._prepare_campaign(recipients)
                env = {"SEND_PARALLELISM": str(parallelism)}
                with bench_send.running_workers(pool=pool, concurrency=threads, env=env) as workers:
                    try:
                        elapsed, peaks = bench_send.send_and_watch(
                            campaign_id, workers, limit_seconds=LIMIT_SECONDS["full"]
                        )
                        sent = _sent_count(campaign_id)
                    finally:
                        # Before the workers stop: their tasks see it at their next group of outcomes
                        # and end, instead of sending on until their run time is up.
                        _cancel(campaign_id)
                        time.sleep(2)
                rows.append(result_row(
                    f"send, relay 20 ms away: {label}", sent / elapsed, "msg/s", baseline=SEND_ROW["full"],
                    target=TARGET, peak_rss_mb=max(peaks),
                    notes=f"{sent} of {recipients} sent in {elapsed:.0f} s, PostgreSQL + Redis, every reply "
                          f"of the sink held back {DELAY_SECONDS * 1000:.0f} ms {sink_note()}".strip(),
                ))
    return rows


def run(scale: str) -> list[dict[str, Any]]:
    recipients = SCALE_RECIPIENTS[scale]
    return run_full(recipients) if scale == "full" else run_smoke(recipients)


if __name__ == "__main__":
    for row in run(sys.argv[1] if len(sys.argv) > 1 else "smoke"):
        print(row)
