"""Scheduling delay: how long after its send_at a scheduled campaign starts, with a real worker and beat.

Measured on Redis + PostgreSQL (MAILAPP_BENCH_REDIS_URL, default Redis db 6; the bench database) and on
the embedded default (SQLite + the sqla+sqlite broker). Each run starts `celery -A wsgi:celery_app
worker` and `... beat` as in the Procfile, schedules small campaigns through the campaigns service
(commit, then queue_start, like the dashboard does) and reads back started_at, by start path (PATHS):
the ETA message, the beat dispatcher's lookahead when that message is lost, and its next tick when the
lost one is already due. On the embedded default it then measures the CPU the idle worker and beat use.
"smoke" measures the embedded default only, once per path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_DATABASE_ENV,
    BENCH_REDIS_ENV,
    DEFAULT_BENCH_DATABASE,
    DEFAULT_BENCH_REDIS,
    ROOT,
    SINK_HOST_ENV,
    SINK_PORT_ENV,
    Row,
    bench_app,
    child_pids,
    result_row,
    unavailable_row,
)

# The start paths measured, and the suffix of their row names:
# - "eta": the normal path, the start message queued with an ETA after the schedule's commit;
# - "beat": no start message (lost with a broker restart, or the schedule lay beyond the horizon): the
#   beat dispatcher's lookahead queues one as the time comes near;
# - "overdue": no start message and already due when the dispatcher first sees it (a start message
#   lost for a schedule closer than the lookahead): started at the dispatcher's next tick.
PATHS = {
    "eta": "",
    "beat": ", start message lost (beat only)",
    "overdue": ", start message lost, found overdue (beat tick)",
}
# How far ahead the campaign is scheduled once the worker and beat are up (for "eta" and "beat").
LEAD_SECONDS = {"smoke": 1.5, "full": 5.0}
BUSY_SUFFIX = ", while another campaign holds every send slot"
# Samples per path; the row shows the worst, since the target is a bound.
SAMPLES = {"smoke": 1, "full": 3}
# The embedded default's worker and beat with nothing to do: CPU over this window (not at smoke scale,
# where worker and beat share a process).
IDLE_WINDOW_SECONDS = {"smoke": None, "full": 20.0}
IDLE_SETTLE_SECONDS = 5.0
# "busy": a campaign scheduled while another one, of BUSY_RECIPIENTS sent at BUSY_RATE messages/s (the
# whole run's MAIL_RATE_LIMIT), keeps every worker slot taken (full scale only).
BUSY_RECIPIENTS = {"smoke": None, "full": 8000}
BUSY_RATE = 200
BUSY_TIMEOUT = 120.0
IDLE_UNIT = "% of a core"
IDLE_TARGET = "< 5"
READY_TIMEOUT = 60.0
START_TIMEOUT = 30.0
BENCH_PREFIX = "bench-schedule"


def log(message: str) -> None:
    print(f"[bench_schedule {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _service_missing() -> str | None:
    try:
        from mailapp.campaigns import lifecycle
    except ImportError as error:
        return f"mailapp.campaigns cannot be imported ({error})"
    if not hasattr(lifecycle, "schedule_campaign") or not hasattr(lifecycle, "queue_start"):
        return "mailapp.campaigns.lifecycle.schedule_campaign / lifecycle.queue_start not built yet"
    return None


@contextlib.contextmanager
def celery_processes(
    env: dict[str, str], workdir: Path, *, embed_beat: bool
) -> Iterator[list[subprocess.Popen]]:
    """A worker, the scheduler (a worker on the `schedule` queue only) and a beat, as the Procfile runs
    them (or one worker with an embedded beat, -B, which starts faster for the smoke run), stopped
    (TERM, then KILL) on the way out."""
    celery = str(Path(sys.executable).with_name("celery"))
    schedule_file = ["-s", str(workdir / "celerybeat-schedule")]
    worker = [celery, "-A", "wsgi:celery_app", "worker", "--loglevel=INFO", "--concurrency=2",
              "--without-gossip", "--without-mingle", "-n", f"bench-schedule-{os.getpid()}@%h"]  # fmt: skip
    if embed_beat:
        commands = {"worker": [*worker, "-B", *schedule_file]}
    else:
        scheduler = [celery, "-A", "wsgi:celery_app", "worker", "--queues=schedule", "--pool=solo",
                     "--loglevel=INFO", "--without-gossip", "--without-mingle",
                     "-n", f"bench-scheduler-{os.getpid()}@%h"]  # fmt: skip
        beat = [celery, "-A", "wsgi:celery_app", "beat", "--loglevel=INFO", *schedule_file]
        commands = {"worker": worker, "scheduler": scheduler, "beat": beat}
    processes = []
    try:
        for name, command in commands.items():
            log_file = (workdir / f"{name}.log").open("w")
            processes.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            )  # fmt: skip
        yield processes
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGQUIT)  # cold shutdown: nothing here needs finishing
        for process in processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait_ready(workdir: Path, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    worker_logs = [workdir / name for name in ("worker.log", "scheduler.log") if (workdir / name).exists()]
    beat_log = workdir / "beat.log" if (workdir / "beat.log").exists() else worker_logs[0]
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"a celery process exited early: {_tail(workdir)}")
        workers_ready = all(" ready." in log.read_text() for log in worker_logs)
        if workers_ready and "beat: Starting" in beat_log.read_text():
            return
        time.sleep(0.1)
    raise RuntimeError(f"worker/beat not ready after {READY_TIMEOUT:.0f} s: {_tail(workdir)}")


def _tail(workdir: Path) -> str:
    lines = []
    for name in ("worker", "scheduler", "beat"):
        path = workdir / f"{name}.log"
        if path.exists():
            errors = [line for line in path.read_text().splitlines() if "Error" in line or "error" in line]
            lines += [f"{name}: {line.strip()}" for line in errors[-2:]]
    return " / ".join(lines)[-600:] or "no error in the logs"


def _make_campaign(recipients: int = 3) -> int:
    """A draft campaign to a new list of `recipients` subscribers, ready to be scheduled."""
    from sqlalchemy import insert

    from mailapp.extensions import db
    from mailapp.models.campaign import Campaign
    from mailapp.models.layout import Layout
    from mailapp.models.subscriber import Subscriber, SubscriberList, list_members

    stamp = f"{os.getpid()}-{time.time_ns()}"
    target = SubscriberList(name=f"{BENCH_PREFIX} {stamp}")
    layout = Layout(
        name=f"{BENCH_PREFIX} {stamp}",
        html='<html><body>{{ message }}<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>',
    )
    db.session.add_all([target, layout])
    db.session.flush()
    subscriber_ids = db.session.scalars(
        insert(Subscriber).returning(Subscriber.id),
        [
            {"email": f"{BENCH_PREFIX}-{stamp}-{i}@example.com", "name": f"Reader {i}"}
            for i in range(recipients)
        ],
    ).all()
    db.session.execute(
        insert(list_members), [{"list_id": target.id, "subscriber_id": sid} for sid in subscriber_ids]
    )
    campaign = Campaign(
        name=f"{BENCH_PREFIX} {stamp}", subject="Scheduled", from_email="news@example.com",
        layout=layout, message="Hello {{ subscriber.name }}", lists=[target],
    )  # fmt: skip
    db.session.add(campaign)
    db.session.commit()
    return campaign.id


def _remove_bench_rows() -> None:
    from sqlalchemy import delete

    from mailapp.extensions import db
    from mailapp.models.campaign import Campaign
    from mailapp.models.layout import Layout
    from mailapp.models.subscriber import Subscriber, SubscriberList

    db.session.rollback()
    for model, column in ((Campaign, Campaign.name), (SubscriberList, SubscriberList.name),
                          (Layout, Layout.name), (Subscriber, Subscriber.email)):  # fmt: skip
        db.session.execute(delete(model).where(column.like(f"{BENCH_PREFIX}%")))
    db.session.commit()


def measure_delays(
    database: str,
    broker: str,
    workdir: Path,
    *,
    lead: float,
    samples: int = 1,
    embed_beat: bool = False,
    idle_window: float | None = None,
    busy_recipients: int | None = None,
) -> tuple[dict[str, list[float | None]], float | None]:
    """Seconds from send_at to started_at, `samples` times by path (see PATHS), one campaign each, one
    after the other; then, if idle_window is given, the CPU the worker and beat use with nothing to do
    (percent of one core); then, with busy_recipients, one more start while a campaign that large is
    sending ("busy")."""
    with _broker_env(broker):
        return _measure(database, broker, workdir, lead=lead, samples=samples, embed_beat=embed_beat,
                        idle_window=idle_window, busy_recipients=busy_recipients)  # fmt: skip


@contextlib.contextmanager
def _broker_env(broker: str) -> Iterator[None]:
    """Celery reads CELERY_BROKER_URL from the environment before its config, and the harness exports
    the Redis one: without this, what this process queues (queue_start, start_now) on the embedded
    default would go to Redis, and only the dispatcher would start those campaigns."""
    saved = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = broker
    try:
        yield
    finally:
        if saved is None:
            del os.environ["CELERY_BROKER_URL"]
        else:
            os.environ["CELERY_BROKER_URL"] = saved


def _measure(
    database: str,
    broker: str,
    workdir: Path,
    *,
    lead: float,
    samples: int,
    embed_beat: bool,
    idle_window: float | None,
    busy_recipients: int | None,
) -> tuple[dict[str, list[float | None]], float | None]:
    from flask_migrate import upgrade
    from sqlalchemy import inspect

    from mailapp.campaigns import lifecycle
    from mailapp.extensions import db
    from mailapp.models.base import utcnow

    if broker.startswith("redis"):
        import redis

        redis.Redis.from_url(broker).flushdb()
    app = bench_app(database, broker, workdir)
    assert app.extensions["celery"].conf.broker_url == broker
    with app.app_context():
        if not inspect(db.engine).has_table("alembic_version"):
            upgrade()
        try:
            _remove_bench_rows()
            rounds = [{path: _make_campaign() for path in PATHS} for _ in range(samples)]
            env = {
                **os.environ,
                "DATABASE_URL": database,
                "CELERY_BROKER_URL": broker,
                "SECRET_KEY": "bench-secret-key",
                "MAILAPP_INSTANCE_DIR": str(workdir),
                "DEVINBOX_ENABLED": "0",
                "MAIL_SERVER": os.environ.get(SINK_HOST_ENV, "127.0.0.1"),
                "MAIL_PORT": os.environ.get(SINK_PORT_ENV, "9"),
                "MAIL_RATE_LIMIT": str(BUSY_RATE) if busy_recipients else "0",
            }
            busy = (_make_campaign(busy_recipients), _make_campaign()) if busy_recipients else None
            delays: dict[str, list[float | None]] = {path: [] for path in PATHS}
            idle_cpu = None
            with celery_processes(env, workdir, embed_beat=embed_beat) as processes:
                clock = time.monotonic()
                _wait_ready(workdir, processes)
                log(f"worker and beat ready in {time.monotonic() - clock:.1f} s")
                for campaigns in rounds:
                    for path, campaign_id in campaigns.items():
                        ahead = 0.0 if path == "overdue" else lead
                        send_at = utcnow() + timedelta(seconds=ahead)
                        scheduled = lifecycle.schedule_campaign(campaign_id, send_at)
                        db.session.commit()
                        if path == "eta":
                            lifecycle.queue_start(scheduled.id, scheduled.schedule_version, scheduled.send_at,
                                              scheduled.start_queued_version)  # fmt: skip
                        delays[path].append(_wait_started(campaign_id, scheduled.send_at, ahead, workdir))
                if idle_window:
                    idle_cpu = _idle_cpu_percent(processes, idle_window)
                    log(f"idle worker + beat: {idle_cpu:.2f}% of one core over {idle_window:g} s")
                if busy:
                    delays["busy"] = [_delay_while_sending(*busy, lead=lead, workdir=workdir)]
                log("delays (s): " + ", ".join(f"{path} {values}" for path, values in delays.items()))
            return delays, idle_cpu
        finally:
            _remove_bench_rows()
            db.session.remove()
            db.engine.dispose()


def _delay_while_sending(big_id: int, campaign_id: int, *, lead: float, workdir: Path) -> float | None:
    """Send the big campaign now, schedule the other `lead` seconds ahead once the big one's batches
    hold the worker, measure (None: not started within BUSY_TIMEOUT); then cancel the big one (its
    batches stop between two messages)."""
    from mailapp.campaigns import lifecycle
    from mailapp.errors import InvalidStateError
    from mailapp.extensions import db
    from mailapp.models.base import utcnow

    version = lifecycle.send_campaign_now(big_id).schedule_version
    db.session.commit()
    lifecycle.start_now(big_id, version)
    _wait_sending(big_id)
    scheduled = lifecycle.schedule_campaign(campaign_id, utcnow() + timedelta(seconds=lead))
    db.session.commit()
    lifecycle.queue_start(
        scheduled.id, scheduled.schedule_version, scheduled.send_at, scheduled.start_queued_version
    )
    try:
        return _wait_started(campaign_id, scheduled.send_at, lead, workdir, timeout=BUSY_TIMEOUT)
    except RuntimeError:
        return None
    finally:
        with contextlib.suppress(InvalidStateError):  # it may have finished meanwhile
            lifecycle.cancel_campaign(big_id)
        db.session.commit()


def _wait_sending(campaign_id: int) -> None:
    """Until the campaign's batches have leased rows (committed before they send): they hold the
    worker's slots then. Sent marks would say it later on SQLite, where a batch commits them rarely."""
    from sqlalchemy import func, select

    from mailapp.extensions import db
    from mailapp.models.delivery import Delivery

    deadline = time.monotonic() + START_TIMEOUT
    statement = select(func.count()).where(Delivery.campaign_id == campaign_id, Delivery.status != "pending")
    while time.monotonic() < deadline:
        claimed = db.session.scalar(statement)
        db.session.rollback()  # no transaction held while the worker writes (see _wait_started)
        if claimed:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the busy campaign's batches claimed nothing within {START_TIMEOUT:.0f} s")


