"""Throwaway servers and real processes for the fault-injection tests.

Each fault test kills or restarts what it started, never the shared servers: its own PostgreSQL
(initdb + pg_ctl on a temporary data directory and a free port), its own Redis (redis-server on a free
port with no persistence), and real `celery worker` / `celery beat` processes, each in its own process
group so a SIGKILL takes the prefork children down with their parent, as a crashed host would."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.smtp import CapturingHandler, SMTPTestServer

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_BIN = Path(os.environ.get("MAILAPP_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1,
    state: Callable[[], object] | None = None,
) -> object:
    """Poll until predicate() is truthy and return its value; fail saying what did not happen (and, if
    given, the state() of things at that moment)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            found = f"; found {state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{found}")
        time.sleep(interval)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class PostgresServer:
    """A private PostgreSQL cluster. initdb refuses to run as root, so as root it runs as `postgres`
    in a directory that user owns (pytest's tmp_path is not reachable by other users)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="mailapp-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, user="postgres")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(a) for a in args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> None:
        self._run(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self.start()

    def start(self) -> None:
        # Durability is not under test here (the crash is of the client side), so skip the fsyncs.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c fsync=off -c full_page_writes=off"
        )
        result = self._run(PG_BIN / "pg_ctl", "-D", self.data, "-o", options, "-l", self.log, "-w",
                           "start", check=False)
        assert result.returncode == 0, f"PostgreSQL did not start:\n{result.stderr}\n{_tail(self.log)}"

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` aborts every backend without a clean shutdown, like a crash."""
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        self._run(PG_BIN / "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "-c", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    """A private Redis with no persistence at all: a restart comes back empty, as after a flush."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="mailapp-faults-redis-"))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        wait_until(self.ping, 20, "redis-server to answer")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def flushall(self) -> None:
        import redis

        redis.Redis(port=self.port).flushall()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class CountingHandler(CapturingHandler):
    """Counts accepted messages per recipient instead of keeping them: ten thousand parsed messages
    would only slow the test process down."""

    def __init__(self) -> None:
        super().__init__()
        self.received: Counter[str] = Counter()
        self.arrivals: list[float] = []  # time.monotonic() of each accepted message, for rate checks

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.received.update(address.lower() for address in envelope.rcpt_tos)
            self.arrivals.append(time.monotonic())
        return "250 Message accepted for delivery"


class CountingSMTPServer(SMTPTestServer):
    """tests/smtp.py's real SMTP server, counting per recipient. stop()/start() keep the port, so an
    outage looks to the workers like a relay that refuses connections for a while."""

    def __init__(self) -> None:
        super().__init__()
        self.handler = CountingHandler()

    def counts(self) -> Counter[str]:
        with self.handler.lock:
            return Counter(self.handler.received)

    def total(self) -> int:
        with self.handler.lock:
            return sum(self.handler.received.values())

    def arrivals(self) -> list[float]:
        with self.handler.lock:
            return list(self.handler.arrivals)


class CeleryProcess:
    """A `celery worker` or `celery beat` process of our own, started in a new session (process group)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log = workdir / f"{name}.log"
        self.workdir = workdir
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is running"
        self.starts += 1
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        log = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [str(BIN / "celery"), "-A", "wsgi:celery_app", *self.args],
            cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()

    def wait_ready(self, marker: str, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, f"{self.name} exited:\n{_tail(self.log)}"
            with open(self.log, "rb") as log:
                log.seek(self._log_offset)
                return marker.encode() in log.read()

        wait_until(ready, timeout, f"{self.name} to log {marker!r}")

    def kill(self) -> None:
        """SIGKILL the whole process group: the parent and every prefork child die at once."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # children mid-fork when the group was killed
            os.killpg(self.process.pid, signal.SIGKILL)

    def tail(self) -> str:
        return f"--- {self.name} ---\n{_tail(self.log)}"


class Worker(CeleryProcess):
    def __init__(self, index: int, concurrency: int, env: dict[str, str], workdir: Path) -> None:
        super().__init__(
            f"worker{index}",
            ["worker", "--pool", "prefork", "--concurrency", str(concurrency), "--loglevel", "INFO",
             "--hostname", f"worker{index}@%h", "--without-gossip", "--without-mingle"],
            env, workdir,
        )

    def restart(self) -> None:
        self.kill()
        self.start()
        self.wait_ready(" ready.")


class Beat(CeleryProcess):
    def __init__(self, index: int, env: dict[str, str], workdir: Path) -> None:
        super().__init__(
            f"beat{index}",
            ["beat", "--loglevel", "INFO", "--schedule", str(workdir / f"beat{index}-schedule"),
             "--pidfile", ""],
            env, workdir,
        )
