"""The benchmark harness at smoke scale, so `make bench` cannot rot: every module runs, every row is
well-formed, and the table and JSON are written. Installs nothing: rows whose external tool (smtp-sink,
smtp-source, wrk) is absent say so and are the only ones allowed to lack a value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text

from bench.common import (
    BASELINE_FLASK_MAIL,
    BASELINE_NEW_CONNECTION,
    BASELINE_SMTPLIB,
    BENCH_DATABASE_ENV,
    CEILING_FOUR,
    CEILING_ONE,
    combine_runs,
    find_tool,
    markdown_table,
    result_row,
    row_problems,
    target_met,
)
from bench.run import MODULES, TOOLS
from config import database_url

ROOT = Path(__file__).resolve().parent.parent


def _module_of(row_name: str, rows_by_module: dict[str, list[str]]) -> str | None:
    return next((module for module, names in rows_by_module.items() if row_name in names), None)


@pytest.fixture
def bench_database() -> Iterator[str | None]:
    """On PostgreSQL, an empty database of its own for the dashboard bench, dropped afterwards: the
    send and import smoke benches write into the suite's database while the harness runs. On the
    embedded default the dashboard bench makes a throwaway SQLite file itself."""
    suite_url = os.environ.get("DATABASE_URL", "")
    if not suite_url.startswith("postgres"):
        yield None
        return
    parts = urlsplit(database_url(suite_url))
    name = f"{parts.path.lstrip('/')}_benchsmoke"
    server = create_engine(parts._replace(path="/postgres").geturl(), isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def test_smoke_run_writes_well_formed_results(tmp_path: Path, bench_database: str | None) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if bench_database:
        env[BENCH_DATABASE_ENV] = bench_database
    completed = subprocess.run(
        [sys.executable, "-m", "bench.run", "--scale", "smoke", "--runs", "1", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]

    document = json.loads((tmp_path / "results.json").read_text())
    rows, meta = document["rows"], document["meta"]
    assert meta["scale"] == "smoke"
    assert set(MODULES) <= set(meta["modules"])
    problems = {row.get("name"): row_problems(row) for row in rows if row_problems(row)}
    assert not problems, problems
    errors = [f"{row['name']}: {row['notes']}" for row in rows if str(row["notes"]).startswith("error")]
    assert not errors, "\n".join(errors) + "\n" + completed.stderr[-3000:]

    missing_tools = [tool for tool in TOOLS if not find_tool(tool)]
    unmeasured = [row for row in rows if row["value"] is None]
    for row in unmeasured:
        assert row["notes"].startswith("not available:"), row
    print(f"missing tools (their rows are not measured): {missing_tools or 'none'}")
    print("not measured: " + "; ".join(f"{row['name']} ({row['notes']})" for row in unmeasured))

    by_name = {row["name"]: row for row in rows}
    # The Python baselines need no external tool (an aiosmtpd sink stands in for smtp-sink).
    for name in (BASELINE_FLASK_MAIL, BASELINE_SMTPLIB, BASELINE_NEW_CONNECTION):
        assert by_name[name]["value"] > 0, by_name[name]
    for name in (CEILING_ONE, CEILING_FOUR):
        if find_tool("smtp-source") and find_tool("smtp-sink"):
            assert by_name[name]["value"] > 0, by_name[name]
        else:
            assert "smtp-source" in by_name[name]["notes"] or "smtp-sink" in by_name[name]["notes"]

    table = (tmp_path / "results.md").read_text()
    assert "| name | value | unit | baseline | baseline value | ratio | target | met? |" in table
    for row in rows:
        assert f"| {row['name']} |" in table


def test_medians_ratios_and_targets_across_runs() -> None:
    def system(value: float, rss: float) -> dict:
        target = ">= 1000 and >= 6x"
        return result_row("system", value, "msg/s", baseline="base", target=target, peak_rss_mb=rss)

    runs = [
        [result_row("base", 100.0, "msg/s"), system(900.0, 120.0)],
        [result_row("base", 300.0, "msg/s"), system(2100.0, 180.0)],
        [result_row("base", 200.0, "msg/s"), system(1500.0, 150.0)],
    ]
    base, combined = combine_runs(runs)
    assert base["value"] == 200.0
    assert combined["value"] == 1500.0
    assert combined["baseline_value"] == 200.0
    assert combined["ratio"] == pytest.approx(7.5)
    assert combined["peak_rss_mb"] == 180.0  # the worst run, not the median
    assert combined["runs"] == [900.0, 2100.0, 1500.0]
    assert combined["met"] is True
    combined["ratio"] = 5.0
    assert target_met(combined) is False


@pytest.mark.parametrize(
    ("row", "met"),
    [
        (result_row("p", 150.0, "ms", target="< 200"), True),
        (result_row("p", 250.0, "ms", target="< 200"), False),
        (result_row("o", 4500.0, "/s", baseline_value=5000.0, target=">= 4000, >= 80%", p99_ms=60.0), True),
        (result_row("o", 4500.0, "/s", baseline_value=5e3, target=">= 4000, p99 < 50", p99_ms=60.0), False),
        (result_row("r", 1.0, "x", target="rss < 250", peak_rss_mb=300.0), False),
        (result_row("r", 180.0, "MB", target="rss < 250"), True),
        (result_row("u", None, "s", target="< 2", notes="not available: no worker"), None),
        (result_row("q", 1.0, "s", target="fast please"), None),
    ],
)
def test_target_expressions(row: dict, met: bool | None) -> None:
    assert target_met(row) is met


def test_malformed_rows_are_named() -> None:
    assert row_problems({"name": "x"})  # keys missing
    assert row_problems(result_row("x", None, "s"))  # no value and no reason
    assert row_problems({**result_row("x", 1.0, "s"), "value": "fast"})
    assert not row_problems(result_row("x", 1.0, "s"))
    assert "| x | 1 | s |" in markdown_table([result_row("x", 1.0, "s")])


def test_a_module_can_name_a_baseline_in_its_own_words() -> None:
    runs = [[
        result_row(BASELINE_FLASK_MAIL, 300.0, "msg/s"),
        result_row(CEILING_FOUR, 6000.0, "msg/s"),
        result_row("send", 2400.0, "msg/s", baseline="Flask-Mail loop", target=">= 6x"),
        result_row("send vs ceiling", 2400.0, "msg/s", baseline="smtp-source, 4 connections"),
        result_row("other", 1.0, "x", baseline="something unknown"),
    ]]
    rows = {row["name"]: row for row in combine_runs(runs)}
    assert rows["send"]["baseline"] == BASELINE_FLASK_MAIL
    assert rows["send"]["ratio"] == pytest.approx(8.0)
    assert rows["send"]["met"] is True
    assert rows["send vs ceiling"]["ratio"] == pytest.approx(0.4)
    assert rows["other"]["ratio"] is None
