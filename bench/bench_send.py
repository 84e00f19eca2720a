"""Benchmark: a whole campaign, from the send call until the last delivery is marked sent, into the
harness's SMTP sink (MAILAPP_BENCH_SINK_HOST/PORT).

- "smoke": ~500 recipients, in this process (engine.send_campaign), on DATABASE_URL or a temp SQLite.
- "full": 100,000 recipients, PostgreSQL (DATABASE_URL) + Redis (CELERY_BROKER_URL), two
  `celery -A wsgi:celery_app worker --pool solo` processes; reports messages/s and each worker's peak RSS.

Run it alone: `MAILAPP_BENCH_SINK_HOST=127.0.0.1 MAILAPP_BENCH_SINK_PORT=2525 DATABASE_URL=postgresql://...
CELERY_BROKER_URL=redis://127.0.0.1:6379/4 .venv/bin/python -m bench.bench_send full`
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    BASELINE_FLASK_MAIL,
    CEILING_FOUR,
    peak_rss_mb_of,
    peak_rss_mb_self,
    result_row,
    sink_address,
    sink_note,
)

SCALE_RECIPIENTS = {"smoke": 500, "full": 100_000}
TARGET = ">= 2000"


def newsletter_layout() -> str:
    """About 20 KB of HTML: styles to inline, personalisation, ten tracked links, a loop in a table."""
    paragraph = (
        "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut "
        "labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris "
        'nisi ut aliquip ex ea commodo consequat. <a href="https://example.com/article/{n}">Read more</a></p>'
    )
    body = "".join(paragraph.format(n=n % 10) for n in range(40))
    return (
        "<html><head><style>body { font-family: sans-serif; } p { color: #333; line-height: 1.5; }"
        " h1 { color: #0a58ca; } td { padding: 4px; }</style></head><body>"
        "<h1>Hello {{ subscriber.name }}</h1>{{ message }}"
        "<table>{% for n in range(3) %}<tr><td>Item {{ n }}</td></tr>{% endfor %}</table>"
        f"{body}<p>Your city: {{{{ subscriber.attributes.city }}}}</p>"
        '<p><a href="{{ view_in_browser_url }}">View in browser</a> '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
    )


def _make_app(database_url: str, broker_url: str):  # a Flask app
    host, port = sink_address()
    os.environ.update(
        {"DATABASE_URL": database_url, "CELERY_BROKER_URL": broker_url, "MAIL_SERVER": host,
         "MAIL_PORT": str(port), "PUBLIC_URL": "https://news.example.com"}
    )
    from flask_migrate import upgrade

    from config import DevelopmentConfig
    from config import database_url as pinned_url
    from mailapp import create_app

    config = DevelopmentConfig()
    config.SECRET_KEY = "bench-secret-key"  # noqa: S105 - benchmarks only; the class has no key of its own
    config.SQLALCHEMY_DATABASE_URI = pinned_url(database_url)
    config.CELERY_BROKER_URL = broker_url
    config.MAIL_SERVER, config.MAIL_PORT = host, port
    config.PUBLIC_URL = "https://news.example.com"
    app = create_app(config)
    with app.app_context():
        upgrade()
    return app


def _prepare_campaign(recipients: int) -> int:
    """A fresh list of `recipients` subscribers and a campaign in status sending, snapshotted."""
    from sqlalchemy import text

    from mailapp.extensions import db
    from mailapp.models import Campaign, Layout, SubscriberList
    from mailapp.sending import snapshot

    tag = f"{int(time.time() * 1000)}"
    target = SubscriberList(name=f"bench {tag}")
    layout = Layout(name=f"bench {tag}", html=newsletter_layout())
    db.session.add_all([target, layout])
    db.session.flush()
    if db.engine.dialect.name == "postgresql":
        # A million rows in seconds, for the memory bench's big campaign.
        db.session.execute(
            text("INSERT INTO subscribers (email, name, attributes, status, created_at, updated_at) "
                 "SELECT 'reader' || n || '.' || :tag || '@example.com', 'Reader ' || n, "
                 "'{\"city\": \"Lisbon\"}', 'active', now(), now() FROM generate_series(0, :last) AS n"),
            {"tag": tag, "last": recipients - 1},
        )
    else:
        attributes = '{"city": "Lisbon"}'
        rows = [
            {"email": f"reader{n}.{tag}@example.com", "name": f"Reader {n}", "attributes": attributes}
            for n in range(recipients)
        ]
        for start in range(0, recipients, 10_000):
            db.session.execute(
                text("INSERT INTO subscribers (email, name, attributes, status, created_at, updated_at) "
                     "VALUES (:email, :name, :attributes, 'active', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                rows[start:start + 10_000],
            )
    db.session.execute(
        text("INSERT INTO list_members (list_id, subscriber_id) SELECT :list_id, id FROM subscribers "
             "WHERE email LIKE :pattern"),
        {"list_id": target.id, "pattern": f"%.{tag}@example.com"},
    )
    campaign = Campaign(
        name=f"bench {tag}", subject="News for {{ subscriber.name }}", from_name="Example News",
        from_email="news@example.com", layout=layout, message="This week's news.\n\nMore below.",
        status="sending", lists=[target],
    )
    db.session.add(campaign)
    db.session.flush()
    snapshot.snapshot_recipients(campaign.id)
    db.session.commit()
    return campaign.id


def _finished(campaign_id: int) -> bool:
    from mailapp.extensions import db
    from mailapp.models import Campaign

    status = db.session.get(Campaign, campaign_id, populate_existing=True).status
    db.session.rollback()
    return status == "sent"


def run_smoke(recipients: int) -> list[dict[str, Any]]:
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite"
    app = _make_app(database_url, os.environ.get("CELERY_BROKER_URL", "memory://"))
    from mailapp.sending import engine

    with app.app_context():
        campaign_id = _prepare_campaign(recipients)
        started = time.perf_counter()
        engine.send_campaign(campaign_id)
        elapsed = time.perf_counter() - started
        assert _finished(campaign_id), "the campaign did not finish"
    rate = recipients / elapsed
    return [
        result_row("send: whole campaign (smoke, in-process)", rate, "msg/s", baseline=BASELINE_FLASK_MAIL,
                   target=TARGET, notes=f"{recipients} recipients, 1 process {sink_note()}".strip(),
                   peak_rss_mb=peak_rss_mb_self()),
    ]


@contextlib.contextmanager
def running_workers(count: int = 2, *, pool: str = "solo", concurrency: int = 1,
                    env: dict[str, str] | None = None) -> Iterator[list[subprocess.Popen]]:
    """`count` real `celery worker --pool solo` processes (or another pool, `concurrency` each) on
    DATABASE_URL / CELERY_BROKER_URL, with `env` on top of this process's, up and consuming when the
    block starts; stopped after it."""
    env = dict(os.environ, SECRET_KEY="bench-secret", MAILAPP_ENV="development", **(env or {}))  # noqa: S106
    workers = [
        subprocess.Popen(  # our own worker command
            [str(ROOT / ".venv/bin/celery"), "-A", "wsgi:celery_app", "worker", "--pool", pool,
             "--concurrency", str(concurrency), "--loglevel", "WARNING", "-n", f"bench{n}@%h"],
            cwd=ROOT, env=env,
        )
        for n in range(count)
    ]
    try:
        time.sleep(8)  # both workers up and consuming
        yield workers
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)


def send_and_watch(campaign_id: int, workers: list[subprocess.Popen], *, limit_seconds: float | None = None
                   ) -> tuple[float, list[float]]:
    """Queue the campaign's batches and wait until it is sent (or `limit_seconds` passed), sampling each
    worker's peak RSS. Returns (seconds, peak RSS per worker in MB)."""
    from mailapp.sending.tasks import enqueue_sending

    peaks = [0.0] * len(workers)
    started = time.perf_counter()
    enqueue_sending(campaign_id)
    while not _finished(campaign_id):
        for n, worker in enumerate(workers):
            peaks[n] = max(peaks[n], peak_rss_mb_of(worker.pid) or 0)
        if limit_seconds is not None and time.perf_counter() - started >= limit_seconds:
            break
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    for n, worker in enumerate(workers):
        peaks[n] = max(peaks[n], peak_rss_mb_of(worker.pid) or 0)
    return elapsed, peaks


