"""Shared pieces of the benchmarks: result rows, the SMTP sink, memory measurement, and the results files.

Every bench module exposes `run(scale) -> list[dict]` (scale "smoke" or "full"); each dict is a row made
by `result_row` (or `unavailable_row` when a tool or a feature is missing). `bench/run.py` runs them all,
several times, and writes the medians with `write_results`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
SCALES = ("smoke", "full")

# The env vars the harness sets for the modules that send into the sink.
SINK_HOST_ENV = "MAILAPP_BENCH_SINK_HOST"
SINK_PORT_ENV = "MAILAPP_BENCH_SINK_PORT"
SINK_KIND_ENV = "MAILAPP_BENCH_SINK_KIND"

# Baseline rows other modules can name in their "baseline" field; bench/run.py fills in their median.
BASELINE_FLASK_MAIL = "baseline: Flask-Mail loop"
BASELINE_SMTPLIB = "baseline: smtplib + EmailMessage"
BASELINE_NEW_CONNECTION = "baseline: new connection per message"
CEILING_ONE = "ceiling: smtp-source, 1 connection"
CEILING_FOUR = "ceiling: smtp-source, 4 connections"

REQUIRED_KEYS = ("name", "value", "unit", "baseline", "baseline_value", "ratio", "target")
OPTIONAL_NUMBERS = ("p99_ms", "peak_rss_mb")

Row = dict[str, Any]


def result_row(
    name: str,
    value: float | None,
    unit: str,
    *,
    baseline: str | None = None,
    baseline_value: float | None = None,
    target: str | None = None,
    notes: str = "",
    **extra: Any,
) -> Row:
    """One result. `target` is a small expression such as ">= 2000", ">= 6x", "p99 < 50", "rss < 250"."""
    ratio = value / baseline_value if value is not None and baseline_value else None
    row: Row = {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": ratio,
        "target": target,
        "notes": notes,
    }
    row.update({key: val for key, val in extra.items() if val is not None})
    return row


def unavailable_row(name: str, unit: str, reason: str, *, target: str | None = None) -> Row:
    """A row for something that could not be measured in this run, and why."""
    return result_row(name, None, unit, target=target, notes=f"not available: {reason}")


def row_problems(row: Any) -> list[str]:
    """What is wrong with a result row; empty when it is well-formed."""
    if not isinstance(row, dict):
        return [f"row is a {type(row).__name__}, not a dict"]
    problems = [f"missing key {key!r}" for key in REQUIRED_KEYS if key not in row]
    if problems:
        return problems
    if not isinstance(row["name"], str) or not row["name"]:
        problems.append("name must be a non-empty string")
    if not isinstance(row["unit"], str):
        problems.append("unit must be a string")
    for key in ("value", "baseline_value", "ratio", *OPTIONAL_NUMBERS):
        value = row.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(f"{key} must be a number or null, not {value!r}")
    for key in ("baseline", "target", "notes"):
        value = row.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{key} must be a string or null")
    if row["value"] is None and not str(row.get("notes") or "").strip():
        problems.append("a row without a value must say why in notes")
    return problems


# --- targets -----------------------------------------------------------------------------------------

_CLAUSE = re.compile(
    r"^\s*(?P<field>p99|p95|rss|peak_rss|ratio|value)?\s*(?P<op><=|>=|<|>|=)\s*"
    r"(?P<number>[0-9][0-9_,]*(?:\.[0-9]+)?)\s*(?P<suffix>x|%)?",
    re.IGNORECASE,
)
_OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "=": lambda a, b: a == b,
}


def target_met(row: Row) -> bool | None:
    """Whether the row meets its target; None when there is no target, no value, or it cannot be read.

    A target is clauses joined by "and" or ",". Each compares the value, or with a suffix "x" or "%" the
    ratio to the baseline, or with a prefix "p99" / "rss" the p99_ms / peak_rss_mb field:
    ">= 2000 and >= 6x", "< 200", "p99 < 50", "rss < 250", ">= 80%".
    """
    target = row.get("target")
    if not target or row.get("value") is None:
        return None
    verdicts = []
    for clause in re.split(r",|\band\b", target):
        if not clause.strip():
            continue
        match = _CLAUSE.match(clause)
        if not match:
            return None
        number = float(match["number"].replace(",", "").replace("_", ""))
        field = (match["field"] or "value").lower()
        suffix = match["suffix"]
        if suffix == "%":
            number /= 100
        if suffix or field == "ratio":
            actual = row.get("ratio")
        elif field in ("p99", "p95"):
            actual = row.get("p99_ms") if field == "p99" else row.get("value")
        elif field in ("rss", "peak_rss"):
            # A row whose value is itself the peak RSS (unit MB) may leave peak_rss_mb out.
            actual = row.get("peak_rss_mb")
            if actual is None and str(row.get("unit", "")).lower() == "mb":
                actual = row.get("value")
        else:
            actual = row.get("value")
        if actual is None:
            return None
        verdicts.append(_OPS[match["op"]](actual, number))
    return all(verdicts) if verdicts else None


# --- medians over runs -------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def combine_runs(rows_per_run: list[list[Row]]) -> list[Row]:
    """Median of every numeric field per row name across runs (peak RSS: the maximum), in first-seen order.

    Rows naming another row as "baseline" without a baseline_value get that row's median; ratios are
    recomputed from the medians, so every ratio compares figures measured in the same benchmark run.
    """
    by_name: dict[str, list[Row]] = {}
    for rows in rows_per_run:
        for row in rows:
            by_name.setdefault(row["name"], []).append(row)
    combined: list[Row] = []
    for runs in by_name.values():
        last = runs[-1]
        values = [row.get("value") for row in runs]
        row = dict(last)
        row["value"] = _median(values)
        row["baseline_value"] = _median([r.get("baseline_value") for r in runs])
        for key in ("p99_ms", "p95_ms"):
            if any(key in r for r in runs):
                row[key] = _median([r.get(key) for r in runs])
        if any("peak_rss_mb" in r for r in runs):
            peaks = [r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb") is not None]
            row["peak_rss_mb"] = max(peaks) if peaks else None
        row["runs"] = values
        notes = [r.get("notes") for r in runs if r.get("notes")]
        row["notes"] = notes[-1] if row["value"] is None and notes else (last.get("notes") or "")
        combined.append(row)
    medians = {row["name"]: row["value"] for row in combined}
    for row in combined:
        named = resolve_baseline(row.get("baseline"), list(medians))
        if row["baseline_value"] is None and named is not None:
            row["baseline"] = named
            row["baseline_value"] = medians[named]
        value, base = row["value"], row["baseline_value"]
        row["ratio"] = value / base if value is not None and base else None
        row["met"] = target_met(row)
    return combined


def resolve_baseline(baseline: str | None, names: list[str]) -> str | None:
    """The row a "baseline" field names: exactly, ignoring case, or by the words of the baseline
    constants ("Flask-Mail loop", "smtp-source 4 connections"), so a module need not import them."""
    if not baseline:
        return None
    if baseline in names:
        return baseline
    wanted = re.sub(r"[^a-z0-9]+", " ", baseline.lower()).strip()
    for name in names:
        if re.sub(r"[^a-z0-9]+", " ", name.lower()).strip() == wanted:
            return name
    words = set(wanted.split())
    if "ceiling" in words or "source" in words:
        guess = CEILING_FOUR if words & {"4", "four"} else CEILING_ONE
    elif "flask" in words:
        guess = BASELINE_FLASK_MAIL
    elif "smtplib" in words:
        guess = BASELINE_NEW_CONNECTION if words & {"new", "per"} else BASELINE_SMTPLIB
    else:
        return None
    return guess if guess in names else None


# --- the results files -------------------------------------------------------------------------------


def _fmt(value: Any, *, ratio: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if ratio:
            return f"{value:.2f}×"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown_table(rows: list[Row]) -> str:
    extra = [key for key in ("p99_ms", "peak_rss_mb") if any(row.get(key) is not None for row in rows)]
    header = ["name", "value", "unit", "baseline", "baseline value", "ratio", "target", "met?"]
    header += [{"p99_ms": "p99 ms", "peak_rss_mb": "peak RSS MB"}[key] for key in extra] + ["notes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        met = row.get("met", target_met(row))
        cells = [
            row["name"],
            _fmt(row["value"]),
            row["unit"],
            row.get("baseline") or "—",
            _fmt(row.get("baseline_value")),
            _fmt(row.get("ratio"), ratio=True),
            row.get("target") or "—",
            {True: "yes", False: "**no**", None: "—"}[met],
            *[_fmt(row.get(key)) for key in extra],
            str(row.get("notes") or ""),
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(rows: list[Row], meta: dict[str, Any], directory: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Write results.json and results.md; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "results.json", directory / "results.md"
    json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str) + "\n")
    heading = [
        "# mailapp benchmark results",
        "",
        f"- command: `{meta.get('command', '')}`",
        f"- when: {meta.get('started_at', '')} ({meta.get('duration_s', 0):.0f} s)",
        f"- machine: {meta.get('machine', '')}",
        f"- scale: {meta.get('scale')}, runs: {meta.get('runs')} (medians; peak RSS is the maximum)",
        f"- sink: {meta.get('sink', '')}",
        f"- environment set for the modules: {meta.get('environment') or 'as given'}",
        f"- load average (1 min) at start / end: {meta.get('load_average', '?')}",
        "",
        "",
    ]
    md_path.write_text("\n".join(heading) + markdown_table(rows))
    return json_path, md_path


# --- the SMTP sink -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_tool(name: str) -> str | None:
    """A Postfix or system tool by name, also where Debian puts it (/usr/sbin is not always on PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class Sink:
    host: str
    port: int
    kind: str  # "smtp-sink", or "aiosmtpd" when Postfix's smtp-sink is not installed

    @property
    def description(self) -> str:
        if self.kind == "smtp-sink":
            return f"Postfix smtp-sink on {self.host}:{self.port}"
        return f"aiosmtpd fallback on {self.host}:{self.port} (smtp-sink absent: figures not comparable)"


@contextlib.contextmanager
def running_sink(allow_fallback: bool = True) -> Iterator[Sink]:
    """Postfix's smtp-sink on a free loopback port, exported through MAILAPP_BENCH_SINK_HOST/PORT.

    Without smtp-sink (CI's smoke run installs nothing) an in-process aiosmtpd server that accepts
    everything stands in, so the code paths still run; its figures are not comparable.
    """
    host, port = "127.0.0.1", free_port()
    binary = find_tool("smtp-sink")
    saved = {key: os.environ.get(key) for key in (SINK_HOST_ENV, SINK_PORT_ENV, SINK_KIND_ENV)}
    process = controller = None
    if binary:
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
        # -u: smtp-sink insists on dropping privileges; 1000: listen backlog; -m: concurrent sessions.
        process = subprocess.Popen(
            [binary, "-u", user, "-m", "1000", f"{host}:{port}", "1000"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        kind = "smtp-sink"
    elif allow_fallback:
        controller = _start_fallback_sink(host, port)
        kind = "aiosmtpd"
    else:
        raise RuntimeError("smtp-sink is not installed (Debian package postfix)")
    try:
        wait_for_port(host, port)
        os.environ.update({SINK_HOST_ENV: host, SINK_PORT_ENV: str(port), SINK_KIND_ENV: kind})
        yield Sink(host, port, kind)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if controller is not None:
            controller.stop()


def _start_fallback_sink(host: str, port: int):  # an aiosmtpd Controller
    from aiosmtpd.controller import Controller

    class AcceptAll:
        async def handle_DATA(self, server, session, envelope) -> str:
            return "250 2.0.0 Ok: queued"

    controller = Controller(AcceptAll(), hostname=host, port=port, data_size_limit=0)
    controller.start()
    return controller


def sink_address() -> tuple[str, int]:
    """Where the harness's sink listens (for modules run under bench/run.py)."""
    host = os.environ.get(SINK_HOST_ENV)
    port = os.environ.get(SINK_PORT_ENV)
    if not host or not port:
        raise RuntimeError(f"no SMTP sink: run under bench/run.py, or set {SINK_HOST_ENV}/{SINK_PORT_ENV}")
    return host, int(port)


def sink_note() -> str:
    return "" if os.environ.get(SINK_KIND_ENV, "smtp-sink") == "smtp-sink" else "aiosmtpd fallback sink"


# --- memory ------------------------------------------------------------------------------------------


def peak_rss_mb_self() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mb_children() -> float:
    """Largest peak RSS of any child process this process has waited for."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def peak_rss_mb_of(pid: int) -> float | None:
    """Peak RSS (VmHWM) of a running process, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (for a Celery worker: its pool processes)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]


def machine_description() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores {cpu}, Python {sys.version.split()[0]}".strip()


def timed(fn, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """(fn's result, seconds it took)."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction 0.95 for p95) of a non-empty sample."""
    ordered = sorted(samples)
    index = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


# --- an app on the bench's own database ---------------------------------------------------------------

BENCH_DATABASE_ENV = "MAILAPP_BENCH_DATABASE_URL"
BENCH_REDIS_ENV = "MAILAPP_BENCH_REDIS_URL"
DEFAULT_BENCH_DATABASE = "postgresql://postgres@127.0.0.1/mailapp_bench"
DEFAULT_BENCH_REDIS = "redis://127.0.0.1:6379/6"


def bench_app(database: str, broker: str, workdir: Path, **overrides: Any):  # a Flask app
    """The mailapp app on the given database and broker, with throwaway paths under workdir."""
    from config import Config, database_url
    from mailapp import create_app

    class BenchConfig(Config):
        SECRET_KEY = "bench-secret-key"  # noqa: S105 - benchmarks only
        WTF_CSRF_ENABLED = False

    config = BenchConfig()
    config.SQLALCHEMY_DATABASE_URI = database_url(database)
    config.CELERY_BROKER_URL = broker
    config.REDIS_URL = broker if broker.startswith("redis") else ""
    config.DEVINBOX_DIR = str(workdir / "devinbox")
    config.UPLOAD_DIR = str(workdir / "uploads")
    config.DEVINBOX_ENABLED = False
    for key, value in overrides.items():
        setattr(config, key, value)
    return create_app(config)
