"""The README's production recipe, as a newcomer follows it: on a fresh copy of the repository (no
`instance/`, nothing `make run` would have made), run the commands of the README's production block
against a PostgreSQL database and the Redis of CELERY_BROKER_URL, and check that after 10 s every
Procfile process still runs and the web process serves the login page.

The commands are read from the README, so the test and the text cannot drift apart. The exports in that
block are examples (db.internal, smtp.example.com); the test gives each variable a local value."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sibling_database import create_sibling_database
from tests.smtp import SMTPTestServer, _free_port

pytestmark = pytest.mark.postgres

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
STAY_UP_SECONDS = 10
STARTUP_TIMEOUT = 60
PROCFILE_PROCESSES = ("web", "worker", "scheduler", "beat", "inbound")
WHERE_IT_RUNS = "the PostgreSQL + Redis pass (CI's second, or `make test` with DATABASE_URL) runs it"


def production_block() -> list[str]:
    """The shell lines of the README's production recipe: its first ```sh block."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Production", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "the README's production section has no ```sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def fresh_copy(destination: Path) -> None:
    """The repository's tracked files, as a clone has them (uncommitted edits included, so a developer
    tests what they are about to commit); nothing ignored, no `instance/`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not in a clone either
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


@pytest.fixture
def recipe_database() -> Iterator[str]:
    """`<DATABASE_URL's database>_recipe`, created empty and dropped afterwards."""
    configured = os.environ.get("DATABASE_URL", "")
    if not configured.startswith(("postgres://", "postgresql")):
        pytest.skip(f"the production recipe needs PostgreSQL (DATABASE_URL); {WHERE_IT_RUNS}")
    url, drop = create_sibling_database(configured, "recipe")
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def redis_broker() -> str:
    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis"):
        pytest.skip(f"the production recipe needs Redis (CELERY_BROKER_URL); {WHERE_IT_RUNS}")
    return url


def recipe_environment(exported: list[str], workdir: Path, **values: str) -> dict[str, str]:
    """The operator's environment: what the README exports, with local values for this machine."""
    # None of the developer's own mailapp settings (MAIL_*, MAILAPP_*, the suite's URLs) leak in.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MAIL", "FLASK_"))}
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "PUBLIC_URL", "SECRET_KEY"):
        env.pop(name, None)
    unknown = sorted(set(exported) - set(values))
    assert not unknown, f"the README's recipe exports {unknown}: give them a local value in this test"
    env.update({name: value for name, value in values.items() if value})
    # The venv's tools first, as after `make install`; no new venv.
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    # gunicorn's control socket defaults to one path per user: not shared with other servers here.
    env["XDG_RUNTIME_DIR"] = str(workdir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_for_login_page(port: int, honcho: subprocess.Popen, log: Path) -> int:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if honcho.poll() is not None:
            raise AssertionError(f"honcho exited with {honcho.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as response:  # loopback
                return response.status
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the web process did not answer within {STARTUP_TIMEOUT}s:\n{_tail(log)}")
        time.sleep(0.2)


# Celery logs a traceback's caret lines one warning each; they bury the error itself.
_CARETS = re.compile(r"\] [\^~ ]+$")


def _tail(log: Path, lines: int = 80) -> str:
    content = [line for line in log.read_text(errors="replace").splitlines() if not _CARETS.search(line)]
    return "\n".join(content[-lines:])


def _stop(honcho: subprocess.Popen, log: Path) -> None:
    """honcho stops its processes on SIGTERM; each runs in a session of its own, so any left behind is
    killed by its process group."""
    children = [int(pid) for pid in re.findall(r"started \(pid=(\d+)\)", log.read_text(errors="replace"))]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(honcho.pid, signal.SIGTERM)
    try:
        honcho.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(honcho.pid, signal.SIGKILL)
        honcho.wait(timeout=10)
    for pid in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def test_the_readmes_production_recipe_keeps_every_process_running_on_a_fresh_clone(
    redis_broker: str, recipe_database: str
) -> None:
    lines = production_block()
    exported = [name for line in lines if line.startswith("export ") for name in re.findall(r"(\w+)=", line)]
    # `make install && . .venv/bin/activate`: the suite's own venv, first on PATH below, stands for it
    # (a new venv would download every requirement).
    assert lines[0].startswith("make install"), f"the recipe should start by installing: {lines[0]}"
    commands = [shlex.split(line, comments=True) for line in lines[1:] if not line.startswith("export ")]
    commands = [command for command in commands if command]
    assert commands[-1][:2] == ["honcho", "start"], f"the recipe should end by starting honcho: {commands}"
    assert set(PROCFILE_PROCESSES) <= set(commands[-1][2:]), commands[-1]

    # Not pytest's tmp_path: several pytest sessions share this machine and prune each other's.
    workdir = Path(tempfile.mkdtemp(prefix="mailapp-recipe-"))
    clone = workdir / "mailapp"
    smtp = SMTPTestServer()
    smtp.start()
    port = _free_port()
    try:
        fresh_copy(clone)
        assert not (clone / "instance").exists()
        env = recipe_environment(
            exported, workdir,
            MAILAPP_ENV="production", SECRET_KEY="recipe-secret-key-" + "x" * 32,
            DATABASE_URL=recipe_database, CELERY_BROKER_URL=redis_broker,
            PUBLIC_URL="https://news.example.com",
            MAIL_SERVER="127.0.0.1", MAIL_PORT=str(smtp.port), MAIL_USE_TLS="false",
            MAIL_USERNAME="", MAIL_PASSWORD="",
            PORT=str(port), BOUNCE_DOMAIN="bounce.example.com", INBOUND_SMTP_PORT=str(_free_port()),
        )
        for command in commands[:-1]:
            done = subprocess.run(
                command, cwd=clone, env=env, capture_output=True, text=True, timeout=180, check=False
            )
            assert done.returncode == 0, f"{shlex.join(command)} failed:\n{done.stdout}\n{done.stderr}"

        log = workdir / "honcho.log"
        with log.open("wb") as output:
            honcho = subprocess.Popen(
                commands[-1], cwd=clone, env=env, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            assert _wait_for_login_page(port, honcho, log) == 200
            time.sleep(STAY_UP_SECONDS)
            output = log.read_text(errors="replace")
            stopped = re.findall(r"^.*\b\w+\.\d+ stopped \(rc=.*$", output, re.MULTILINE)
            assert not stopped, f"a process exited:\n{_tail(log)}"
            assert honcho.poll() is None, f"honcho exited:\n{_tail(log)}"
            for name in PROCFILE_PROCESSES:
                assert re.search(rf"\b{name}\.1 started", output), f"{name} never started:\n{_tail(log)}"
            assert re.search(r"beat: Starting", output), f"beat did not start:\n{_tail(log)}"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as response:  # loopback
                assert response.status == 200
        finally:
            _stop(honcho, log)
        assert (clone / "instance" / "celerybeat-schedule").exists() or any(
            (clone / "instance").glob("celerybeat-schedule*")
        ), "beat kept its schedule somewhere other than the instance folder"
    finally:
        smtp.stop()
        shutil.rmtree(workdir, ignore_errors=True)
