"""Benchmark: a send worker's memory does not grow with the campaign. Workers claim a few hundred rows
at a time and never load the recipient list whole, so peak RSS should be the same for 10,000
recipients as for 1,000,000.

- "full": two fresh `celery worker --pool solo` processes per campaign, PostgreSQL + Redis, into the
  harness's sink. The 10,000-recipient campaign is sent whole. The 1,000,000-recipient campaign is
  snapshotted whole (one delivery row per recipient) and then sent for MILLION_WINDOW_SECONDS, long
  enough for every batch size and buffer to reach its steady state, then cancelled: sending all of
  it would take ten minutes or more per run. MAILAPP_BENCH_MILLION_WHOLE=1 sends it to the end.
- "smoke": 300 recipients in this process (the row only proves the module runs).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_send import (  # noqa: E402
    _finished,
    _make_app,
    _prepare_campaign,
    running_workers,
    send_and_watch,
)
from bench.common import peak_rss_mb_self, result_row, sink_note  # noqa: E402

RUNS = 1  # a million-row campaign per run; the RSS figure does not need a median
MILLION_WINDOW_SECONDS = 90
TARGET = "rss < 250"


def _cancel(campaign_id: int) -> None:
    from sqlalchemy import update

    from mailapp.extensions import db
    from mailapp.models import Campaign

    db.session.execute(update(Campaign).where(Campaign.id == campaign_id).values(status="cancelled"))
    db.session.commit()


def _sent(campaign_id: int) -> int:
    from mailapp.sending import ledger

    return ledger.campaign_stats(campaign_id)["sent"]


def _row(recipients: int, peaks: list[float], sent: int, elapsed: float, *, whole: bool) -> dict[str, Any]:
    how = "sent whole" if whole else f"snapshotted whole, sent for the first {elapsed:.0f} s, then cancelled"
    return result_row(
        f"send: worker peak RSS, {recipients:,}-recipient campaign", max(peaks), "MB", target=TARGET,
        notes=(f"{how}: {sent:,} messages at {sent / elapsed:.0f} msg/s; per worker process: "
               f"{', '.join(f'{peak:.0f}' for peak in peaks)} MB {sink_note()}").strip(),
    )


def run_full() -> list[dict[str, Any]]:
    app = _make_app(os.environ["DATABASE_URL"], os.environ["CELERY_BROKER_URL"])
    whole_million = os.environ.get("MAILAPP_BENCH_MILLION_WHOLE") == "1"
    rows = []
    with app.app_context():
        for recipients in (10_000, 1_000_000):
            campaign_id = _prepare_campaign(recipients)
            limit = None if recipients < 1_000_000 or whole_million else MILLION_WINDOW_SECONDS
            with running_workers() as workers:
                elapsed, peaks = send_and_watch(campaign_id, workers, limit_seconds=limit)
                finished = _finished(campaign_id)
                if not finished:
                    _cancel(campaign_id)
                    time.sleep(1)  # the batches see the cancel at their next group write
            rows.append(_row(recipients, peaks, _sent(campaign_id), elapsed, whole=finished))
    return rows


def run_smoke() -> list[dict[str, Any]]:
    import tempfile

    from mailapp.sending import engine

    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite"
    app = _make_app(database_url, os.environ.get("CELERY_BROKER_URL", "memory://"))
    with app.app_context():
        campaign_id = _prepare_campaign(300)
        started = time.perf_counter()
        engine.send_campaign(campaign_id)
        elapsed = time.perf_counter() - started
        assert _finished(campaign_id), "the campaign did not finish"
        return [_row(300, [peak_rss_mb_self()], _sent(campaign_id), elapsed, whole=True)]


def run(scale: str) -> list[dict[str, Any]]:
    return run_full() if scale == "full" else run_smoke()


if __name__ == "__main__":
    for row in run(sys.argv[1] if len(sys.argv) > 1 else "smoke"):
        print(row)
