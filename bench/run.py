"""The benchmark harness behind `make bench`: runs every bench module several times, writes the medians.

    .venv/bin/python -m bench.run [--scale full|smoke] [--runs 3] [--only baselines,bench_send] [--install]

It starts its own SMTP sink (Postfix's smtp-sink on a free loopback port), runs the baselines and every
system benchmark round-robin in the same process run, so that each ratio compares figures taken under the
same machine load, and writes bench/results/results.json and bench/results/results.md.

A bench module is `bench/<name>.py` with `run(scale: str) -> list[dict]` (rows from bench.common) and an
optional `RUNS` (the most runs it wants: a slow one can ask for fewer). A module that does not exist yet
is reported as "not available"; one that raises is reported as an error row; neither stops the others.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # after the sys.path fix above
    BENCH_DATABASE_ENV,
    BENCH_REDIS_ENV,
    DEFAULT_BENCH_DATABASE,
    DEFAULT_BENCH_REDIS,
    RESULTS_DIR,
    ROOT,
    SCALES,
    Row,
    combine_runs,
    find_tool,
    machine_description,
    markdown_table,
    result_row,
    row_problems,
    running_sink,
    unavailable_row,
    write_results,
)

# The baselines first in each round, then the system; modules found later in bench/ run after these.
MODULES = (
    "baselines", "bench_send", "bench_send_memory", "bench_import", "bench_pixel", "bench_pixel_send",
    "bench_dashboard", "bench_schedule",
)
TOOLS = {"smtp-sink": "postfix", "smtp-source": "postfix", "wrk": "wrk"}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def module_names() -> list[str]:
    found = sorted(path.stem for path in (ROOT / "bench").glob("bench_*.py"))
    return list(MODULES) + [name for name in found if name not in MODULES]


def ensure_tools() -> list[str]:
    """Install smtp-sink/smtp-source (Postfix) and wrk from Debian when missing; returns what still is.

    Postfix is preseeded to "No configuration", so no mail daemon is set up; if the install started one
    anyway, it is stopped again.
    """
    missing = sorted({package for tool, package in TOOLS.items() if not find_tool(tool)})
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"installing {' '.join(missing)} from Debian")
        if "postfix" in missing:
            subprocess.run(
                ["debconf-set-selections"],
                input=b"postfix postfix/main_mailer_type select No configuration\n",
                check=True,
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
        if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=False)
            subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=False)
        if "postfix" in missing:
            _stop_postfix_daemon()
    elif missing:
        log(f"not root: install {' '.join(missing)} yourself (apt-get install {' '.join(missing)})")
    return sorted({tool for tool in TOOLS if not find_tool(tool)})


def _stop_postfix_daemon() -> None:
    postfix = find_tool("postfix")
    if postfix and subprocess.run([postfix, "status"], capture_output=True).returncode == 0:
        log("stopping the Postfix daemon the package install started")
        subprocess.run([postfix, "stop"], capture_output=True, check=False)


def ensure_postgres_database(url: str) -> None:
    """CREATE DATABASE for url's database name unless it exists (the server's `postgres` db answers)."""
    from sqlalchemy import create_engine, text

    from config import database_url

    server, name = url.split("?")[0].rsplit("/", 1)
    engine = create_engine(database_url(f"{server}/postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            exists = text("SELECT 1 FROM pg_database WHERE datname = :name")
            if connection.execute(exists, {"name": name}).first() is None:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


@contextlib.contextmanager
def full_scale_environment(scale: str) -> Iterator[dict[str, str]]:
    """At full scale, modules that follow DATABASE_URL / CELERY_BROKER_URL (the import and send benches)
    get PostgreSQL and Redis unless the caller set them: a `<bench db>_app` database next to the
    dashboard's, and the bench Redis db. Both databases are created if missing. Restored afterwards."""
    chosen: dict[str, str] = {}
    if scale == "full":
        bench_db = os.environ.get(BENCH_DATABASE_ENV) or DEFAULT_BENCH_DATABASE
        # The dashboard and segment benches fill this one; a fresh machine has neither.
        ensure_postgres_database(bench_db)
        if not os.environ.get("DATABASE_URL"):
            chosen["DATABASE_URL"] = bench_db.split("?")[0] + "_app"
            ensure_postgres_database(chosen["DATABASE_URL"])
        if not os.environ.get("CELERY_BROKER_URL"):
            chosen["CELERY_BROKER_URL"] = os.environ.get(BENCH_REDIS_ENV) or DEFAULT_BENCH_REDIS
    os.environ.update(chosen)
    try:
        yield chosen
    finally:
        for key in chosen:
            os.environ.pop(key, None)