def _idle_cpu_percent(processes: list[subprocess.Popen], window: float) -> float:
    """CPU time of the Celery processes and their pool children over `window` seconds with nothing to
    do, once the small campaigns above have settled (before the busy one), as a percentage of one core."""
    time.sleep(IDLE_SETTLE_SECONDS)
    pids = [process.pid for process in processes]
    pids += [child for pid in list(pids) for child in child_pids(pid)]
    before, clock = _cpu_seconds(pids), time.monotonic()
    time.sleep(window)
    return 100 * (_cpu_seconds(pids) - before) / (time.monotonic() - clock)


def _cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            # utime and stime: fields 14 and 15 of /proc/<pid>/stat, counted after the command name.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _wait_started(
    campaign_id: int, send_at: Any, lead: float, workdir: Path, *, timeout: float = START_TIMEOUT
) -> float:
    from mailapp.extensions import db
    from mailapp.models.campaign import Campaign

    deadline = time.monotonic() + lead + timeout
    while time.monotonic() < deadline:
        started_at = db.session.get(Campaign, campaign_id, populate_existing=True).started_at
        # End the read before sleeping: on SQLite every transaction holds the write lock (BEGIN
        # IMMEDIATE), and a poller that keeps it starves the worker it is waiting for.
        db.session.rollback()
        if started_at is not None:
            return (started_at - send_at).total_seconds()
        time.sleep(0.05)
    raise RuntimeError(f"not started {timeout:.0f} s after send_at: {_tail(workdir)}")


