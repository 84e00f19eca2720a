"""The import worker's memory stays bounded whatever the upload: measured on a real import task run in
a child process, whose peak RSS is its own.

The child reports its VmHWM (/proc/self/status) itself: ru_maxrss of a child counts the RSS of the
parent it was forked from before exec, and the test process holds the 50 MB file it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flask import Flask

from mailapp.extensions import db
from mailapp.models.subscriber import SubscriberList
from mailapp.subscribers import services
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
    finished = subprocess.run(  # noqa: S603 - our own interpreter and script
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
        import_id = services.start_import(target, "huge.csv", upload).id
    db.session.commit()
    db.session.close()  # the child writes; on SQLite no transaction of ours may be open

    peak_mb = run_import_in_child(app, import_id)

    db.session.expire_all()
    report = services.import_to_dict(services.get_import(import_id))
    print(f"import worker peak RSS: {peak_mb} MB")  # noqa: T201 - the figure the README quotes
    assert report["status"] == "done", report
    assert (report["processed"], report["imported"], report["invalid"]) == (5, 4, 1)
    assert report["errors"][0]["line"] == 4
    assert "longer than" in report["errors"][0]["reason"]
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb} MB"
