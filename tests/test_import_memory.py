"""The import worker's memory stays bounded whatever the upload: measured on a real import task run in
a child process, whose peak RSS is its own.

The child reports its VmHWM (/proc/self/status) itself: ru_maxrss of a child counts the RSS of the
parent it was forked from before exec, and the test process holds the 50 MB file it wrote."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from mailapp.extensions import db
from mailapp.models.subscriber import SubscriberList
from mailapp.subscribers import import_parse, imports
from tests.factories import SubscriberListFactory

ROOT = Path(__file__).resolve().parent.parent
PEAK_RSS_LIMIT_MB = 250
HUGE_LINE_BYTES = 50 * 1024 * 1024

# The child builds the app the way tests/conftest.py does, on the same database and upload folder, and
# runs the Celery task itself (apply: the task's code in this process, no broker round trip).
CHILD = """
import sys
from config import TestConfig
from mailapp import create_app
config = TestConfig()
config.SQLALCHEMY_DATABASE_URI, config.UPLOAD_DIR = sys.argv[1], sys.argv[2]
config.CELERY_BROKER_URL, config.REDIS_URL = "memory://", ""
app = create_app(config)
with app.app_context():
    from mailapp.subscribers.tasks import run_import
    run_import.apply((int(sys.argv[3]),)).get()
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def run_import_in_child(app: Flask, import_id: int) -> int:
    """Peak RSS of the child in MB (VmHWM is in KiB)."""
    finished = subprocess.run(  # our own interpreter and script
        [sys.executable, "-c", CHILD, app.config["SQLALCHEMY_DATABASE_URI"], app.config["UPLOAD_DIR"],
         str(import_id)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return int(finished.stdout.split()[-1]) // 1024


def huge_line_csv(path: Path) -> None:
    """A header, two ordinary rows, then one 50 MB line of short cells (the shape that made the csv
    module build millions of strings), then two more ordinary rows."""
    cells = b"ab," * (HUGE_LINE_BYTES // 3)
    with path.open("wb") as out:
        out.write(b"email,name,city\nann@example.com,Ann,Paris\nbob@example.com,Bob,Oslo\n")
        out.write(b"huge@example.com,Huge," + cells + b"\n")
        out.write(b"carl@example.com,Carl,Rome\ndan@example.com,Dan,Lima\n")


def test_a_fifty_megabyte_line_is_one_row_error_and_the_worker_stays_small(app, tmp_path):
    target: SubscriberList = SubscriberListFactory(name="Huge")
    source = tmp_path / "huge.csv"
    huge_line_csv(source)
    with source.open("rb") as upload:
        import_id = imports.start_import(target, "huge.csv", upload).id
    db.session.commit()
    db.session.close()  # the child writes; on SQLite no transaction of ours may be open

    peak_mb = run_import_in_child(app, import_id)

    db.session.expire_all()
    report = imports.import_to_dict(imports.get_import(import_id))
    print(f"import worker peak RSS: {peak_mb} MB")  # the figure the README quotes
    assert report["status"] == "done", report
    assert (report["processed"], report["imported"], report["invalid"]) == (5, 4, 1)
    assert report["errors"][0]["line"] == 4
    assert "longer than" in report["errors"][0]["reason"]
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb} MB"



def test_a_file_of_rows_at_the_size_limits_imports_in_bounded_chunks(app, tmp_path):
    """Every row as large as the limits allow (20 attributes of 2,000 bytes, about 40 KB a row), 100 MB
    in all: the chunks are capped in bytes as well as rows, so the worker never holds the whole file."""
    target: SubscriberList = SubscriberListFactory(name="Wide")
    source = tmp_path / "wide.csv"
    columns = [f"c{n}" for n in range(20)]
    rows = 2500
    with source.open("w") as out:
        out.write("email," + ",".join(columns) + "\n")
        for n in range(rows):
            out.write(f"p{n}@example.com," + ",".join(f"{n:05}" + "x" * 1995 for _ in columns) + "\n")
    with source.open("rb") as upload:
        import_id = imports.start_import(target, "wide.csv", upload).id
    db.session.commit()
    db.session.close()

    peak_mb = run_import_in_child(app, import_id)

    db.session.expire_all()
    report = imports.import_to_dict(imports.get_import(import_id))
    print(f"import worker peak RSS, 100 MB of wide rows: {peak_mb} MB")
    assert (report["status"], report["imported"], report["invalid"]) == ("done", rows, 0), report
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb} MB"

# --- the bounded line reader, on its own --------------------------------------------------------------

def read_rows(path: Path, max_row_bytes: int) -> list[tuple[int, list[str] | str]]:
    """(first line, cells) per row, or (first line, "too long"), as parse_chunks reads them."""
    found: list[tuple[int, list[str] | str]] = []
    with path.open(encoding="utf-8", errors="surrogateescape") as file:
        lines = import_parse.BoundedLines(file, max_row_bytes)
        reader = csv.reader(lines)
        while True:
            first_line = lines.line_number + 1
            lines.start_row()
            try:
                found.append((first_line, next(reader)))
            except StopIteration:
                return found
            except import_parse.RowTooLongError:
                found.append((first_line, "too long"))


CSV_TEXT = st.lists(
    st.sampled_from(["a", "bc", ",", "\n", "\r\n", "\r", '"', '""', "é", "x" * 30, " ", ";"]), max_size=60
).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=CSV_TEXT, block_chars=st.integers(1, 40))
def test_rows_within_the_limit_read_exactly_as_the_csv_module_reads_them(tmp_path_factory, text, block_chars):
    path = tmp_path_factory.mktemp("bounded") / "rows.csv"
    path.write_text(text, encoding="utf-8", newline="")
    with path.open(encoding="utf-8") as file:
        reader = csv.reader(file)
        expected, line = [], 0
        for cells in reader:
            expected.append((line + 1, cells))
            line = reader.line_num
    original = import_parse.BLOCK_CHARS
    import_parse.BLOCK_CHARS = block_chars
    try:
        assert read_rows(path, 10_000) == expected
    finally:
        import_parse.BLOCK_CHARS = original


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 120), min_size=1, max_size=20),
    block_chars=st.integers(1, 50),
    non_ascii=st.booleans(),
    final_newline=st.booleans(),
)
def test_each_line_over_the_limit_is_one_error_and_the_others_are_read_whole(
    tmp_path_factory, lengths, block_chars, non_ascii, final_newline
):
    """Unquoted lines, so one line is one row; the limit (40 bytes) counts the line's end too."""
    limit = 40
    character = "é" if non_ascii else "a"
    text = "\n".join(f"{n}," + character * length for n, length in enumerate(lengths))
    text += "\n" if final_newline else ""
    path = tmp_path_factory.mktemp("bounded") / "rows.csv"
    path.write_text(text, encoding="utf-8")
    expected: list[tuple[int, list[str] | str]] = []
    for n, length in enumerate(lengths):
        line = f"{n}," + character * length
        has_end = final_newline or n < len(lengths) - 1
        size = len(line.encode("utf-8")) + has_end
        expected.append((n + 1, "too long" if size > limit else [f"{n}", character * length]))
    original = import_parse.BLOCK_CHARS
    import_parse.BLOCK_CHARS = block_chars
    try:
        assert read_rows(path, limit) == expected
    finally:
        import_parse.BLOCK_CHARS = original