def _rows(
    label: str,
    target_s: float,
    database: str,
    broker: str,
    setup: str,
    *,
    scale: str,
    embed_beat: bool,
    measure_idle: bool = False,
) -> list[Row]:
    lead, samples = LEAD_SECONDS[scale], SAMPLES[scale]
    idle_window = IDLE_WINDOW_SECONDS[scale] if measure_idle and not embed_beat else None
    busy_recipients = BUSY_RECIPIENTS[scale]
    suffixes = PATHS | ({"busy": BUSY_SUFFIX} if busy_recipients else {})
    names = {path: f"schedule: start delay, {label}{suffix}" for path, suffix in suffixes.items()}
    idle_name = f"schedule: idle CPU of worker + beat, {label}"
    target = f"< {target_s:g}"
    with tempfile.TemporaryDirectory(prefix="mailapp-bench-schedule-") as folder:
        workdir = Path(folder)
        database, broker = database.replace("{workdir}", folder), broker.replace("{workdir}", folder)
        try:
            delays, idle_cpu = measure_delays(database, broker, workdir, lead=lead, samples=samples,
                                              embed_beat=embed_beat, idle_window=idle_window,
                                              busy_recipients=busy_recipients)  # fmt: skip
        except Exception as error:  # reported in the table
            notes = f"error: {error}"
            rows = [result_row(name, None, "s", target=target, notes=notes) for name in names.values()]
            if idle_window:
                rows.append(result_row(idle_name, None, IDLE_UNIT, target=IDLE_TARGET, notes=notes))
            return rows
    processes = "one worker with embedded beat (-B)" if embed_beat else "worker + scheduler + beat processes"
    how = {
        "eta": f"start message queued with an ETA after the commit, {lead:g} s ahead",
        "beat": f"scheduled {lead:g} s ahead, no start message: the dispatcher queues one as the time "
        "comes near (lookahead)",
        "overdue": "scheduled for now, no start message: the dispatcher starts it at its next tick",
        "busy": f"start message with an ETA, {lead:g} s ahead, while a {busy_recipients or 0:,}-recipient "
        f"campaign sends at MAIL_RATE_LIMIT={BUSY_RATE} (the whole run's limit) and holds every slot of "
        "the main worker; the scheduler process (the `schedule` queue only) takes the start",
    }
    rows = []
    for path, name in names.items():
        if None in delays[path]:
            notes = f"error: not started within {BUSY_TIMEOUT:g} s of its time; {how[path]}; {setup}"
            rows.append(result_row(name, None, "s", target=target, notes=notes))
            continue
        values = [value for value in delays[path] if value is not None]
        spread = ", ".join(f"{value:.3f}" for value in values)
        worst = f"worst of {len(values)} ({spread} s)" if len(values) > 1 else f"{len(values)} sample"
        rows.append(result_row(name, max(values), "s", target=target,
                               notes=f"{worst}; {how[path]}; {setup}; {processes}"))  # fmt: skip
    if idle_cpu is not None:
        rows.append(result_row(idle_name, idle_cpu, IDLE_UNIT, target=IDLE_TARGET,
                               notes=f"{setup}; nothing to send, over {idle_window:g} s"))  # fmt: skip
    return rows


