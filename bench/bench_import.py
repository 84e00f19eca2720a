"""Benchmark: CSV import end to end (upload saved, task run, import marked done) against a bare COPY.

`run("smoke")` imports 2,000 rows into whatever DATABASE_URL names (SQLite by default); `run("full")`
imports 1,000,000 rows (email, name, 3 attributes) and needs PostgreSQL. Each measurement runs in a
child process, so its peak RSS is the import's alone. The baseline is a bare COPY of the same file into
an unindexed table on PostgreSQL (csv.reader + executemany into one on SQLite), timed in the same run.

Run it alone: `DATABASE_URL=postgresql://... .venv/bin/python -m bench.bench_import full`
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCALE_ROWS = {"smoke": 2_000, "full": 1_000_000}
TARGET_ROWS_PER_S = 50_000
CITIES = ["Paris", "Berlin", "Lisbon", "Oslo", "Kraków", "Montréal", "Osaka", "Lagos"]
PLANS = ["free", "pro", "team"]
# Set for a child importing into a database dropped afterwards: its rows are left where they are.
THROWAWAY_DATABASE_ENV = "MAILAPP_BENCH_THROWAWAY_DATABASE"


def write_csv(path: Path, rows: int, run_id: str) -> None:
    rng = random.Random(rows)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name,city,plan,score\r\n")
        for n in range(rows):
            out.write(
                f"person{n}.{run_id}@example.com,Person {n},{rng.choice(CITIES)},"
                f"{rng.choice(PLANS)},{rng.randrange(1000)}\r\n"
            )


def _child_app():  # a Flask app, imported lazily in the child only
    from flask_migrate import upgrade

    from config import DevelopmentConfig
    from mailapp import create_app

    config = DevelopmentConfig()
    config.SECRET_KEY = "bench-secret-key"  # noqa: S105 - benchmarks only; the class has no key of its own
    config.UPLOAD_DIR = tempfile.mkdtemp(prefix="mailapp-bench-uploads-")
    app = create_app(config)
    with app.app_context():
        upgrade()
    return app


def child_import(csv_path: Path, run_id: str) -> dict[str, Any]:
    """Upload (stream to UPLOAD_DIR, inspect, record), then the task body, timed together."""
    from sqlalchemy import delete, select

    from mailapp.extensions import db
    from mailapp.models.subscriber import Subscriber
    from mailapp.subscribers import imports, subscriber_lists

    app = _child_app()
    with app.app_context():
        target = subscriber_lists.create_list(f"bench import {run_id}")
        db.session.commit()
        list_id = target.id
        backends_before = _postgres_cpu_seconds()
        cpu_before = _own_cpu_seconds()
        started = time.perf_counter()
        with csv_path.open("rb") as upload:
            record = imports.start_import(target, csv_path.name, upload)
        db.session.commit()
        import_id = record.id
        imports.run_import(import_id)
        elapsed = time.perf_counter() - started
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the clean-up
        own_cpu = _own_cpu_seconds() - cpu_before
        backends_cpu = _postgres_cpu_seconds() - backends_before
        record = imports.get_import(import_id)
        result = imports.import_to_dict(record)
        # Leave the database as it was (unless it is a throwaway copy, see import_schema_costs.py).
        if not os.environ.get(THROWAWAY_DATABASE_ENV):
            db.session.execute(
                delete(Subscriber).where(Subscriber.email.like(f"%.{run_id}@example.com")),
                execution_options={"synchronize_session": False},
            )
            subscriber_lists.delete_list(subscriber_lists.get_list(list_id))
            db.session.delete(record)
            db.session.commit()
            assert db.session.scalar(
                select(Subscriber.id).where(Subscriber.email.like(f"%.{run_id}@%"))) is None
    return {
        "seconds": elapsed,
        "import": {key: result[key] for key in ("status", "processed", "imported", "updated", "skipped",
                                                "invalid", "failure")},
        "peak_rss_mb": peak_rss_mb,
        "python_cpu_s": own_cpu,
        "postgres_cpu_s": backends_cpu,
    }


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _postgres_cpu_seconds() -> float:
    """CPU used so far by this database's server processes (local server, /proc readable), so the
    report can say where the time went even on a busy machine. 0.0 elsewhere."""
    from sqlalchemy import text

    from mailapp.db_setup import is_postgres
    from mailapp.extensions import db

    if not is_postgres():
        return 0.0
    pids = db.session.scalars(
        text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    ).all()
    db.session.rollback()
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def child_baseline(csv_path: Path) -> dict[str, Any]:
    """The floor: the same bytes into an unindexed table, with nothing checked."""
    import csv

    from sqlalchemy import create_engine

    from config import Config

    engine = create_engine(Config.SQLALCHEMY_DATABASE_URI)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "CREATE TEMP TABLE bare_copy (email text, name text, city text, plan text, score text)"
            )
            started = time.perf_counter()
            cursor = connection.connection.cursor()
            with csv_path.open(encoding="utf-8") as source:
                cursor.copy_expert("COPY bare_copy FROM STDIN WITH (FORMAT csv, HEADER true)", source)
        else:
            connection.exec_driver_sql(
                "CREATE TEMP TABLE bare_copy (email text, name text, city text, plan text, score text)"
            )
            started = time.perf_counter()
            with csv_path.open(encoding="utf-8", newline="") as source:
                reader = csv.reader(source)
                next(reader)
                rows = [tuple(row) for row in reader]
                connection.exec_driver_sql("INSERT INTO bare_copy VALUES (?, ?, ?, ?, ?)", rows)
        elapsed = time.perf_counter() - started
    engine.dispose()
    return {"seconds": elapsed, "kind": "bare COPY" if engine.dialect.name == "postgresql"
            else "csv.reader + executemany (SQLite)"}


def _in_child(kind: str, csv_path: Path, run_id: str, env: dict[str, str]) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.bench_import", "--child", kind, str(csv_path), run_id],
        cwd=ROOT, capture_output=True, text=True, check=False, env={**os.environ, **env},
    )
    if output.returncode != 0:
        raise RuntimeError(f"bench_import child {kind} failed:\n{output.stderr[-4000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def run(scale: str) -> list[dict[str, Any]]:
    rows = SCALE_ROWS[scale]
    url = os.environ.get("DATABASE_URL", "")
    if scale == "full" and not url.startswith(("postgres://", "postgresql")):
        raise RuntimeError("the full import benchmark needs DATABASE_URL pointing at PostgreSQL")
    run_id = f"b{os.getpid()}{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="mailapp-bench-import-") as workdir:
        csv_path = Path(workdir) / f"subscribers-{rows}.csv"
        write_csv(csv_path, rows, run_id)
        # Without DATABASE_URL, a throwaway SQLite file rather than the instance database.
        env = {"DATABASE_URL": url or f"sqlite:///{Path(workdir) / 'bench.sqlite'}"}
        baseline = _in_child("baseline", csv_path, run_id, env)
        measured = _in_child("import", csv_path, run_id, env)
    imported = measured["import"]
    if imported["status"] != "done" or imported["imported"] != rows:
        raise RuntimeError(f"the benchmark import did not import every row: {imported}")
    value = rows / measured["seconds"]
    baseline_value = rows / baseline["seconds"]
    label = "1M" if rows == 1_000_000 else f"{rows:,}"
    return [{
        "name": f"csv import {label} rows",
        "value": round(value),
        "unit": "rows/s",
        "baseline": baseline["kind"],
        "baseline_value": round(baseline_value),
        "ratio": value / baseline_value,
        "target": f">= {TARGET_ROWS_PER_S}",
        "peak_rss_mb": round(measured["peak_rss_mb"], 1),
        "notes": f"{rows:,} rows in {measured['seconds']:.2f} s, upload to done; "
                 f"{'PostgreSQL' if url.startswith('postgres') else 'SQLite'}; CPU: Python "
                 f"{measured['python_cpu_s']:.1f} s, PostgreSQL {measured['postgres_cpu_s']:.1f} s; "
                 f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
    }]


def _main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        kind, csv_path, run_id = argv[1], Path(argv[2]), argv[3]
        result = child_import(csv_path, run_id) if kind == "import" else child_baseline(csv_path)
        print(json.dumps(result))
        return
    scale = argv[0] if argv else "smoke"
    for row in run(scale):
        print(json.dumps(row))


if __name__ == "__main__":
    _main(sys.argv[1:])
