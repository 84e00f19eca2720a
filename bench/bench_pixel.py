"""Open pixel throughput under gunicorn, measured with wrk against a bare GIF route in the same run.

    .venv/bin/python -m bench.run --only bench_pixel --scale full

"full": PostgreSQL (its own database, `<bench database>_pixel`, created when missing) and Redis
(MAILAPP_BENCH_REDIS_URL, default db 6), so the pixel verifies the token and appends to the Redis
stream; 1,000 deliveries, wrk 2 threads and 64 connections, 5 rounds of 2 s per route.
"smoke": a throwaway SQLite file with no Redis (each open written directly), 1 round of 2 s per route.

The routes take turns, round after round, and each figure is the median of its rounds: the machine's
other load shifts from second to second, and this way it falls on every route alike.

gunicorn runs with the web process's own settings (gunicorn.conf.py, the Procfile's): gthread workers
with keep-alive. WEB_CONCURRENCY and WEB_THREADS change them here as they do in production.
It serves bench/pixel_wsgi.py: the app as wsgi:app builds it (the pixel's fast path in front of Flask),
plus a bare GIF route, the baseline (the same image and headers from a bare WSGI callable, recording
nothing), and for context an empty Flask view answering the same GIF. Each worker counts the pixel
requests it answered and writes the count when it exits; after gunicorn stops, the open buffer is
flushed and the bench checks that the database holds exactly one open event per answered pixel
request: no open lost, none counted twice.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_DATABASE_ENV,
    BENCH_REDIS_ENV,
    DEFAULT_BENCH_DATABASE,
    DEFAULT_BENCH_REDIS,
    ROOT,
    Row,
    bench_app,
    find_tool,
    free_port,
    result_row,
    unavailable_row,
    wait_for_port,
)

RUNS = 3
CAMPAIGN_NAME = "bench: pixel"
READER_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
PIXEL_ROW = "pixel: opens recorded"
BARE_ROW = "pixel baseline: bare GIF route"
FLASK_ROW = "pixel context: empty Flask GIF view"


@dataclass(frozen=True)
class Scale:
    deliveries: int
    rounds: int
    seconds: int
    connections: int
    wrk_threads: int
    postgres_and_redis: bool


SCALES = {
    "smoke": Scale(50, 1, 2, 8, 1, postgres_and_redis=False),
    "full": Scale(1000, 5, 2, 64, 2, postgres_and_redis=True),
}


def web_server_settings() -> dict[str, Any]:
    """The web process's gunicorn settings as they resolve in this environment."""
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def log(message: str) -> None:
    print(f"[bench_pixel {time.strftime('%H:%M:%S')}] {message}", flush=True)


def median_result(results: list[WrkResult]) -> WrkResult:
    """The median rate and p99 of several rounds, with their requests and errors summed."""
    p99s = [result.p99_ms for result in results if result.p99_ms is not None]
    return WrkResult(
        requests=sum(result.requests for result in results),
        rate=statistics.median(result.rate for result in results),
        p99_ms=statistics.median(p99s) if p99s else None,
        non_2xx=sum(result.non_2xx for result in results),
        socket_errors="; ".join(result.socket_errors for result in results if result.socket_errors),
    )


@dataclass
class WrkResult:
    requests: int
    rate: float
    p99_ms: float | None
    non_2xx: int
    socket_errors: str

    @classmethod
    def parse(cls, output: str) -> WrkResult:
        requests = re.search(r"(\d+) requests in", output)
        rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
        p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", output)
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        errors = re.search(r"Socket errors: (.+)", output)
        if not requests or not rate:
            raise RuntimeError(f"could not read wrk's output:\n{output}")
        p99_ms = None
        if p99:
            p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
        return cls(
            requests=int(requests.group(1)),
            rate=float(rate.group(1)),
            p99_ms=p99_ms,
            non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
            socket_errors=errors.group(1).strip() if errors else "",
        )


def _databases(scale: Scale, workdir: Path) -> tuple[str, str]:
    if not scale.postgres_and_redis:
        return f"sqlite:///{workdir / 'pixel.sqlite'}", ""
    base = os.environ.get(BENCH_DATABASE_ENV) or DEFAULT_BENCH_DATABASE
    return base.rsplit("/", 1)[0] + "/" + base.rsplit("/", 1)[1].split("?")[0] + "_pixel", (
        os.environ.get(BENCH_REDIS_ENV) or DEFAULT_BENCH_REDIS
    )


