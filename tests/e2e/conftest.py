"""Browser tests' fixtures: the real app running as separate processes (gunicorn web, a Celery worker and
beat, a test SMTP server) on a database of its own, and Debian's Chromium driven by Playwright.

These tests never touch the `app` fixture of tests/conftest.py: its autouse `_app_context` would empty
the tables after each test, and its session setup drops the schema of DATABASE_URL. The app under test
here uses its own database instead (`<name>_e2e` next to DATABASE_URL on PostgreSQL, a temp SQLite file
otherwise), so both suites can run in one pytest session."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import _flush_redis
from tests.sibling_database import create_sibling_database
from tests.smtp import SMTPTestServer, _free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS_DIR = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Not UTC, so the tests see that times are picked and shown in the browser's zone.
BROWSER_TIMEZONE = "America/New_York"
READER_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
ADMIN_EMAIL = "marketer@example.com"
ADMIN_PASSWORD = "correct horse battery"
STARTUP_TIMEOUT = 60.0
LOG_TAIL_LINES = 60
# Lines that drown the ones telling what happened: requests for CSS and JS, and beat's periodic tasks.
LOG_NOISE = re.compile(
    r'"GET /(static|bootstrap/static)/|"GET /favicon.ico'
    r"|Task mailapp\.(campaigns\.tasks\.dispatch_due_campaigns|tracking\.tasks\.flush_open_events"
    r"|sending\.tasks\.sweep_expired_leases)\[[^]]+\] (received|succeeded)"
)

_BIN = Path(sys.executable).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests before the rest. On PostgreSQL + Redis the app under test shares the Redis
    broker with the in-process worker of tests/conftest.py (session-scoped, so once started it lives to
    the end); started first, it would take the running app's tasks. The app's processes stop when this
    package ends, and the `app` fixture flushes the broker when it starts."""
    here = Path(__file__).resolve().parent
    items[:] = sorted(items, key=lambda item: here not in Path(item.path).resolve().parents)


@pytest.fixture(autouse=True)
def _app_context() -> None:
    """Replaces tests/conftest.py's fixture of the same name: these tests talk to a running app over
    HTTP, and must neither create the in-process `app` nor have tables emptied under the live one."""


@dataclass
class AppProcess:
    name: str
    process: subprocess.Popen
    log_path: Path

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            content = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        content = [line for line in content if not LOG_NOISE.search(line)]
        return "\n".join(content[-lines:])


