"""What the schema costs the CSV import: the import of bench_import (upload to done, in a child process)
on fresh copies of a migrated PostgreSQL database, with the schema as it is and with parts of it
dropped, each figure as a ratio to the schema as it is in the same run. Also one writer against the
default two, so the parallel writers' gain is measured side by side too.

Not a `make bench` row (it drops constraints, on throwaway databases only); the figures and the
decision they support are in bench/README.md. Databases are named after MAILAPP_BENCH_DATABASE_URL
(+ "_schema_template", "_schema_variant") and dropped at the end.

    MAILAPP_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/mailapp_bench_NAME \\
        .venv/bin/python -m bench.import_schema_costs [--rows 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.bench_import import ROOT, THROWAWAY_DATABASE_ENV, _in_child, write_csv
from bench.common import BENCH_DATABASE_ENV, DEFAULT_BENCH_DATABASE
from config import database_url

LIST_MEMBER_FOREIGN_KEYS = [
    "ALTER TABLE list_members DROP CONSTRAINT fk_list_members_list_id_lists",
    "ALTER TABLE list_members DROP CONSTRAINT fk_list_members_subscriber_id_subscribers",
]
SUBSCRIBER_INDEXES = ["DROP INDEX ix_subscribers_status", "DROP INDEX ix_subscribers_created_at"]
LIST_MEMBER_INDEX = ["DROP INDEX ix_list_members_subscriber_id"]

# name: (statements run on the copy, environment of the import)
VARIANTS: dict[str, tuple[list[str], dict[str, str]]] = {
    "schema as it is, 2 writers": ([], {}),
    "schema as it is, 1 writer": ([], {"IMPORT_WRITERS": "1"}),
    "without the 2 list_members foreign keys": (LIST_MEMBER_FOREIGN_KEYS, {}),
    "without ix_subscribers_status and ix_subscribers_created_at": (SUBSCRIBER_INDEXES, {}),
    "without ix_list_members_subscriber_id": (LIST_MEMBER_INDEX, {}),
    "without all of the above": (LIST_MEMBER_FOREIGN_KEYS + SUBSCRIBER_INDEXES + LIST_MEMBER_INDEX, {}),
}
REFERENCE = "schema as it is, 2 writers"


def _server(url: str):
    return create_engine(make_url(database_url(url)).set(database="postgres"), isolation_level="AUTOCOMMIT")


def _recreate(url: str, template: str | None = None) -> None:
    name = make_url(url).database
    server = _server(url)
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        suffix = f' TEMPLATE "{template}"' if template else ""
        connection.execute(text(f'CREATE DATABASE "{name}"{suffix}'))
    server.dispose()


def _drop(url: str) -> None:
    server = _server(url)
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}"'))
    server.dispose()


def _run_sql(url: str, statements: list[str]) -> None:
    engine = create_engine(database_url(url))
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


def measure(rows: int, rounds: int) -> dict[str, list[dict]]:
    base = (os.environ.get(BENCH_DATABASE_ENV) or DEFAULT_BENCH_DATABASE).split("?")[0]
    template_url, variant_url = f"{base}_schema_template", f"{base}_schema_variant"
    run_id = f"s{os.getpid()}{int(time.time())}"
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    try:
        _recreate(template_url)
        subprocess.run(  # migrate the template once; every variant starts from a copy of it
            [sys.executable, "-c", "from bench.bench_import import _child_app; _child_app()"],
            cwd=ROOT, check=True, env={**os.environ, "DATABASE_URL": template_url},
            capture_output=True,
        )
        with tempfile.TemporaryDirectory(prefix="mailapp-bench-schema-") as workdir:
            csv_path = Path(workdir) / f"subscribers-{rows}.csv"
            write_csv(csv_path, rows, run_id)
            for round_number in range(rounds):
                # Alternate the order, so a slow spell of the machine does not fall on one variant.
                names = list(VARIANTS) if round_number % 2 == 0 else list(reversed(VARIANTS))
                for name in names:
                    statements, env = VARIANTS[name]
                    _recreate(variant_url, template=make_url(template_url).database)
                    _run_sql(variant_url, statements)
                    # No clean-up in the copy: without ix_list_members_subscriber_id, deleting a million
                    # subscribers scans list_members once per subscriber (it ran for minutes).
                    measured = _in_child("import", csv_path, run_id, {
                        "DATABASE_URL": variant_url, THROWAWAY_DATABASE_ENV: "1", **env})
                    measured["load"] = os.getloadavg()[0]
                    results[name].append(measured)
                    print(f"{name}: {rows / measured['seconds']:,.0f} rows/s (CPU: Python "
                          f"{measured['python_cpu_s']:.1f} s, PostgreSQL {measured['postgres_cpu_s']:.1f} s; "
                          f"load {measured['load']:.1f})", file=sys.stderr, flush=True)
    finally:
        _drop(variant_url)
        _drop(template_url)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    results = measure(args.rows, args.rounds)
    reference = statistics.median(run["seconds"] for run in results[REFERENCE])
    print("| variant | rows/s (median) | ratio to the schema as it is | CPU Python / PostgreSQL s (median) |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        seconds = statistics.median(run["seconds"] for run in runs)
        python = statistics.median(run["python_cpu_s"] for run in runs)
        postgres = statistics.median(run["postgres_cpu_s"] for run in runs)
        print(f"| {name} | {args.rows / seconds:,.0f} | {reference / seconds:.2f}× "
              f"| {python:.1f} / {postgres:.1f} |")
    loads = [run["load"] for runs in results.values() for run in runs]
    print(f"\nload average during the runs: {min(loads):.1f}–{max(loads):.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
