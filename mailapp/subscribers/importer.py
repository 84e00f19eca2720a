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
task's thread while writer threads store the previous chunk, so the CPU work and the database work
overlap.

Parts: on PostgreSQL, IMPORT_WRITERS writers (2 by default), each on its own connection, store each
chunk between them: a row goes to the writer `part_of(email)` names, a hash of its (lower-cased)
email. An email therefore always meets the same writer, so the two never touch the same subscriber
(no deadlock), and a repeat of an email in a later chunk is found by the writer that stored it first.
The one row they both write is the import's, updated last before each commit, so a writer waits at
most for the other's commit there. Each writer commits its share of a chunk together with its counters:
it adds them to the import's and to its own SubscriberImportPart, whose `records` says how far into
the file it has committed. So the progress shown is always true, a failure leaves every committed
share counted and nothing else, and a resumed import starts at the part furthest behind, each writer
skipping the chunks it already committed (chunk boundaries are the same from any boundary on). The
file's own findings (invalid rows, repeats within a chunk) count in part 0. SQLite has one writer.
"""

from __future__ import annotations

import queue
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from mailapp.models.subscriber import SubscriberImport, SubscriberImportPart
from mailapp.subscribers.import_file import CsvLayout, ImportLimits
from mailapp.subscribers.import_parse import (
    CHUNK_ROWS,
    MAX_REPORTED_ERRORS,
    ChunkCounts,
    ErrorLog,
    ImportRow,
    ParsedChunk,
    parse_chunks,
    too_many_attributes_reason,
)
from mailapp.subscribers.import_postgres import PostgresChunkWriter
from mailapp.subscribers.import_sqlite import SqliteChunkWriter

_imports = SubscriberImport.__table__
_parts = SubscriberImportPart.__table__


def part_of(email: str, parts: int) -> int:
    """The writer that stores this email: the same one in every chunk and every run (crc32, unlike
    hash(), does not change between processes, and a resumed import relies on that)."""
    return zlib.crc32(email.encode("utf-8", "surrogateescape")) % parts if parts > 1 else 0


@dataclass
class PartChunk:
    """One writer's share of a parsed chunk, and what it adds to the counters when it commits."""

    records: int  # the file's data records up to the end of this chunk (the part's resume point)
    rows: list[ImportRow]
    processed: int
    duplicates: int = 0  # repeats within the chunk (part 0)
    error_count: int = 0  # invalid rows the parser found in this chunk (part 0)
    errors: list[dict[str, Any]] = field(default_factory=list)  # those of them to report
    prepared: Any = None


def split_chunk(
    chunk: ParsedChunk, records: int, parts: int, errors_before: tuple[int, int]
) -> list[PartChunk]:
    """errors_before: the parser's (error count, reported errors) before this chunk."""
    if parts == 1:
        shares = [chunk.rows]
    else:
        shares = [[] for _ in range(parts)]
        for row in chunk.rows:
            shares[part_of(row[1], parts)].append(row)
    pieces = [PartChunk(records, rows, len(rows)) for rows in shares]
    count_before, reported_before = errors_before
    first = pieces[0]
    first.duplicates = chunk.duplicates
    first.error_count = chunk.error_count - count_before
    first.errors = chunk.errors[reported_before:]
    first.processed = chunk.processed - sum(len(rows) for rows in shares[1:])
    return pieces


def _record_progress(
    connection: Connection, import_id: int, part: int, piece: PartChunk, counts: ChunkCounts,
    writer_errors: list[dict[str, Any]],
) -> None:
    """Add this share's counters to the import's and the part's, in the transaction that stored it."""
    duplicates = piece.duplicates + counts.duplicates
    skipped = duplicates + counts.unchanged
    error_count = piece.error_count + len(writer_errors)
    values: dict[str, Any] = {
        "processed": _imports.c.processed + piece.processed,
        "imported": _imports.c.imported + counts.imported,
        "updated": _imports.c.updated + counts.updated,
        "skipped": _imports.c.skipped + skipped,
        "duplicates": _imports.c.duplicates + duplicates,
        "error_count": _imports.c.error_count + error_count,
    }
    new_errors = piece.errors + writer_errors
    if new_errors:
        # Read under the row's lock, so another writer's errors committed meanwhile are kept.
        stored = connection.scalar(
            select(_imports.c.errors).where(_imports.c.id == import_id).with_for_update()
        )
        values["errors"] = sorted([*(stored or []), *new_errors], key=lambda error: error["line"])[
            :MAX_REPORTED_ERRORS
        ]
    connection.execute(update(_imports).where(_imports.c.id == import_id).values(**values))
    connection.execute(
        update(_parts)
        .where(_parts.c.import_id == import_id, _parts.c.part == part)
        .values(
            records=piece.records,
            processed=_parts.c.processed + piece.processed,
            imported=_parts.c.imported + counts.imported,
            updated=_parts.c.updated + counts.updated,
            skipped=_parts.c.skipped + skipped,
            error_count=_parts.c.error_count + error_count,
        )
    )