def _create_postgres_database(url: str) -> None:
    from sqlalchemy import create_engine, text

    from config import database_url

    server, name = url.rsplit("/", 1)
    engine = create_engine(database_url(f"{server}/postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def prepare(app: Any, deliveries: int) -> list[int]:
    """A fresh bench campaign with `deliveries` sent deliveries; returns their ids."""
    from datetime import UTC, datetime, timedelta

    from flask_migrate import upgrade
    from sqlalchemy import delete, inspect, select

    from mailapp.extensions import db
    from mailapp.models import Campaign, Delivery
    from mailapp.tracking import buffer

    with app.app_context():
        if not inspect(db.engine).has_table("alembic_version"):
            upgrade()
        db.session.remove()
        client = buffer.redis_client()
        if client is not None:
            client.delete(buffer.STREAM_KEY, buffer.FLUSH_LOCK_KEY)
        db.session.execute(delete(Campaign).where(Campaign.name == CAMPAIGN_NAME))
        sent_at = datetime.now(UTC) - timedelta(hours=1)
        campaign = Campaign(
            name=CAMPAIGN_NAME,
            subject="Bench",
            from_email="bench@example.com",
            status="sent",
            started_at=sent_at,
        )
        db.session.add(campaign)
        db.session.flush()
        db.session.execute(
            Delivery.__table__.insert(),
            [
                {
                    "campaign_id": campaign.id,
                    "email": f"reader{n}@example.com",
                    "status": "sent",
                    "sent_at": sent_at,
                    "subscriber_id": None,
                }
                for n in range(deliveries)
            ],
        )
        db.session.commit()
        ids = list(db.session.scalars(select(Delivery.id).where(Delivery.campaign_id == campaign.id)))
        db.session.remove()
        return ids


def pixel_paths(app: Any, delivery_ids: list[int]) -> list[str]:
    from sqlalchemy import select

    from mailapp.extensions import db
    from mailapp.models import Delivery
    from mailapp.sending import tokens

    with app.test_request_context():
        # A token binds its delivery's campaign and subscriber: read them in one query.
        bindings = select(Delivery.id, Delivery.campaign_id, Delivery.subscriber_id)
        wanted = Delivery.id.between(min(delivery_ids, default=0), max(delivery_ids, default=0))
        rows = db.session.execute(bindings.where(wanted)).all()
        db.session.remove()
        minter = tokens.TokenMinter()
        issued = {row.id: minter.issue(row.id, row.campaign_id, row.subscriber_id).open for row in rows}
        return [f"/o/{issued[delivery_id]}.gif" for delivery_id in delivery_ids]


def write_lua(path: Path, paths: list[str]) -> None:
    """A wrk script that cycles through `paths` (every delivery's pixel URL, or one baseline route),
    with a mail client's user agent: the baselines get the same request headers as the pixel."""
    quoted = ",\n".join(f'  "{item}"' for item in paths)
    path.write_text(
        f"local paths = {{\n{quoted}\n}}\n"
        "local i = 0\n"
        f'local headers = {{["User-Agent"] = "{READER_UA}"}}\n'
        "request = function()\n"
        "  i = i + 1\n"
        '  return wrk.format("GET", paths[(i % #paths) + 1], headers)\n'
        "end\n"
    )


def run_wrk(wrk: str, scale: Scale, url: str, seconds: int, script: Path | None = None) -> WrkResult:
    command = [wrk, f"-t{scale.wrk_threads}", f"-c{scale.connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60)
    return WrkResult.parse(output.stdout)


def start_gunicorn(workers: int, port: int, env: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, **env, "MAILAPP_BENCH_PIXEL_BIND": f"127.0.0.1:{port}", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "-c",
            str(ROOT / "bench" / "pixel_gunicorn.py"),
            "bench.pixel_wsgi:app",
        ],
        cwd=ROOT,
        env=env,
    )
    wait_for_port("127.0.0.1", port, timeout=30)
    # Every worker must have loaded the app before wrk starts, or the first seconds measure boot time.
    deadline = time.monotonic() + 120
    workdir = Path(env["MAILAPP_BENCH_PIXEL_WORKDIR"])
    while len(list(workdir.glob("ready-*"))) < workers:
        if time.monotonic() > deadline or process.poll() is not None:
            stop_gunicorn(process)
            raise RuntimeError("gunicorn workers did not start")
        time.sleep(0.1)
    return process


def stop_gunicorn(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def answered_counts(workdir: Path) -> dict[str, int]:
    """Requests answered per route, summed over the workers, and the group commit's `batches` and
    `appended` (opens written to Redis)."""
    totals = {"pixel": 0, "bare": 0, "flask": 0, "batches": 0, "appended": 0}
    for path in workdir.glob("answered-*.json"):
        for key, value in json.loads(path.read_text()).items():
            totals[key] += value
    return totals


def grouping_note(counts: dict[str, int]) -> str:
    if not counts["batches"]:
        return ""
    return (f"; group commit: {counts['appended']:,} opens in {counts['batches']:,} pipelined batches "
            f"(mean {counts['appended'] / counts['batches']:.1f})")  # fmt: skip


def flush_and_count(app: Any) -> tuple[int, float, int]:
    """(open events in the database after the flush, flush rate in events/s, deliveries' open_count sum)."""
    from sqlalchemy import func, select

    from mailapp.extensions import db
    from mailapp.models import Campaign, Delivery, OpenEvent
    from mailapp.tracking.opens import flush_open_buffer

    with app.app_context():
        started = time.perf_counter()
        flushed = flush_open_buffer()
        elapsed = time.perf_counter() - started
        campaign_id = db.session.scalar(select(Campaign.id).where(Campaign.name == CAMPAIGN_NAME))
        events = db.session.scalar(select(func.count()).where(OpenEvent.campaign_id == campaign_id))
        counted = db.session.scalar(
            select(func.sum(Delivery.open_count)).where(Delivery.campaign_id == campaign_id)
        )
        db.session.remove()
        return events, (flushed / elapsed if flushed and elapsed else 0.0), counted or 0


def run(scale: str) -> list[Row]:
    sizes = SCALES[scale]
    server_settings = web_server_settings()
    wrk = find_tool("wrk")
    if wrk is None:
        reason = "wrk is not installed (Debian package wrk)"
        return [
            unavailable_row(BARE_ROW, "requests/s", reason),
            unavailable_row(FLASK_ROW, "requests/s", reason),
            unavailable_row(PIXEL_ROW, "requests/s", reason, target=">= 4000 and >= 60% and p99 < 50"),
        ]
    with tempfile.TemporaryDirectory(prefix="mailapp-bench-pixel-") as folder:
        workdir = Path(folder)
        database, redis_url = _databases(sizes, workdir)
        if database.startswith("postgresql"):
            _create_postgres_database(database)
        broker = redis_url or f"sqla+sqlite:///{workdir / 'broker.sqlite'}"
        app = bench_app(database, broker, workdir)
        delivery_ids = prepare(app, sizes.deliveries)
        script = workdir / "pixel.lua"
        write_lua(script, pixel_paths(app, delivery_ids))
        bare_script, flask_script = workdir / "bare.lua", workdir / "flask.lua"
        write_lua(bare_script, ["/bare.gif"])
        write_lua(flask_script, ["/flask.gif"])
        port = free_port()
        server_setup = (
            f"gunicorn {server_settings['workers']} {server_settings['worker_class']} workers "
            f"x {server_settings['threads']} threads"
        )
        log(f"{server_setup}, port {port}; {database.split('@')[-1]}")
        server = start_gunicorn(
            server_settings["workers"],
            port,
            {
                "MAILAPP_BENCH_PIXEL_DATABASE": database,
                "MAILAPP_BENCH_PIXEL_REDIS": redis_url,
                "MAILAPP_BENCH_PIXEL_WORKDIR": str(workdir),
            },
        )
        base = f"http://127.0.0.1:{port}"
        try:
            run_wrk(wrk, sizes, base, 2, bare_script)
            run_wrk(wrk, sizes, base, 2, script)
            run_wrk(wrk, sizes, base, 1, flask_script)
            scripts = {"bare": bare_script, "pixel": script, "flask": flask_script}
            rounds: dict[str, list[WrkResult]] = {route: [] for route in scripts}
            for _ in range(sizes.rounds):
                for route, route_script in scripts.items():
                    rounds[route].append(run_wrk(wrk, sizes, base, sizes.seconds, route_script))
            bare, pixel, flask = (median_result(rounds[route]) for route in scripts)
        finally:
            stop_gunicorn(server)
        counts = answered_counts(workdir)
        answered = counts["pixel"]
        events, flush_rate, counted = flush_and_count(app)
        with app.app_context():
            from mailapp.extensions import db

            db.engine.dispose()
    storage = "PostgreSQL + Redis buffer" if redis_url else "SQLite, direct writes"
    setup = (
        f"{server_setup}, wrk -t{sizes.wrk_threads} -c{sizes.connections}, "
        f"median of {sizes.rounds} x {sizes.seconds} s rounds taken in turn, {storage}"
    )
    lost = answered - events
    integrity = (
        f"answered {answered:,} pixel requests (wrk counted {pixel.requests:,} in the timed rounds), "
        f"{events:,} open events and {counted:,} counted on deliveries after the flush{grouping_note(counts)}"
    )
    errors = f"; non-2xx {pixel.non_2xx}" if pixel.non_2xx else ""
    errors += f"; socket errors {pixel.socket_errors}" if pixel.socket_errors else ""
    rows = [
        result_row(
            BARE_ROW, bare.rate, "requests/s", p99_ms=bare.p99_ms, notes=f"a bare WSGI callable; {setup}"
        ),
        result_row(
            PIXEL_ROW,
            pixel.rate,
            "requests/s",
            baseline=BARE_ROW,
            baseline_value=bare.rate,
            target=">= 4000 and >= 60% and p99 < 50",
            p99_ms=pixel.p99_ms,
            notes=f"{setup}; {integrity}{errors}",
        ),
        result_row(
            FLASK_ROW,
            flask.rate,
            "requests/s",
            baseline=BARE_ROW,
            baseline_value=bare.rate,
            p99_ms=flask.p99_ms,
            notes=f"an empty Flask view answering the same GIF, for context; {setup}",
        ),
        result_row(
            "pixel: opens lost or doubled",
            abs(lost) + abs(counted - events),
            "opens",
            target="= 0",
            notes=integrity,
        ),
    ]
    if redis_url:
        rows.append(
            result_row(
                "pixel: buffer flush into PostgreSQL",
                flush_rate,
                "events/s",
                target=">= 4000",
                notes="flush_open_buffer after the run: bulk INSERT + one UPDATE per batch",
            )
        )
    return rows
