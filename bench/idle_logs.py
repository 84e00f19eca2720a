"""How chatty `make run` is when nothing happens: starts the Procfile's processes (web, worker,
scheduler, beat, devsmtp) under honcho, as `make run` does, on a fresh instance folder and free ports,
waits until the web process answers, counts the log lines of SECONDS idle seconds, then stops honcho
with Ctrl-C (SIGINT) and shows what the stop printed.

    .venv/bin/python -m bench.idle_logs [--seconds 60]

Not a test: it takes a minute and the whole machine's attention. tests/test_idle_logs.py checks the
pieces (which lines are demoted, and that a stop is quiet) in seconds."""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# What `make run` starts (announce where the Procfile has it).
PROCESSES = ["web", "worker", "scheduler", "beat", "devsmtp", "announce"]
# honcho prefixes each line: "18:01:02 worker.1  | text"
HONCHO_LINE = re.compile(r"^\S+ (\w+)\.\d+\s+\| (.*)$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shape(text: str) -> str:
    """A line with its ids, times and numbers blanked, to group repeats."""
    text = re.sub(r"\[[0-9a-f-]{36}\]", "[id]", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:120]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailapp-idle-") as instance:
        env = {
            **os.environ, "MAILAPP_INSTANCE_DIR": instance, "PORT": str(free_port()),
            "MAIL_PORT": str(free_port()), "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1",
        }
        for command in (["db", "upgrade"], ["users", "ensure-admin"], ["broker", "prepare"]):
            subprocess.run([BIN / "flask", "--app", "wsgi", *command], cwd=REPO_ROOT, env=env, check=True,
                           capture_output=True)
        defined = {line.split(":", 1)[0] for line in (REPO_ROOT / "Procfile").read_text().splitlines()}
        honcho = subprocess.Popen(
            [BIN / "honcho", "start", *(name for name in PROCESSES if name in defined)],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        lines: list[tuple[float, str]] = []

        def read() -> None:
            for line in honcho.stdout:
                lines.append((time.monotonic(), line.rstrip("\n")))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        url = f"http://127.0.0.1:{env['PORT']}/login"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        # Let the workers finish starting (their banners are start-up, not idle talk).
        time.sleep(10)
        start = time.monotonic()
        time.sleep(arguments.seconds)
        end = time.monotonic()
        os.killpg(honcho.pid, signal.SIGINT)
        try:
            honcho.wait(timeout=30)
        finally:
            if honcho.poll() is None:
                os.killpg(honcho.pid, signal.SIGKILL)
        reader.join(timeout=5)
    idle = [text for moment, text in lines if start <= moment < end]
    per_process = collections.Counter(
        (match.group(1) if (match := HONCHO_LINE.match(text)) else "?") for text in idle
    )
    shapes = collections.Counter(
        shape(match.group(2) if (match := HONCHO_LINE.match(text)) else text) for text in idle
    )
    stop = [text for moment, text in lines if moment >= end]
    minutes = (end - start) / 60
    print(f"idle log lines: {len(idle)} in {end - start:.0f} s = {len(idle) / minutes:.0f} per minute")
    for name, count in per_process.most_common():
        print(f"  {name:10} {count / minutes:7.1f} per minute")
    print("most repeated:")
    for text, count in shapes.most_common(8):
        print(f"  {count:5}  {text}")
    print(f"on Ctrl-C ({len(stop)} lines, honcho exit code {honcho.returncode}):")
    for text in stop:
        print(f"  {text}")


if __name__ == "__main__":
    main()