def part_positions(connection: Connection, import_id: int, parts: int, processed: int) -> list[int]:
    """Where each part resumes, creating the parts' records on the first run. An import begun before
    it had parts (or by a single writer) resumes every part where its counters stop."""
    stored = dict(connection.execute(
        select(_parts.c.part, _parts.c.records).where(_parts.c.import_id == import_id)
    ).all())
    if stored and len(stored) != parts:
        # IMPORT_WRITERS changed since the import began: its rows were shared among its own parts.
        parts = len(stored)
    missing = [part for part in range(parts) if part not in stored]
    if missing:
        connection.execute(_parts.insert(), [
            {"import_id": import_id, "part": part, "records": processed, "processed": 0, "imported": 0,
             "updated": 0, "skipped": 0, "error_count": 0} for part in missing
        ])
    return [stored.get(part, processed) for part in range(parts)]


class _PartWriter:
    """A thread that stores one part's shares, chunk after chunk, on its own connection."""

    def __init__(self, engine: Engine, import_id: int, list_id: int, part: int, writer: Any,
                 max_keys: int, stop: threading.Event) -> None:
        self.engine, self.import_id, self.list_id, self.part = engine, import_id, list_id, part
        self.writer, self.max_keys, self.stop = writer, max_keys, stop
        self.pieces: queue.Queue[PartChunk | None] = queue.Queue(maxsize=1)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"import-{import_id}-writer-{part}", daemon=True
        )

    def _run(self) -> None:
        try:
            with self.engine.connect() as connection:
                with connection.begin():
                    self.writer.start(connection)
                while (piece := self.pieces.get()) is not None:
                    if self.stop.is_set():
                        continue  # another part failed: store nothing more, drain the queue
                    with connection.begin():
                        counts = ChunkCounts()
                        if piece.rows:
                            counts = self.writer.write(connection, self.list_id, piece.rows, piece.prepared)
                        reason = too_many_attributes_reason(self.max_keys)
                        writer_errors = [{"line": line, "email": email, "reason": reason}
                                         for line, email in counts.too_many_attributes]
                        _record_progress(connection, self.import_id, self.part, piece, counts, writer_errors)
                with connection.begin():
                    self.writer.finish(connection)
        except BaseException as error:  # handed to the parsing thread, which re-raises it
            self.failure = error
            self.stop.set()
            while self.pieces.get() is not None:  # let the producer finish instead of blocking forever
                pass


def import_rows(
    engine: Engine,
    import_id: int,
    list_id: int,
    path: Path,
    layout: CsvLayout,
    errors: ErrorLog,
    processed: int = 0,
    chunk_rows: int | None = None,
    limits: ImportLimits | None = None,
    writers: int = 1,
) -> None:
    """Parse in this thread, write in the parts' threads: one chunk in flight per part while the next
    is parsed. processed: the import's rows already counted (where an import without parts resumes)."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    postgres = engine.dialect.name == "postgresql"
    writer_class = PostgresChunkWriter if postgres else SqliteChunkWriter
    limits = limits or ImportLimits()
    max_keys = limits.attributes.max_keys
    with engine.begin() as connection:
        positions = part_positions(connection, import_id, max(1, writers) if postgres else 1, processed)
    parts = len(positions)
    resume_at = min(positions)
    stop = threading.Event()
    part_writers = [
        _PartWriter(engine, import_id, list_id, part, writer_class(layout.attribute_names, max_keys),
                    max_keys, stop)
        for part in range(parts)
    ]
    for part_writer in part_writers:
        part_writer.thread.start()
    records = resume_at
    errors_before = (errors.count, len(errors.first))
    try:
        for chunk in parse_chunks(path, layout, errors, chunk_rows, resume_at, limits):
            if stop.is_set():
                break
            records += chunk.processed
            pieces = split_chunk(chunk, records, parts, errors_before)
            errors_before = (chunk.error_count, len(chunk.errors))
            for part_writer, piece, position in zip(part_writers, pieces, positions, strict=True):
                if records <= position:
                    continue  # this part committed this chunk before the import was interrupted
                if piece.rows:
                    piece.prepared = part_writer.writer.prepare(piece.rows)
                part_writer.pieces.put(piece)
    finally:
        for part_writer in part_writers:
            part_writer.pieces.put(None)
        for part_writer in part_writers:
            part_writer.thread.join()
    failures = [part_writer.failure for part_writer in part_writers if part_writer.failure is not None]
    if failures:
        raise failures[0]