def run_full(recipients: int) -> list[dict[str, Any]]:
    app = _make_app(os.environ["DATABASE_URL"], os.environ["CELERY_BROKER_URL"])
    with app.app_context():
        campaign_id = _prepare_campaign(recipients)
        with running_workers() as workers:
            elapsed, peaks = send_and_watch(campaign_id, workers)
    rate = recipients / elapsed
    note = f"{recipients} recipients, PostgreSQL + Redis, 2 worker processes (--pool solo) {sink_note()}"
    return [
        result_row("send: whole campaign", rate, "msg/s", baseline=BASELINE_FLASK_MAIL, target=TARGET,
                   notes=note.strip(), peak_rss_mb=max(peaks)),
        result_row("send: whole campaign vs smtp-source ceiling", rate, "msg/s", baseline=CEILING_FOUR,
                   target=">= 0.35x", notes="fraction of the 4-connection ceiling"),
        result_row("send: worker peak RSS", max(peaks), "MB", target="rss < 250",
                   notes=f"per worker process: {', '.join(f'{peak:.0f}' for peak in peaks)} MB"),
    ]


def run(scale: str) -> list[dict[str, Any]]:
    recipients = SCALE_RECIPIENTS[scale]
    return run_full(recipients) if scale == "full" else run_smoke(recipients)


if __name__ == "__main__":
    for row in run(sys.argv[1] if len(sys.argv) > 1 else "smoke"):
        print(row)
