"""Benchmark: a whole campaign sent to a relay that is 20 ms away (every reply held back 20 ms by
bench/delaying_proxy.py), against the same relay close by, in the same run.

With one round trip a message (PIPELINING, DATA), one connection carries at most 1 / 20 ms = 50
messages a second, whatever the machine. Two ways back: more connections per campaign (worker
threads, SEND_PARALLELISM), and CHUNKING (RFC 3030): with BDAT a connection has up to
SEND_SMTP_PIPELINE_WINDOW messages in flight. smtp-sink does not offer CHUNKING; a real Postfix smtpd
whose mail goes to the `discard` transport does, so:

- smtp-sink rows (DATA only): the default workers, then 2 x 24 threads; ratio to the fast-relay "send"
  row of the same run.
- Postfix rows: Postfix direct (the fast baseline), then the same Postfix behind the proxy with
  CHUNKING (the default) and with CHUNKING off (SEND_SMTP_CHUNKING=0), default workers; ratio to Postfix
  direct. A private instance (tests/postfix.py), which needs root; without it the rows say why.

- "smoke": 100 recipients a row, in this process (engine.send_campaign), one connection.
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
from bench.common import result_row, sink_address, sink_note, unavailable_row  # noqa: E402
from bench.delaying_proxy import DelayingProxy  # noqa: E402

DELAY_SECONDS = 0.020
SCALE_RECIPIENTS = {"smoke": 100, "full": 100_000}
LIMIT_SECONDS = {"smoke": 60.0, "full": 40.0}
SEND_ROW = {"smoke": "send: whole campaign (smoke, in-process)", "full": "send: whole campaign"}
POSTFIX_ROW = {"smoke": "send, Postfix relay direct (smoke, in-process)",
               "full": "send, Postfix relay direct (discard transport), default workers"}
TARGET = ">= 80%"  # of the fast-relay send rate
# A full row's setup: (label, worker pool, threads per worker, SEND_PARALLELISM, extra worker env).
Setup = tuple[str, str, int, int, dict[str, str]]
DEFAULT_WORKERS: Setup = ("2 worker processes, 1 connection each (the default)", "solo", 1, 4, {})
SINK_SETUPS: tuple[Setup, ...] = (
    DEFAULT_WORKERS,
    ("2 worker processes x 24 threads, 48 connections", "threads", 24, 48, {}),
)


@contextlib.contextmanager
def far_away(port: int) -> Iterator[int]:
    """The port of a proxy that holds back every reply of the server on `port` DELAY_SECONDS."""
    with DelayingProxy("127.0.0.1", port, delay=DELAY_SECONDS) as proxy:
        yield proxy.port


@contextlib.contextmanager
def discarding_postfix() -> Iterator[Any]:
    """A private Postfix (tests/postfix.py) that offers CHUNKING and sends every message it takes to the
    discard transport; None, with the reason in `why_not`, where it cannot run (not root, no Postfix:
    `bash .ci/install-mail-servers`)."""
    from tests.postfix import POSTFIX, PostfixInstance

    if os.geteuid() != 0 or not Path(POSTFIX).exists():
        yield None
        return
    # The bench's recipients are @example.com; smtpd's own limits (100 processes) are far above ours.
    with PostfixInstance({"example.com": "discard:"}) as postfix:
        yield postfix


WHY_NO_POSTFIX = "a private Postfix needs root and Debian's postfix (bash .ci/install-mail-servers)"


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


def _send_in_process(recipients: int, port: int, *, chunking: bool = True) -> float:
    """msg/s of one campaign sent by engine.send_campaign in this process, one connection to `port`."""
    from dataclasses import replace

    from mailapp.sending import engine
    from mailapp.sending.relay import Relay, RelaySettings
    from mailapp.sending.settings import SendSettings

    campaign_id = bench_send._prepare_campaign(recipients)
    relay = Relay(RelaySettings("127.0.0.1", port), f"127.0.0.1:{port}", 60)
    settings = replace(SendSettings.for_current_app(), chunking=chunking)
    started = time.perf_counter()
    engine.send_campaign(campaign_id, relay=relay, settings=settings)
    elapsed = time.perf_counter() - started
    assert bench_send._finished(campaign_id), "the campaign did not finish"
    return recipients / elapsed


def run_smoke(recipients: int) -> list[dict[str, Any]]:
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite"
    app = bench_send._make_app(database_url, os.environ.get("CELERY_BROKER_URL", "memory://"))
    notes = f"{recipients} recipients, 1 connection"
    with app.app_context(), far_away(sink_address()[1]) as sink_port:
        rate = _send_in_process(recipients, sink_port)
        rows = [result_row("send, relay 20 ms away (smoke, in-process)", rate, "msg/s",
                           baseline=SEND_ROW["smoke"], target=TARGET, notes=f"{notes} {sink_note()}".strip())]
        with discarding_postfix() as postfix:
            if postfix is None:
                return rows + [unavailable_row(POSTFIX_ROW["smoke"], "msg/s", WHY_NO_POSTFIX)]
            rows.append(result_row(POSTFIX_ROW["smoke"], _send_in_process(recipients, postfix.port), "msg/s",
                                   notes=f"{notes}, CHUNKING"))
            with far_away(postfix.port) as port:
                for label, chunking in (("CHUNKING", True), ("CHUNKING off", False)):
                    rows.append(result_row(
                        f"send, Postfix relay 20 ms away, {label} (smoke, in-process)",
                        _send_in_process(recipients, port, chunking=chunking), "msg/s",
                        baseline=POSTFIX_ROW["smoke"], target=TARGET, notes=notes,
                    ))
    return rows


def _send_with_workers(recipients: int, setup: Setup, port: int) -> tuple[int, float, list[float]]:
    """A campaign sent by two worker processes to the relay on `port` for at most LIMIT_SECONDS, then
    cancelled: (messages marked sent, seconds, peak RSS per worker)."""
    from flask import current_app

    _, pool, threads, parallelism, extra_env = setup
    current_app.config["SEND_PARALLELISM"] = parallelism  # enqueue_sending, in this process
    campaign_id = bench_send._prepare_campaign(recipients)
    env = {"SEND_PARALLELISM": str(parallelism), "MAIL_PORT": str(port), **extra_env}
    with bench_send.running_workers(pool=pool, concurrency=threads, env=env) as workers:
        try:
            elapsed, peaks = bench_send.send_and_watch(
                campaign_id, workers, limit_seconds=LIMIT_SECONDS["full"]
            )
            sent = _sent_count(campaign_id)
        finally:
            # Before the workers stop: their tasks see it at their next group of outcomes and end,
            # instead of sending on until their run time is up.
            _cancel(campaign_id)
            time.sleep(2)
    return sent, elapsed, peaks


def run_full(recipients: int) -> list[dict[str, Any]]:
    rows = []
    app = bench_send._make_app(os.environ["DATABASE_URL"], os.environ["CELERY_BROKER_URL"])
    window = app.config["SEND_SMTP_PIPELINE_WINDOW"]  # the workers read the same environment

    def row(name: str, setup: Setup, port: int, baseline: str, target: str | None, note: str) -> None:
        sent, elapsed, peaks = _send_with_workers(recipients, setup, port)
        rows.append(result_row(
            name, sent / elapsed, "msg/s", baseline=baseline, target=target, peak_rss_mb=max(peaks),
            notes=f"{sent} of {recipients} sent in {elapsed:.0f} s, PostgreSQL + Redis, {note}",
        ))

    delayed = f"every reply held back {DELAY_SECONDS * 1000:.0f} ms"
    with app.app_context():
        with far_away(sink_address()[1]) as port:
            for setup in SINK_SETUPS:
                row(f"send, relay 20 ms away: {setup[0]}", setup, port, SEND_ROW["full"], TARGET,
                    f"smtp-sink (no CHUNKING), {delayed} {sink_note()}".strip())
        with discarding_postfix() as postfix:
            if postfix is None:
                return rows + [unavailable_row(POSTFIX_ROW["full"], "msg/s", WHY_NO_POSTFIX)]
            row(POSTFIX_ROW["full"], DEFAULT_WORKERS, postfix.port, SEND_ROW["full"], None,
                "Postfix smtpd on loopback, mail to the discard transport")
            with far_away(postfix.port) as port:
                note = f"Postfix, discard transport, {delayed}"
                row(f"send, Postfix relay 20 ms away, CHUNKING (window {window}), default workers",
                    DEFAULT_WORKERS, port, POSTFIX_ROW["full"], TARGET, note)
                off = (*DEFAULT_WORKERS[:4], {"SEND_SMTP_CHUNKING": "0"})
                row("send, Postfix relay 20 ms away, CHUNKING off, default workers", off, port,
                    POSTFIX_ROW["full"], TARGET, note)
    return rows


def run(scale: str) -> list[dict[str, Any]]:
    recipients = SCALE_RECIPIENTS[scale]
    return run_full(recipients) if scale == "full" else run_smoke(recipients)


if __name__ == "__main__":
    for result in run(sys.argv[1] if len(sys.argv) > 1 else "smoke"):
        print(result)