def load_module(name: str) -> ModuleType | Row:
    """The bench module, or a row saying why it is not available."""
    try:
        return importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as error:
        if error.name == f"bench.{name}":
            return unavailable_row(name, "", f"bench/{name}.py does not exist yet")
        return _error_row(name, error)
    except Exception as error:  # one broken module must not stop the others
        return _error_row(name, error)


def _error_row(name: str, error: BaseException) -> Row:
    last = traceback.format_exception_only(type(error), error)[-1].strip()
    return result_row(f"{name}: error", None, "", notes=f"error: {last}")


def run_module(name: str, module: ModuleType, scale: str) -> list[Row]:
    """One run of one module; exceptions and malformed rows become error rows naming the module."""
    try:
        rows = module.run(scale)
    except Exception as error:  # report it in the table and carry on
        traceback.print_exc(file=sys.stderr)
        return [_error_row(name, error)]
    if not isinstance(rows, list):
        return [result_row(f"{name}: error", None, "", notes=f"error: run() returned {type(rows).__name__}")]
    checked = []
    for row in rows:
        problems = row_problems(row)
        if problems:
            label = row.get("name") if isinstance(row, dict) else repr(row)
            checked.append(result_row(f"{name}: malformed row", None, "",
                                      notes=f"error: {label}: {'; '.join(problems)}"))  # fmt: skip
        else:
            checked.append(row)
    return checked


def run_benchmarks(
    scale: str = "full",
    runs: int = 3,
    only: list[str] | None = None,
    out_dir: Path = RESULTS_DIR,
    command: str = "",
) -> tuple[list[Row], dict]:
    """Run the modules round-robin `runs` times inside one sink, write the results, return (rows, meta)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}")
    started, clock = datetime.now(UTC), time.monotonic()
    load_at_start = os.getloadavg()[0]
    names = [name for name in module_names() if not only or name in only]
    loaded = {name: load_module(name) for name in names}
    missing_tools = sorted(tool for tool in TOOLS if not find_tool(tool))
    rows_per_run: list[list[Row]] = []
    with full_scale_environment(scale) as chosen, running_sink() as sink:
        log(f"scale={scale} runs={runs} sink: {sink.description}; environment: {chosen or 'as given'}")
        for round_number in range(runs):
            rows: list[Row] = []
            for name, module in loaded.items():
                if not isinstance(module, ModuleType):
                    if round_number == 0:
                        rows.append(module)
                    continue
                wanted = getattr(module, "RUNS", None)
                if wanted is not None and round_number >= max(1, int(wanted)):
                    continue
                log(f"run {round_number + 1}/{runs}: {name}")
                module_clock = time.monotonic()
                rows.extend(run_module(name, module, scale))
                log(f"{name} took {time.monotonic() - module_clock:.1f} s")
            rows_per_run.append(rows)
        sink_description = sink.description
    combined = combine_runs(rows_per_run)
    meta = {
        "command": command or f"python -m bench.run --scale {scale} --runs {runs}",
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": time.monotonic() - clock,
        "machine": machine_description(),
        "scale": scale,
        "runs": runs,
        "sink": sink_description,
        "environment": chosen,
        # Other work on a shared 2-core machine skews every figure; this says how busy it was.
        "load_average": f"{load_at_start:.1f} / {os.getloadavg()[0]:.1f}",
        "missing_tools": missing_tools,
        "modules": {name: "ok" if isinstance(m, ModuleType) else m["notes"] for name, m in loaded.items()},
    }
    write_results(combined, meta, out_dir)
    return combined, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="full")
    parser.add_argument("--runs", type=int, default=None, help="runs per module (default: 3 full, 1 smoke)")
    parser.add_argument("--only", default="", help="comma-separated module names, e.g. baselines,bench_send")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--install", action="store_true", help="apt-get install smtp-sink/source and wrk")
    args = parser.parse_args(argv)
    # A TERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the sink and the modules' servers are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    runs = args.runs or (3 if args.scale == "full" else 1)
    if args.install:
        still_missing = ensure_tools()
        if still_missing:
            log(f"still missing: {', '.join(still_missing)}; their rows will say not available")
    only = [name.strip() for name in args.only.split(",") if name.strip()] or None
    command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
    rows, meta = run_benchmarks(args.scale, runs, only, args.out, command=command.strip())
    print(markdown_table(rows))
    print(f"wrote {args.out / 'results.md'} and {args.out / 'results.json'} in {meta['duration_s']:.0f} s")
    broken = [row["name"] for row in rows if str(row.get("notes", "")).startswith("error:")]
    if broken:
        log(f"errors in: {', '.join(broken)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
