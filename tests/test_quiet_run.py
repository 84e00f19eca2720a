"""`make run` stays readable: beat's periodic ticks log at DEBUG (an idle installation printed some 200
lines a minute), the sign-in details are printed again once the web process answers, and Ctrl-C stops
the announcing process quietly. bench/idle_logs.py measures the whole of `make run` for a minute."""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mailapp.celery_app import POOL_LOGGER, TICK_LOGGERS, QuietTicks
from tests.smtp import _free_port
from tests.test_make_targets import REPO_ROOT

FLASK = Path(sys.executable).parent / "flask"


def _log(logger: logging.Logger, level: int, message: str, *args, **kwargs) -> list[logging.LogRecord]:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.log(level, message, *args, **kwargs)
    finally:
        logger.removeHandler(handler)
    return seen


@pytest.fixture
def tick_loggers(celery_app_for_ticks):
    return {name: logging.getLogger(name) for name in TICK_LOGGERS}


@pytest.fixture
def celery_app_for_ticks(app):
    # As a worker sets them up. (The migrations' logging.config.fileConfig disables the loggers that
    # exist when it runs, Celery's among them, in the test process.)
    loggers = [logging.getLogger(name) for name in TICK_LOGGERS]
    saved = [(logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
        logger.disabled = False
    yield app.extensions["celery"]
    for logger, (level, disabled) in zip(loggers, saved, strict=True):
        logger.setLevel(level)
        logger.disabled = disabled


def test_the_app_puts_the_tick_filter_on_celerys_loggers(tick_loggers):
    for logger in tick_loggers.values():
        assert [f for f in logger.filters if isinstance(f, QuietTicks)], logger.name


def test_beat_tick_lines_are_dropped_at_info_and_other_tasks_keep_theirs(tick_loggers):
    worker, tracer, beat = (tick_loggers[name] for name in ("celery.worker.strategy", "celery.app.trace",
                                                            "celery.beat"))
    tick = {"name": "mailapp.campaigns.tasks.dispatch_due_campaigns", "id": "x"}
    start = {"name": "mailapp.campaigns.tasks.start_campaign", "id": "y"}
    assert _log(worker, logging.INFO, "Task %(name)s[%(id)s] received", tick, extra={"data": tick}) == []
    assert _log(tracer, logging.INFO, "Task %(name)s[%(id)s] succeeded", tick, extra={"data": tick}) == []
    assert _log(beat, logging.INFO, "Scheduler: Sending due task %s (%s)", "dispatch-due-campaigns",
                "mailapp.campaigns.tasks.dispatch_due_campaigns") == []
    received = _log(worker, logging.INFO, "Task %(name)s[%(id)s] received", start, extra={"data": start})
    assert len(received) == 1
    # A tick that fails still says so.
    assert len(_log(tracer, logging.ERROR, "Task %(name)s[%(id)s] raised", tick, extra={"data": tick})) == 1


def test_with_debug_logging_the_tick_lines_show_at_debug(tick_loggers):
    beat = tick_loggers["celery.beat"]
    beat.setLevel(logging.DEBUG)
    [record] = _log(beat, logging.INFO, "Scheduler: Sending due task %s (%s)", "sweep-expired-leases",
                    "mailapp.sending.tasks.sweep_expired_leases")
    assert record.levelname == "DEBUG"


@pytest.fixture
def pool_logger(app, monkeypatch):
    from celery.worker import state

    logger = logging.getLogger(POOL_LOGGER)
    monkeypatch.setattr(logger, "disabled", False)
    monkeypatch.setattr(logger, "level", logging.INFO)
    monkeypatch.setattr(state, "should_stop", None)
    return logger, state


def test_pool_processes_stopped_with_the_worker_are_not_reported_as_errors(pool_logger, monkeypatch):
    logger, state = pool_logger
    died = ("Process %r pid:%r exited with %r", "ForkPoolWorker-1", 4242, "signal 15 (SIGTERM)")
    # Killed while the worker runs: an error, as before.
    assert len(_log(logger, logging.ERROR, *died)) == 1
    # Killed by the same Ctrl-C that put the worker into its warm shutdown (exit code 0): quiet.
    monkeypatch.setattr(state, "should_stop", 0)
    assert _log(logger, logging.ERROR, *died) == []
    crashed = ("Process %r pid:%r exited with %r", "ForkPoolWorker-2", 4243, "signal 11 (SIGSEGV)")
    assert len(_log(logger, logging.ERROR, *crashed)) == 1


class _Login(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_announce_prints_the_sign_in_details_once_the_web_answers_and_stops_quietly(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Login)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/login"
    details = "Created admin admin@example.com\nGenerated password (shown once): s3cret"
    env = {**os.environ, "MAILAPP_INSTANCE_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1",
           "MAILAPP_SIGNIN_DETAILS": details}
    process = subprocess.Popen(
        [FLASK, "--app", "wsgi", "users", "announce", "--url", url], cwd=REPO_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        lines = []
        while not any("Generated password" in line for line in lines):
            assert time.monotonic() < deadline, lines
            lines.append(process.stdout.readline())
        assert any("mailapp is ready: http://127.0.0.1:" in line for line in lines)
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=30)
    finally:
        server.shutdown()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "Traceback" not in errors + rest
    assert errors.strip() == ""


def test_make_run_hands_the_sign_in_details_to_announce():
    dry_run = subprocess.run(
        ["make", "-n", "run"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True,
        env={key: value for key, value in os.environ.items() if key not in {"MAKEFLAGS", "MAKELEVEL"}},
    ).stdout
    assert 'MAILAPP_SIGNIN_DETAILS="$(' in dry_run
    assert "honcho start web worker scheduler beat devsmtp announce" in dry_run
    procfile = (REPO_ROOT / "Procfile").read_text()
    # Not ${PORT}: honcho gives every process a PORT of its own, announce's is not the web's.
    announce = "announce: flask --app wsgi users announce --url http://127.0.0.1:${WEB_PORT:-5000}/login"
    assert announce in procfile


# How long every process of `make run` may take to stop after Ctrl-C: honcho SIGKILLs whatever is left
# 5 s after the first process stops.
STOP_SECONDS = 5


def _make_run_processes() -> list[str]:
    """The Procfile processes `make run` starts, read from its honcho command line."""
    dry_run = subprocess.run(
        ["make", "-n", "run"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True,
        env={key: value for key, value in os.environ.items() if key not in {"MAKEFLAGS", "MAKELEVEL"}},
    ).stdout
    return re.search(r"honcho start ([\w ]+)", dry_run).group(1).split()


def _make_run_environment(instance: Path) -> dict[str, str]:
    """The embedded default of `make run` (no DATABASE_URL, broker or Redis), on an instance folder and
    ports of its own."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MAIL", "FLASK_")) and key not in {"DATABASE_URL", "CELERY_BROKER_URL",
                                                                    "REDIS_URL", "PUBLIC_URL", "SECRET_KEY"}}
    web_port = str(_free_port())
    env.update(
        MAILAPP_INSTANCE_DIR=str(instance), PORT=web_port, WEB_PORT=web_port, MAIL_PORT=str(_free_port()),
        INBOUND_SMTP_PORT=str(_free_port()), PYTHONUNBUFFERED="1", XDG_RUNTIME_DIR=str(instance),
        PATH=f"{FLASK.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def _kill_what_is_left(honcho: subprocess.Popen, log: Path) -> None:
    """honcho, and each process it started: every one runs in a session of its own."""
    if honcho.poll() is None:
        honcho.kill()
        honcho.wait()
    for pid in re.findall(r"started \(pid=(\d+)\)", log.read_text()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGKILL)


@pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="make run's embedded default (SQLite, its database broker) whatever the suite's backend: "
    "the SQLite pass runs it",
)
def test_ctrl_c_stops_every_make_run_process_promptly_and_quietly(tmp_path):
    processes = _make_run_processes()
    assert {"web", "worker", "scheduler", "beat", "devsmtp", "announce"} <= set(processes)
    env = _make_run_environment(tmp_path)
    for command in (["db", "upgrade"], ["broker", "prepare"], ["users", "ensure-admin"]):
        subprocess.run([FLASK, "--app", "wsgi", *command], cwd=REPO_ROOT, env=env, check=True,
                       capture_output=True, timeout=120)
    log = tmp_path / "honcho.log"
    with log.open("w") as output:
        honcho = subprocess.Popen([FLASK.parent / "honcho", "start", *processes, "inbound"], cwd=REPO_ROOT,
                                  env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # Every process up: the worker and the scheduler say so, and announce once web answers.
        while not all(mark in log.read_text() for mark in ("celery@", "scheduler@", "mailapp is ready")):
            assert honcho.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(1)  # the beat's first ticks go through the worker
        stopping = time.monotonic()
        honcho.send_signal(signal.SIGINT)  # what Ctrl-C in make run's terminal does
        honcho.wait(timeout=60)
        took = time.monotonic() - stopping
    finally:
        _kill_what_is_left(honcho, log)
    output = log.read_text()
    stop_lines = output[output.index("SIGINT received"):]
    assert "SIGKILL" not in stop_lines, stop_lines
    assert "Traceback" not in output, output
    assert "ERROR" not in stop_lines, stop_lines
    assert "CRITICAL" not in stop_lines, stop_lines
    assert took < STOP_SECONDS + 3, f"stopping took {took:.1f} s:\n{stop_lines}"
