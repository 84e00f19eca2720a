"""CSV import: check an uploaded file, then stream its rows into subscribers and one list, in chunks.

What the counters mean (processed == imported + updated + skipped + error_count, always):
- imported: a new subscriber was created (active) and added to the list.
- updated: an existing subscriber's name or attributes changed, or they were added to the list.
- skipped: nothing to do; either the email already appeared earlier in the same file (also counted
  in `duplicates`, the first occurrence wins), or the row matches what is stored and the subscriber
  is already on the list. Re-importing a file therefore skips every row.
- error_count: invalid rows (bad email, wrong number of columns, bad UTF-8, name too long, a row
  longer than IMPORT_MAX_LINE_BYTES, an attribute value over its limit, a NUL character); the first
  MAX_REPORTED_ERRORS are kept in `errors` as {line, email, reason}.

Memory is bounded whatever the file: rows are read through BoundedLines, which hands csv.reader at
most max_row_bytes per row (the rest of an over-long line is read in pieces and dropped, and the row is
an invalid row), and a chunk holds at most CHUNK_ROWS rows or CHUNK_MAX_BYTES bytes of them. Names and
attribute values follow the rules of subscribers/validation.py (line breaks and control characters
become spaces, NUL refused), checked only on the rows that need it, so the common row costs little more.

Columns: `email` (required) and `name` match case-insensitively; the columns an export adds (status,
created_at, updated_at, unsubscribed_at) are ignored; every other named column is an attribute.

Rules for existing subscribers: the status never changes (an import cannot resubscribe someone who
unsubscribed or was blocklisted); an empty cell never overwrites stored data; attributes merge (columns
in the file set those keys, other stored keys stay). Attribute values are stored as strings. A row
that would leave a subscriber with more than SUBSCRIBER_MAX_ATTRIBUTES keys (and more than they had) is
an invalid row, found by the writer (ChunkCounts.too_many_attributes).

PostgreSQL: each chunk is COPYed into a temporary staging table; an index look-up splits it into new
emails (plain INSERTs of subscribers and memberships) and existing ones (set-based updates and
memberships), see PostgresChunkWriter. SQLite: the chunk goes through executemany into a staging
table and a few set-based statements. Parsing (and formatting the rows for the database) runs in the
task's thread while a writer thread stores the previous chunk, so the CPU work and the database work
overlap. Each chunk and its counters commit together, so the progress shown is always true.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from sqlalchemy import Connection, Engine, update

from mailapp.models.subscriber import SubscriberImport
from mailapp.subscribers.import_file import CsvLayout, ImportLimits
from mailapp.subscribers.import_parse import (
    CHUNK_ROWS,
    MAX_REPORTED_ERRORS,
    ChunkCounts,
    ErrorLog,
    ParsedChunk,
    parse_chunks,
    too_many_attributes_reason,
)
from mailapp.subscribers.import_postgres import PostgresChunkWriter
from mailapp.subscribers.import_sqlite import SqliteChunkWriter

_imports = SubscriberImport.__table__


def _record_progress(
    connection: Connection, import_id: int, chunk: ParsedChunk, counts: ChunkCounts, writer_errors: ErrorLog
) -> None:
    """writer_errors: the rows the writer found invalid (so far in this run), on top of the parser's."""
    duplicates = chunk.duplicates + counts.duplicates
    errors = chunk.errors
    if writer_errors.first:
        errors = sorted(chunk.errors + writer_errors.first, key=lambda error: error["line"])
        errors = errors[:MAX_REPORTED_ERRORS]
    connection.execute(
        update(_imports)
        .where(_imports.c.id == import_id)
        .values(
            processed=_imports.c.processed + chunk.processed,
            imported=_imports.c.imported + counts.imported,
            updated=_imports.c.updated + counts.updated,
            skipped=_imports.c.skipped + duplicates + counts.unchanged,
            duplicates=_imports.c.duplicates + duplicates,
            error_count=chunk.error_count + writer_errors.count,
            errors=errors,
        )
    )


def import_rows(
    engine: Engine,
    import_id: int,
    list_id: int,
    path: Path,
    layout: CsvLayout,
    errors: ErrorLog,
    skip_records: int = 0,
    chunk_rows: int | None = None,
    limits: ImportLimits | None = None,
) -> None:
    """Parse in this thread, write in another: one chunk in flight while the next is parsed."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    writer_class = PostgresChunkWriter if engine.dialect.name == "postgresql" else SqliteChunkWriter
    limits = limits or ImportLimits()
    max_keys = limits.attributes.max_keys
    writer = writer_class(layout.attribute_names, max_keys)
    writer_errors = ErrorLog()
    chunks: queue.Queue[ParsedChunk | None] = queue.Queue(maxsize=1)
    failure: list[BaseException] = []

    def write_chunks() -> None:
        try:
            with engine.connect() as connection:
                with connection.begin():
                    writer.start(connection)
                while (chunk := chunks.get()) is not None:
                    with connection.begin():
                        counts = ChunkCounts()
                        if chunk.rows:
                            counts = writer.write(connection, list_id, chunk.rows, chunk.prepared)
                        for line, email in counts.too_many_attributes:
                            writer_errors.add(line, email, too_many_attributes_reason(max_keys))
                        _record_progress(connection, import_id, chunk, counts, writer_errors)
                with connection.begin():
                    writer.finish(connection)
        except BaseException as error:  # handed to the parsing thread, which re-raises it
            failure.append(error)
            while chunks.get() is not None:  # let the producer finish instead of blocking forever
                pass

    thread = threading.Thread(target=write_chunks, name=f"import-{import_id}-writer", daemon=True)
    thread.start()
    try:
        for chunk in parse_chunks(path, layout, errors, chunk_rows, skip_records, limits):
            if failure:
                break
            if chunk.rows:
                chunk.prepared = writer.prepare(chunk.rows)
            chunks.put(chunk)
    finally:
        chunks.put(None)
        thread.join()
    if failure:
        raise failure[0]
