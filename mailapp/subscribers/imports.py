"""CSV imports as records: take an upload, run it as the task's body (resumable, one worker at a time),
and report its progress. importer.py does the reading and writing of the rows. Services flush; callers
commit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from flask import current_app
from sqlalchemy import select, text

from mailapp.audit import services as audit
from mailapp.db_setup import is_postgres
from mailapp.errors import ImportFileError, NotFoundError
from mailapp.extensions import db
from mailapp.models.base import iso_or_none, utcnow
from mailapp.models.subscriber import ImportStatus, SubscriberImport, SubscriberList
from mailapp.subscribers import import_file, import_parse, importer

log = logging.getLogger(__name__)


def get_import(import_id: int) -> SubscriberImport:
    found = db.session.get(SubscriberImport, import_id)
    if found is None:
        raise NotFoundError(f"Import {import_id} does not exist.")
    return found


def _upload_limit() -> int:
    return int(current_app.config.get("IMPORT_MAX_BYTES") or current_app.config["MAX_CONTENT_LENGTH"])


def start_import(target: SubscriberList, filename: str, stream: IO[bytes]) -> SubscriberImport:
    """Stream the upload to UPLOAD_DIR, refuse a file that cannot be imported at all (and keep nothing of
    it), and record a queued import. The caller commits, then queues tasks.run_import."""
    upload_dir = Path(current_app.config["UPLOAD_DIR"])
    upload_dir.mkdir(parents=True, exist_ok=True)
    path = upload_dir / f"import-{uuid.uuid4().hex}.csv"
    limit = _upload_limit()
    size = 0
    try:
        with path.open("wb") as out:
            while block := stream.read(1 << 20):
                size += len(block)
                if size > limit:
                    raise ImportFileError(f"The file is too big: the limit is {limit // (1024 * 1024)} MB.")
                out.write(block)
        import_file.inspect_csv(path, import_file.ImportLimits.from_config(current_app.config))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    record = SubscriberImport(
        list_id=target.id,
        # PostgreSQL cannot store a NUL, and a file name is only shown back.
        filename=(Path(filename.replace("\x00", "") or "upload.csv").name or "upload.csv")[:300],
        file_path=str(path),
        file_size=size,
        status=ImportStatus.QUEUED,
    )
    db.session.add(record)
    db.session.flush()
    audit.record("import.start", record, f"{record.filename} ({size} bytes) into list {target.name!r}")
    return record


# Advisory lock namespace for imports (PostgreSQL): one worker per import at a time.
IMPORT_LOCK_CLASS = 0x1A7


@contextmanager
def _import_claim(import_id: int) -> Iterator[bool]:
    """True when this worker may process the import: on PostgreSQL, a session advisory lock held for
    the whole run, so a duplicate delivery of the task cannot process the same file twice at once (it
    ends at once; a redelivery after a crash gets the lock and resumes). SQLite runs one writer."""
    if not is_postgres():
        yield True
        return
    with db.engine.connect() as connection:
        claimed = connection.scalar(
            text("SELECT pg_try_advisory_lock(:class_id, :import_id)"),
            {"class_id": IMPORT_LOCK_CLASS, "import_id": import_id},
        )
        connection.commit()
        try:
            yield bool(claimed)
        finally:
            if claimed:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:class_id, :import_id)"),
                    {"class_id": IMPORT_LOCK_CLASS, "import_id": import_id},
                )
                connection.commit()


def run_import(import_id: int) -> None:
    """The Celery task's body. Commits as it goes: a chunk of rows and its counters per transaction.
    Run again after a worker died mid-way, it resumes after the last committed chunk."""
    with _import_claim(import_id) as claimed:
        if not claimed:
            log.warning("import %s is already being processed by another worker", import_id)
            return
        _run_claimed_import(import_id)


def _run_claimed_import(import_id: int) -> None:
    record = db.session.get(SubscriberImport, import_id)
    if record is None or record.status in (ImportStatus.DONE, ImportStatus.FAILED):
        return
    path, list_id = Path(record.file_path), record.list_id
    resuming = record.status == ImportStatus.RUNNING
    errors = import_parse.ErrorLog()
    if resuming:
        errors = import_parse.ErrorLog(record.error_count, list(record.errors or []))
    processed = record.processed if resuming else 0
    try:
        if list_id is None:
            raise ImportFileError("The list was deleted before the import ran.")
        if not resuming:
            record.status = ImportStatus.RUNNING
            record.total = import_file.count_data_lines(path)
        # The rows are written on another connection: end this session's transaction first (on SQLite
        # it would hold the write lock).
        db.session.commit()
        limits = import_file.ImportLimits.from_config(current_app.config)
        layout = import_file.inspect_csv(path, limits)
        importer.import_rows(db.engine, import_id, list_id, path, layout, errors, processed, limits=limits,
                             writers=int(current_app.config.get("IMPORT_WRITERS", 2)))
    except Exception as error:
        db.session.rollback()
        log.exception("import %s failed", import_id)
        message = error.message if isinstance(error, ImportFileError) else (
            f"The import stopped: {type(error).__name__}: {str(error)[:500]}")
        _finish_import(import_id, ImportStatus.FAILED, message)
        return
    _finish_import(import_id, ImportStatus.DONE, "")


def _finish_import(import_id: int, status: ImportStatus, failure: str) -> None:
    record = db.session.get(SubscriberImport, import_id)
    if record is None:
        return
    db.session.refresh(record)
    record.status = status
    record.failure = failure
    record.finished_at = utcnow()
    if status == ImportStatus.DONE:
        record.total = record.processed
    db.session.commit()
    Path(record.file_path).unlink(missing_ok=True)


def import_to_dict(record: SubscriberImport) -> dict[str, Any]:
    return {
        "id": record.id,
        "list_id": record.list_id,
        "filename": record.filename,
        "status": record.status,
        "total": max(record.total, record.processed),
        "processed": record.processed,
        "imported": record.imported,
        "updated": record.updated,
        "skipped": record.skipped,
        "duplicates": record.duplicates,
        "invalid": record.error_count,
        "errors": record.errors or [],
        "failure": record.failure or None,
        "created_at": iso_or_none(record.created_at),
        "finished_at": iso_or_none(record.finished_at),
        "parts": [
            {"part": part.part, "processed": part.processed, "imported": part.imported,
             "updated": part.updated, "skipped": part.skipped, "invalid": part.error_count}
            for part in record.parts
        ],
    }


def recent_imports(list_id: int, limit: int = 5) -> list[SubscriberImport]:
    return list(db.session.scalars(
        select(SubscriberImport).where(SubscriberImport.list_id == list_id)
        .order_by(SubscriberImport.id.desc()).limit(limit)
    ))