@dataclass
class RunningApp:
    """The app under test: its URL, its mailbox, and the processes that serve it."""

    base_url: str
    smtp: SMTPTestServer
    workdir: Path
    env: dict[str, str]
    processes: list[AppProcess] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def flask(self, *args: str) -> str:
        """Run a `flask --app wsgi` command against the app's database and return its output."""
        result = subprocess.run(
            [str(_BIN / "flask"), "--app", "wsgi", *args],
            cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=120, check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self, name: str, *command: str) -> AppProcess:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log:
            # A session of its own, so stopping the process also stops the workers it forked.
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = AppProcess(name, process, log_path)
        self.processes.append(started)
        return started

    def assert_alive(self) -> None:
        for proc in self.processes:
            code = proc.process.poll()
            if code is not None:
                raise AssertionError(f"{proc.name} exited with {code}:\n{proc.tail()}")

    def log_tails(self) -> list[tuple[str, str]]:
        return [(f"{proc.name} log (last {LOG_TAIL_LINES} lines)", proc.tail()) for proc in self.processes]

    def stop(self) -> None:
        for proc in self.processes:
            _signal_group(proc.process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.processes:
            try:
                proc.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.process, signal.SIGKILL)
                proc.process.wait(timeout=10)
            # Forked children (gunicorn and Celery pool workers) may outlive a killed parent.
            _signal_group(proc.process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


# The app under test, for the failure report hook below.
_running_app: RunningApp | None = None


def _e2e_database(workdir: Path) -> tuple[str, Callable[[], None]]:
    """A fresh database for the app under test, and how to drop it afterwards."""
    configured = os.environ.get("DATABASE_URL")
    if not configured or not configured.startswith(("postgres://", "postgresql")):
        return f"sqlite:///{workdir / 'mailapp.sqlite'}", lambda: None

    return create_sibling_database(configured, "e2e")


def _wait_for_http(running: RunningApp, path: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        running.assert_alive()
        try:
            with urllib.request.urlopen(running.url(path), timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the web server did not answer {path} within {STARTUP_TIMEOUT}s")
        time.sleep(0.1)


def _wait_for_log(running: RunningApp, proc: AppProcess, pattern: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    regex = re.compile(pattern)
    while not regex.search(proc.log_path.read_text(errors="replace")):
        running.assert_alive()
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{proc.name} did not log {pattern!r} within {STARTUP_TIMEOUT}s:\n{proc.tail()}"
            )
        time.sleep(0.1)


@pytest.fixture(scope="package")
def mailapp_server() -> Iterator[RunningApp]:
    """The real app: migrated, with an admin, served by gunicorn, with a Celery worker and beat.

    Package-scoped, so every process is gone before the rest of the suite (which shares the broker)
    starts its own worker."""
    global _running_app

    # Not pytest's tmp_path: several pytest sessions share this machine and prune each other's.
    workdir = Path(tempfile.mkdtemp(prefix="mailapp-e2e-"))
    smtp = SMTPTestServer()
    smtp.start()
    db_url, drop_database = _e2e_database(workdir)
    broker_url = os.environ.get("CELERY_BROKER_URL") or f"sqla+sqlite:///{workdir / 'broker.sqlite'}"
    # The broker, and the Redis that buffers opens and counts logins when it is another one: leftovers
    # of an earlier run would be counted in this one's reports.
    for redis_url in {broker_url, os.environ.get("REDIS_URL", "")}:
        if redis_url.startswith("redis"):
            _flush_redis(redis_url)
    port = _free_port()
    env = {
        **os.environ,
        "MAILAPP_ENV": "development",
        "MAILAPP_INSTANCE_DIR": str(workdir / "instance"),
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": broker_url,
        "SECRET_KEY": "e2e-secret-key",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp.port),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "UPLOAD_DIR": str(workdir / "uploads"),
        "DEVINBOX_DIR": str(workdir / "devinbox"),
        "MAILAPP_ADMIN_EMAIL": ADMIN_EMAIL,
        "MAILAPP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("FLASK_DEBUG", None)
    running = RunningApp(base_url=f"http://127.0.0.1:{port}", smtp=smtp, workdir=workdir, env=env)
    _running_app = running
    try:
        # The web server's start (mostly imports) overlaps the migration; it touches no table until
        # the first request, which waits for the migration below.
        running.start(
            "web", str(_BIN / "gunicorn"), "wsgi:app", "--bind", f"127.0.0.1:{port}",
            "--worker-class", "gthread", "--workers", "1", "--threads", "8",
            "--timeout", "60", "--graceful-timeout", "5", "--access-logfile", "-",
            # Its default control socket is one path per user, shared with any other gunicorn here.
            "--no-control-socket",
        )
        running.flask("db", "upgrade")
        admin = running.start("ensure-admin", str(_BIN / "flask"), "--app", "wsgi", "users", "ensure-admin")
        # On the SQLite broker, worker and beat would race to create the queue, and the loser exits.
        running.flask("broker", "prepare")
        worker = running.start(
            "worker", str(_BIN / "celery"), "-A", "wsgi:celery_app", "worker", "--concurrency", "2",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--hostname", f"e2e-{port}@%h",
        )
        running.start(
            "beat", str(_BIN / "celery"), "-A", "wsgi:celery_app", "beat", "--loglevel", "WARNING",
            "--schedule", str(workdir / "beat-schedule"), "--pidfile", str(workdir / "beat.pid"),
        )
        if admin.process.wait(timeout=STARTUP_TIMEOUT) != 0:
            raise AssertionError(f"users ensure-admin failed:\n{admin.tail()}")
        running.processes.remove(admin)
        _wait_for_http(running, "/login")
        _wait_for_log(running, worker, r"\bready\.")
        yield running
    finally:
        running.stop()
        smtp.stop()
        _running_app = None
        drop_database()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and _running_app is not None:
        for title, content in _running_app.log_tails():
            report.sections.append((title, content))
    if report.when == "call":
        item.stash[_call_failed] = report.failed
    return report


_call_failed = pytest.StashKey[bool]()


class _LandingPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's name
        body = f"<!doctype html><title>Shop</title><h1>Spring catalogue</h1><p>{self.path}</p>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # http.server's signature
        pass


@pytest.fixture(scope="package")
def landing_site() -> Iterator[str]:
    """The marketer's own web site, where the links in campaigns lead: its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LandingPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# -- the browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. "
            "Install it with `.ci/install-browser` (apt-get install chromium), then rerun.",
            pytrace=False,
        )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15_000)
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture(scope="package")
def screenshots_dir() -> Path:
    if SCREENSHOTS_DIR.exists():
        shutil.rmtree(SCREENSHOTS_DIR)
    SCREENSHOTS_DIR.mkdir(parents=True)
    return SCREENSHOTS_DIR


def _new_context(browser, running: RunningApp, storage_state: dict | None = None, **options):
    options.setdefault("viewport", {"width": 1280, "height": 900})
    context = browser.new_context(
        base_url=running.base_url, timezone_id=BROWSER_TIMEZONE, locale="en-US", storage_state=storage_state,
        **options,
    )
    context.set_default_timeout(15_000)
    return context


def sign_in(page, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> None:
    """Fill and submit the login form the way a person does."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture(scope="package")
def signed_in_state(chromium_browser, mailapp_server: RunningApp) -> dict:
    """The cookies of one sign-in, reused by every test's fresh context (login is rate limited)."""
    context = _new_context(chromium_browser, mailapp_server)
    page = context.new_page()
    sign_in(page)
    page.wait_for_url(mailapp_server.url("/"))
    state = context.storage_state()
    context.close()
    return state


def _page_fixture(request: pytest.FixtureRequest, context, name: str, shots: Path):
    page = context.new_page()
    yield page
    if request.node.stash.get(_call_failed, False):
        page.screenshot(path=str(shots / f"FAILED-{request.node.name}-{name}.png"), full_page=True)
    context.close()


@pytest.fixture
def page(request: pytest.FixtureRequest, chromium_browser, mailapp_server: RunningApp,
         signed_in_state: dict, screenshots_dir: Path):
    """A signed-in page in a fresh browser context."""
    context = _new_context(chromium_browser, mailapp_server, signed_in_state)
    yield from _page_fixture(request, context, "page", screenshots_dir)


@pytest.fixture
def anonymous_page(request: pytest.FixtureRequest, chromium_browser, mailapp_server: RunningApp,
                   screenshots_dir: Path):
    """A page in a fresh context with no session: a stranger at the door."""
    context = _new_context(chromium_browser, mailapp_server)
    yield from _page_fixture(request, context, "anonymous", screenshots_dir)


@pytest.fixture
def reader_page(request: pytest.FixtureRequest, chromium_browser, mailapp_server: RunningApp,
                screenshots_dir: Path):
    """A subscriber reading their mail in a desktop browser: no dashboard session, and a person's user
    agent (headless Chromium's own is, rightly, counted as a machine by the open tracking)."""
    context = _new_context(chromium_browser, mailapp_server, user_agent=READER_USER_AGENT,
                           viewport={"width": 1024, "height": 700})
    yield from _page_fixture(request, context, "reader", screenshots_dir)


@pytest.fixture
def screenshot(screenshots_dir: Path) -> Callable[..., Path]:
    """Saves a full-page screenshot under tests/e2e/screenshots/<name>.png, for a look by eye."""

    def take(page, name: str) -> Path:
        path = screenshots_dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