def run(scale: str) -> list[Row]:
    redis_label, embedded_label = "Redis + PostgreSQL", "embedded default"
    missing = _service_missing()
    if missing:
        return [
            unavailable_row(f"schedule: start delay, {label}{suffix}", "s", missing, target=target)
            for label, target in ((redis_label, "< 2"), (embedded_label, "< 5"))
            for suffix in PATHS.values()
        ]
    rows: list[Row] = []
    if scale == "full":
        database = os.environ.get(BENCH_DATABASE_ENV) or DEFAULT_BENCH_DATABASE
        broker = os.environ.get(BENCH_REDIS_ENV) or DEFAULT_BENCH_REDIS
        rows += _rows(redis_label, 2, database, broker, f"{broker} broker, {database.split('@')[-1]}",
                      scale=scale, embed_beat=False)  # fmt: skip
    else:
        rows += [unavailable_row(f"schedule: start delay, {redis_label}{suffix}", "s",
                                 "measured at full scale only", target="< 2")
                 for suffix in PATHS.values()]  # fmt: skip
    rows += _rows(embedded_label, 5, "sqlite:///{workdir}/mailapp.sqlite",
                  "sqla+sqlite:///{workdir}/celery.sqlite", "SQLite + sqla+sqlite broker",
                  scale=scale, embed_beat=scale == "smoke", measure_idle=True)  # fmt: skip
    return rows
