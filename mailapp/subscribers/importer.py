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
attribute values follow the rules of validation.py (line breaks and control characters become spaces,
NUL refused), checked only on the rows that need it, so the common row costs little more.

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

import codecs
import csv
import io
import json
import logging
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from sqlalchemy import Connection, Engine, text, update
from sqlalchemy.exc import IntegrityError

from mailapp.addresses import normalize_email
from mailapp.errors import ImportFileError, ValidationError
from mailapp.models.base import utcnow
from mailapp.models.subscriber import SubscriberImport
from mailapp.subscribers.validation import (
    NAME_MAX_LENGTH,
    AttributeLimits,
    check_attribute_key,
    one_line,
)

HEADER_SAMPLE_BYTES = 64 * 1024
CHUNK_ROWS = 50_000
# With the row bound this caps a chunk's memory: its rows as Python strings, plus the COPY payload
# made from them, for the chunk being parsed, the one queued and the one being written.
CHUNK_MAX_BYTES = 4 * 1024 * 1024
MAX_ROW_BYTES = 64 * 1024
MAX_REPORTED_ERRORS = 1000
# Subscriber fields an export writes that an import must not turn into attributes (nor set: an import
# never changes a status), so an exported file imports back cleanly.
IGNORED_COLUMNS = frozenset({"status", "created_at", "updated_at", "unsubscribed_at"})
EMAIL_MAX_LENGTH = 320
DELIMITERS = (",", ";")
UTF8_BOM = codecs.BOM_UTF8

# The common plain ASCII address: an unquoted dot-atom local part and an ordinary host name. It only
# accepts what email-validator accepts (tests compare the two); anything else goes to normalize_email.
_PLAIN_EMAIL = re.compile(
    r"(?P<local>[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})",
    re.ASCII,
)
_SPECIAL_DOMAINS = tuple(SPECIAL_USE_DOMAIN_NAMES)

log = logging.getLogger(__name__)

# line, email, name, then one value per attribute column (None for an empty cell)
ImportRow = tuple[Any, ...]


def fast_normalize_email(raw: str) -> str:
    """normalize_email, with a shortcut for plain addresses: email-validator costs ~30 µs a call,
    which alone would cap an import at ~30,000 rows/s."""
    value = raw.strip().lower()
    match = _PLAIN_EMAIL.fullmatch(value)
    if (
        match is not None
        and len(match["local"]) <= 64
        and len(value) <= 254
        and "--" not in match["domain"]
        and not match["domain"].endswith(_SPECIAL_DOMAINS)
    ):
        return value
    return normalize_email(raw)


@dataclass(frozen=True)
class CsvLayout:
    """What the header row says about the file's columns."""

    delimiter: str
    column_count: int
    email_index: int
    name_index: int | None
    attribute_columns: tuple[tuple[int, str], ...]

    @property
    def attribute_names(self) -> list[str]:
        return [name for _, name in self.attribute_columns]

    @property
    def attribute_indexes(self) -> list[int]:
        return [index for index, _ in self.attribute_columns]


@dataclass(frozen=True)
class ImportLimits:
    """IMPORT_MAX_LINE_BYTES and the attribute limits, as the importer applies them."""

    max_row_bytes: int = MAX_ROW_BYTES
    attributes: AttributeLimits = field(default_factory=AttributeLimits)

    @classmethod
    def from_config(cls, config: Any) -> ImportLimits:
        max_row_bytes = int(config.get("IMPORT_MAX_LINE_BYTES", MAX_ROW_BYTES))
        return cls(max_row_bytes, AttributeLimits.from_config(config))


def inspect_csv(path: Path, limits: ImportLimits | None = None) -> CsvLayout:
    """Check that the file can be imported at all and read its header; ImportFileError says why not."""
    limits = limits or ImportLimits()
    with path.open("rb") as file:
        sample = file.read(HEADER_SAMPLE_BYTES)
        whole_file_read = not file.read(1)
    if not sample.strip(b"\r\n\t \xef\xbb\xbf"):
        raise ImportFileError("The file is empty.")
    if b"\x00" in sample:
        raise ImportFileError("This is not a CSV text file (it contains binary data).")
    if sample.startswith(UTF8_BOM):
        sample = sample[len(UTF8_BOM):]
    header_bytes, newline, rest_bytes = sample.partition(b"\n")
    if not newline and not whole_file_read:
        raise ImportFileError("The first line is too long to be a CSV header row.")
    not_utf8 = "Save it as 'CSV UTF-8' and upload it again."
    try:
        header_line = header_bytes.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as error:
        raise ImportFileError(
            f"The file is not UTF-8 text (byte {error.start + 1} of line 1 cannot be decoded). {not_utf8}"
        ) from error
    # A stray bad byte is one invalid row; a file where most rows are not UTF-8 is another encoding.
    lines = rest_bytes.split(b"\n")
    if not whole_file_read:
        lines = lines[:-1]  # the last one may be cut in the middle of a character
    lines = [line for line in lines if line.strip()]
    undecodable = sum(1 for line in lines if not _is_utf8(line))
    if lines and undecodable * 2 > len(lines):
        raise ImportFileError(f"The file is not UTF-8 text ({undecodable} of the first {len(lines)} rows "
                              f"cannot be decoded). {not_utf8}")
    rest = rest_bytes.strip()
    layout = _layout_from_header(header_line, limits.attributes)
    if whole_file_read and not rest:
        raise ImportFileError("The file has a header row but no rows below it.")
    return layout


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _layout_from_header(header_line: str, limits: AttributeLimits) -> CsvLayout:
    candidates = []
    for delimiter in DELIMITERS:
        cells = next(csv.reader([header_line], delimiter=delimiter), [])
        names = [cell.strip() for cell in cells]
        if "email" in (name.lower() for name in names):
            candidates.append((len(names), delimiter, names))
    if not candidates:
        shown = header_line[:200]
        raise ImportFileError(
            f"The header row has no 'email' column (line 1 reads {shown!r}). The first row must name "
            "the columns, separated by ',' or ';', one of them 'email'."
        )
    _, delimiter, names = max(candidates)
    lowered = [name.lower() for name in names]
    if lowered.count("email") > 1:
        raise ImportFileError("The header row has more than one 'email' column.")
    if lowered.count("name") > 1:
        raise ImportFileError("The header row has more than one 'name' column.")
    attributes = [(index, name) for index, name in enumerate(names)
                  if name and name.lower() not in {"email", "name", *IGNORED_COLUMNS}]
    if len(attributes) > limits.max_keys:
        raise ImportFileError(
            f"The file has {len(attributes)} attribute columns; at most {limits.max_keys} are allowed."
        )
    seen: set[str] = set()
    for _, name in attributes:
        try:
            check_attribute_key(name, limits)
        except ValidationError as error:
            raise ImportFileError(f"The header row: {error.message}") from error
        if name in seen:
            raise ImportFileError(f"The header row names the column {name!r} twice.")
        seen.add(name)
    return CsvLayout(
        delimiter=delimiter,
        column_count=len(names),
        email_index=lowered.index("email"),
        name_index=lowered.index("name") if "name" in lowered else None,
        attribute_columns=tuple(attributes),
    )


def count_data_lines(path: Path) -> int:
    """A fast estimate of the rows below the header (quoted line breaks make it an overestimate),
    for the progress bar until the import finishes and the true count replaces it."""
    lines = 0
    last = b"\n"
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


@dataclass
class ErrorLog:
    count: int = 0
    first: list[dict[str, Any]] = field(default_factory=list)

    def add(self, line: int, email: str, reason: str) -> None:
        self.count += 1
        if len(self.first) < MAX_REPORTED_ERRORS:
            self.first.append({"line": line, "email": email[:EMAIL_MAX_LENGTH], "reason": reason})


@dataclass
class ParsedChunk:
    rows: list[ImportRow]
    processed: int  # data rows read, valid or not
    duplicates: int  # emails repeated within this chunk (across chunks the writer finds them)
    # The error log as of this chunk's last row, so progress committed with the chunk adds up.
    error_count: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    # The rows in the form the writer stores them, made in the parsing thread (writer.prepare).
    prepared: Any = None


class RowTooLongError(Exception):
    """Raised by BoundedLines into csv.reader's next(): the row is over the limit and was dropped."""


# What makes a row need the slow path of name and attribute cleaning: a NUL or another control
# character. Line ends are all "\n" here (the file is read with universal newlines); a quoted line
# break shows up as a row of more than one line.
_NEEDS_CLEANING = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
BLOCK_CHARS = 256 * 1024


class BoundedLines:
    """The lines of the file for csv.reader, at most max_row_bytes per row.

    csv.reader asks for one more line while a quoted field is open, so a row is the lines read between
    two start_row() calls. When a row goes over the limit, RowTooLongError ends it (csv.reader starts
    afresh at the next call) and the rest of its line is dropped unread into memory; the lines after
    it are read as new rows.

    The file is read in blocks of BLOCK_CHARS, split into lines at C speed; what costs per line here is
    kept small: the control-character search and the UTF-8 size run only in blocks that need them.

    Why this bounds memory: csv.reader never sees more than max_row_bytes + 1 characters per row, so a
    row has at most that many cells; each cell costs a pointer in the list plus at most one str object
    (~50 bytes plus its characters), so the default 64 KiB limit caps a row at about 64K x 58 bytes =
    3.7 MB, however long the line in the file is. A block holds at most BLOCK_CHARS characters plus
    the start of a line of at most max_row_bytes."""

    def __init__(self, file: TextIO, max_row_bytes: int) -> None:
        self.file = file
        self.max_row_bytes = max_row_bytes
        self.line_number = 0  # lines read so far
        self.row_bytes = 0
        self.row_lines = 0
        self.needs_cleaning = False
        self._lines: Iterator[str] = iter(())
        self._carry = ""  # the start of a line that continues in the next block
        self._dropping = False  # skipping the rest of an over-long line
        self._block_is_ascii = True
        self._block_needs_cleaning = False

    def start_row(self) -> None:
        self.row_bytes = self.row_lines = 0
        self.needs_cleaning = False

    def __iter__(self) -> BoundedLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines, None)
        if line is None:
            if not self._read_block():
                raise StopIteration
            line = next(self._lines)
        self.line_number += 1
        self.row_lines += 1
        if self._block_is_ascii or line.isascii():
            self.row_bytes += len(line)
        else:  # surrogate escapes stand for undecodable bytes: this is the line's size in the file
            self.row_bytes += len(line.encode("utf-8", "surrogateescape"))
        if self.row_bytes > self.max_row_bytes:
            raise RowTooLongError
        if self.row_lines > 1 or (self._block_needs_cleaning and _NEEDS_CLEANING.search(line)):
            self.needs_cleaning = True
        return line

    def _read_block(self) -> bool:
        """The next block's lines into self._lines; False at the end of the file."""
        while True:
            text = self.file.read(BLOCK_CHARS)
            if not text:
                if not self._carry or self._dropping:
                    return False
                text, self._carry = self._carry, ""
                break
            if self._dropping:
                cut = text.find("\n")
                if cut < 0:
                    continue
                self._dropping = False
                text = text[cut + 1:]
            text = self._carry + text
            cut = text.rfind("\n") + 1
            self._carry = text[cut:]
            text = text[:cut]
            if len(self._carry) > self.max_row_bytes:
                # Over the limit with no end in sight: hand csv.reader what makes the row too long
                # (__next__ refuses it) and drop the rest of the line as it is read.
                text += self._carry[: self.max_row_bytes + 1]
                self._carry, self._dropping = "", True
            if text:
                break
        self._block_is_ascii = text.isascii()
        self._block_needs_cleaning = _NEEDS_CLEANING.search(text) is not None
        if self._block_needs_cleaning:  # splitlines would also split at some control characters
            lines = [line + "\n" for line in text.split("\n")]
            lines[-1] = lines[-1][:-1]
            if not lines[-1]:
                lines.pop()
        else:
            lines = text.splitlines(keepends=True)
        self._lines = iter(lines)
        return True


def parse_chunks(
    path: Path,
    layout: CsvLayout,
    errors: ErrorLog,
    chunk_rows: int = CHUNK_ROWS,
    skip_records: int = 0,
    limits: ImportLimits | None = None,
) -> Iterator[ParsedChunk]:
    """Stream the data rows, validated and normalised, chunk by chunk. Blank lines are ignored."""
    limits = limits or ImportLimits()
    # Universal newlines: a line break inside a quoted field becomes a space anyway (validation.one_line).
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as file:
        # The header row: inspect_csv checked it, within its sample, whatever the row limit.
        lines = BoundedLines(file, max(limits.max_row_bytes, HEADER_SAMPLE_BYTES))
        reader = csv.reader(lines, delimiter=layout.delimiter)
        next(reader, None)
        lines.max_row_bytes = limits.max_row_bytes
        rows: dict[str, ImportRow] = {}
        processed = duplicates = chunk_bytes = 0
        skipped_records = 0
        while True:
            first_line = lines.line_number + 1
            lines.start_row()
            try:
                cells = next(reader)
            except StopIteration:
                break
            except (csv.Error, RowTooLongError) as error:
                if skipped_records < skip_records:
                    skipped_records += 1
                    continue
                processed += 1
                if isinstance(error, RowTooLongError):
                    where = f"The row from line {first_line}" if lines.row_lines > 1 else f"Line {first_line}"
                    errors.add(first_line, "", f"{where} is longer than {limits.max_row_bytes} bytes.")
                else:
                    errors.add(first_line, "", f"Not valid CSV: {error}")
            else:
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue
                if skipped_records < skip_records:
                    skipped_records += 1
                    continue
                processed += 1
                chunk_bytes += lines.row_bytes
                row = _parse_row(first_line, cells, layout, errors, lines, limits)
                if row is not None:
                    if row[1] in rows:
                        duplicates += 1
                    else:
                        rows[row[1]] = row
            if processed >= chunk_rows or chunk_bytes >= CHUNK_MAX_BYTES:
                yield ParsedChunk(
                    list(rows.values()), processed, duplicates, errors.count, list(errors.first)
                )
                rows, processed, duplicates, chunk_bytes = {}, 0, 0, 0
        if processed:
            yield ParsedChunk(list(rows.values()), processed, duplicates, errors.count, list(errors.first))


def _parse_row(
    line: int,
    cells: list[str],
    layout: CsvLayout,
    errors: ErrorLog,
    lines: BoundedLines,
    limits: ImportLimits,
) -> ImportRow | None:
    raw_email = cells[layout.email_index] if layout.email_index < len(cells) else ""
    if len(cells) != layout.column_count:
        errors.add(line, _printable(raw_email[:EMAIL_MAX_LENGTH]),
                   f"Expected {layout.column_count} columns, found {len(cells)}.")
        return None
    for cell in cells:
        if not cell.isascii():
            try:
                cell.encode("utf-8")
            except UnicodeEncodeError:
                errors.add(line, _printable(raw_email), "The row is not valid UTF-8.")
                return None
    if lines.needs_cleaning and any("\x00" in cell for cell in cells):
        errors.add(line, _printable(raw_email).replace("\x00", ""), "The row contains a NUL character.")
        return None
    if not raw_email.strip():
        errors.add(line, "", "The email is empty.")
        return None
    try:
        email = fast_normalize_email(raw_email)
    except ValidationError as error:
        errors.add(line, raw_email, error.message)
        return None
    name = cells[layout.name_index].strip() if layout.name_index is not None else ""
    if lines.needs_cleaning:
        name = one_line(name).strip()
    if len(name) > NAME_MAX_LENGTH:
        errors.add(line, email, f"The name is longer than {NAME_MAX_LENGTH} characters.")
        return None
    # Empty cells become None: they never overwrite what is stored.
    values = [cells[index] or None for index in layout.attribute_indexes]
    if lines.needs_cleaning:
        values = [value if value is None else one_line(value) for value in values]
    max_value_bytes = limits.attributes.max_value_bytes
    if lines.row_bytes > max_value_bytes:  # else no cell of the row can be over the limit
        for key, value in zip(layout.attribute_names, values, strict=True):
            if value is not None and len(value.encode("utf-8")) > max_value_bytes:
                errors.add(line, email, f"The value of {key!r} is longer than {max_value_bytes} bytes.")
                return None
    return (line, email, name, *values)


def _printable(value: str) -> str:
    return value.encode("utf-8", "replace").decode("utf-8")


@dataclass
class ChunkCounts:
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    # (line, email) of rows of existing subscribers this file would take past the attribute limit.
    too_many_attributes: list[tuple[int, str]] = field(default_factory=list)


def too_many_attributes_reason(max_keys: int) -> str:
    return f"With this file's columns the subscriber would have more than {max_keys} attributes."


class PostgresChunkWriter:
    """COPY into a temporary staging table (one text column per attribute: PostgreSQL builds the JSON),
    then per chunk: look up which emails exist, a plain INSERT for the new ones with their memberships,
    and set-based updates for the existing ones.

    Why not one INSERT ... ON CONFLICT DO UPDATE for every row: in a large import almost every row is
    new, and the speculative insertion, the join that finds the memberships of existing subscribers
    and an email-keyed table of emails already seen cost more than the insert itself. Here a new row
    costs one index probe, its inserts, and one integer in `import_seen` (the subscriber ids this
    import has touched). An email that an earlier chunk of the file stored is found by the look-up, so
    only existing subscribers are checked against `import_seen`.

    Every statement works from the chunk's rows and probes an index per row (`enable_hashjoin` and
    `enable_mergejoin` off): without statistics on the staging table the planner would otherwise hash
    the whole subscribers table for each chunk, a cost that grows with the table instead of the chunk.

    The look-up sees what was committed when it ran. If another transaction stores one of the chunk's
    emails (or deletes one of its subscribers) between the look-up and the writes, a unique or foreign
    key violation rolls the chunk back to its savepoint and it runs again, now seeing that change."""

    LOOKUP = """
        UPDATE import_stage SET subscriber_id = subscribers.id
        FROM subscribers WHERE subscribers.email = import_stage.email
    """
    # New subscribers go in in email order, so the email index is filled page by page. Byte order (the
    # "C" collation) sorts several times faster than a locale, and is the index's order under C.UTF-8.
    INSERT_NEW = """
        WITH created AS (
            INSERT INTO subscribers (email, name, attributes, status, created_at, updated_at)
            SELECT stage.email, stage.name, {attributes}, 'active', :now, :now
            FROM import_stage AS stage
            WHERE stage.subscriber_id IS NULL
            ORDER BY stage.email COLLATE "C"
            RETURNING id
        ), members AS (
            INSERT INTO list_members (list_id, subscriber_id) SELECT :list_id, id FROM created
        ), seen AS (
            INSERT INTO import_seen (subscriber_id) SELECT id FROM created
        )
        SELECT count(*) FROM created
    """
    # Existing subscribers that an earlier chunk already took from this file: duplicates, dropped.
    DROP_REPEATS = """
        DELETE FROM import_stage USING import_seen
        WHERE import_stage.subscriber_id IS NOT NULL
          AND import_seen.subscriber_id = import_stage.subscriber_id
    """
    # Existing subscribers whose attributes this file would take past the limit (never below what they
    # already have): invalid rows, nothing of them stored. Only a changed row can add keys, so an
    # unchanged one (every row of a re-import) costs no look-up.
    REFUSE_TOO_MANY = """
        DELETE FROM import_stage AS stage
        WHERE stage.changed AND EXISTS (
            SELECT 1 FROM subscribers WHERE subscribers.id = stage.subscriber_id
              AND (SELECT count(*) FROM jsonb_object_keys(subscribers.attributes || {attributes}))
                  > greatest(:max_keys, (SELECT count(*) FROM jsonb_object_keys(subscribers.attributes))))
        RETURNING stage.line, stage.email
    """
    REMEMBER_EXISTING = """
        INSERT INTO import_seen (subscriber_id)
        SELECT subscriber_id FROM import_stage WHERE subscriber_id IS NOT NULL
    """
    CLASSIFY_EXISTING = """
        UPDATE import_stage AS stage SET
            changed = (stage.name <> '' AND stage.name <> subscribers.name)
                      OR NOT subscribers.attributes @> {attributes},
            -- A scalar subquery, so it is always one primary key probe per row: an EXISTS may become
            -- a hash of the whole list, a join may scan the whole list per row on stale statistics.
            member = (SELECT true FROM list_members
                      WHERE list_members.list_id = :list_id AND list_members.subscriber_id = subscribers.id)
                     IS NOT NULL
        FROM subscribers
        WHERE stage.subscriber_id IS NOT NULL AND subscribers.id = stage.subscriber_id
    """
    UPDATE_CHANGED = """
        UPDATE subscribers SET
            name = CASE WHEN stage.name <> '' THEN stage.name ELSE subscribers.name END,
            attributes = subscribers.attributes || {attributes},
            updated_at = :now
        FROM import_stage AS stage
        WHERE stage.changed AND subscribers.id = stage.subscriber_id
    """
    JOIN_LIST = """
        INSERT INTO list_members (list_id, subscriber_id)
        SELECT :list_id, subscriber_id FROM import_stage WHERE subscriber_id IS NOT NULL AND NOT member
        ON CONFLICT DO NOTHING
    """
    COUNT_EXISTING = """
        SELECT count(*) FILTER (WHERE changed),
               count(*) FILTER (WHERE NOT changed AND NOT member),
               count(*) FILTER (WHERE NOT changed AND member)
        FROM import_stage WHERE subscriber_id IS NOT NULL
    """
    MAX_ATTEMPTS = 5

    def __init__(self, attribute_names: list[str], max_keys: int) -> None:
        self.attribute_names = attribute_names
        self.max_keys = max_keys
        self.columns = ["line", "email", "name"] + [f"a{i}" for i in range(len(attribute_names))]
        if attribute_names:
            keys = ", ".join(f":key{i}" for i in range(len(attribute_names)))
            values = ", ".join(f"stage.a{i}" for i in range(len(attribute_names)))
            attributes = f"jsonb_strip_nulls(jsonb_object(ARRAY[{keys}]::text[], ARRAY[{values}]))"
        else:
            attributes = "'{}'::jsonb"
        self.insert_new = text(self.INSERT_NEW.format(attributes=attributes))
        self.classify_existing = text(self.CLASSIFY_EXISTING.format(attributes=attributes))
        self.update_changed = text(self.UPDATE_CHANGED.format(attributes=attributes))
        self.refuse_too_many = text(self.REFUSE_TOO_MANY.format(attributes=attributes))
        self.join_list = text(self.JOIN_LIST)
        self.keys = {f"key{i}": name for i, name in enumerate(attribute_names)}

    def start(self, connection: Connection) -> None:
        attribute_columns = "".join(f", a{i} text" for i in range(len(self.attribute_names)))
        connection.exec_driver_sql("DROP TABLE IF EXISTS pg_temp.import_stage")
        connection.exec_driver_sql(
            f"CREATE TEMP TABLE import_stage (line integer, email text, name text{attribute_columns}, "
            "subscriber_id integer, changed boolean, member boolean) ON COMMIT DELETE ROWS"
        )
        connection.exec_driver_sql("DROP TABLE IF EXISTS pg_temp.import_seen")
        connection.exec_driver_sql("CREATE TEMP TABLE import_seen (subscriber_id integer PRIMARY KEY)")

    def prepare(self, rows: list[ImportRow]) -> io.BytesIO:
        """The COPY payload, made in the parsing thread: the writer thread then only waits on PostgreSQL."""
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return io.BytesIO(buffer.getvalue().encode("utf-8"))

    def write(
        self, connection: Connection, list_id: int, rows: list[ImportRow], prepared: Any
    ) -> ChunkCounts:
        # JIT compiling these statements costs more than running them; sorts of a chunk fit in memory
        # with a larger work_mem. Not waiting for the WAL flush at each chunk's commit is safe: a
        # chunk lost in a server crash lost its counters with it, and the task resumes there.
        connection.exec_driver_sql("SET LOCAL jit = off")
        connection.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
        connection.exec_driver_sql("SET LOCAL enable_hashjoin = off")
        connection.exec_driver_sql("SET LOCAL enable_mergejoin = off")
        cursor = connection.connection.cursor()
        try:
            # One read of the whole payload: each read takes the GIL, which the parsing thread holds
            # for up to 5 ms at a time, so the default 8 kB reads made COPY wait seconds per chunk.
            cursor.copy_expert(
                # An empty name is '' (an empty cell), never NULL; empty attribute cells are NULL.
                f"COPY import_stage ({', '.join(self.columns)}) FROM STDIN "
                "WITH (FORMAT csv, FORCE_NOT_NULL (name))",
                prepared,
                size=len(prepared.getbuffer()),
            )
        finally:
            cursor.close()
        now = utcnow().replace(tzinfo=None)
        for attempt in range(1, self.MAX_ATTEMPTS + 1):
            savepoint = connection.begin_nested()
            try:
                counts = self._store(connection, list_id, now)
            except IntegrityError:
                savepoint.rollback()
                if attempt == self.MAX_ATTEMPTS:
                    raise
                log.info("import chunk met a concurrent change to its subscribers; running it again")
                continue
            savepoint.commit()
            counts.duplicates = (len(rows) - counts.imported - counts.updated - counts.unchanged
                                 - len(counts.too_many_attributes))
            return counts
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _store(self, connection: Connection, list_id: int, now: datetime) -> ChunkCounts:
        parameters = {"now": now, "list_id": list_id, "max_keys": self.max_keys, **self.keys}
        existing = connection.exec_driver_sql(self.LOOKUP).rowcount
        imported = connection.execute(self.insert_new, parameters).scalar_one()
        if not existing:
            return ChunkCounts(imported=imported)
        connection.exec_driver_sql(self.DROP_REPEATS)
        connection.exec_driver_sql(self.REMEMBER_EXISTING)
        connection.execute(self.classify_existing, parameters)
        too_many: list[tuple[int, str]] = []
        if self.attribute_names:
            too_many = [tuple(row) for row in connection.execute(self.refuse_too_many, parameters)]
        connection.execute(self.update_changed, parameters)
        connection.execute(self.join_list, parameters)
        changed, joined, unchanged = connection.exec_driver_sql(self.COUNT_EXISTING).one()
        return ChunkCounts(imported=imported, updated=changed + joined, unchanged=unchanged,
                           too_many_attributes=too_many)

    def finish(self, connection: Connection) -> None:
        connection.exec_driver_sql("DROP TABLE IF EXISTS pg_temp.import_seen")
        connection.exec_driver_sql("DROP TABLE IF EXISTS pg_temp.import_stage")


class SqliteChunkWriter:
    """executemany into a temporary staging table, classify each row, then set-based writes."""

    def __init__(self, attribute_names: list[str], max_keys: int) -> None:
        self.attribute_names = attribute_names
        self.max_keys = max_keys

    def _staged(self, row: ImportRow) -> tuple[int, str, str, str]:
        attributes = {key: value for key, value in zip(self.attribute_names, row[3:], strict=True) if value}
        return row[0], row[1], row[2], json.dumps(attributes, ensure_ascii=False)

    def start(self, connection: Connection) -> None:
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.import_stage")
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.import_seen")
        connection.exec_driver_sql(
            "CREATE TEMP TABLE import_stage (line INTEGER, email TEXT PRIMARY KEY, name TEXT, "
            "attributes TEXT, subscriber_id INTEGER, kind TEXT)"
        )
        connection.exec_driver_sql("CREATE TEMP TABLE import_seen (email TEXT PRIMARY KEY)")

    def prepare(self, rows: list[ImportRow]) -> list[tuple[int, str, str, str]]:
        return [self._staged(row) for row in rows]

    def write(
        self, connection: Connection, list_id: int, rows: list[ImportRow], prepared: Any
    ) -> ChunkCounts:
        connection.exec_driver_sql("DELETE FROM temp.import_stage")
        connection.exec_driver_sql(
            "INSERT INTO temp.import_stage (line, email, name, attributes) VALUES (?, ?, ?, ?)", prepared
        )
        duplicates = connection.exec_driver_sql(
            "DELETE FROM temp.import_stage WHERE email IN (SELECT email FROM temp.import_seen)"
        ).rowcount
        connection.exec_driver_sql("INSERT INTO temp.import_seen (email) SELECT email FROM temp.import_stage")
        connection.exec_driver_sql(
            "UPDATE temp.import_stage SET subscriber_id = "
            "(SELECT id FROM subscribers WHERE subscribers.email = import_stage.email)"
        )
        # Classify before writing: 'new', 'changed' (name or attributes differ), 'joined' (same data,
        # not yet on the list) or 'same'.
        connection.execute(
            text(
                """
                UPDATE temp.import_stage SET kind = CASE
                    WHEN subscriber_id IS NULL THEN 'new'
                    WHEN EXISTS (SELECT 1 FROM subscribers AS s WHERE s.id = import_stage.subscriber_id AND (
                            (import_stage.name <> '' AND import_stage.name <> s.name)
                            OR json(json_patch(s.attributes, import_stage.attributes)) <> json(s.attributes)))
                        -- Only a change can add keys: past the limit (never below what is stored), refused.
                        THEN CASE WHEN EXISTS (
                          SELECT 1 FROM subscribers AS s WHERE s.id = import_stage.subscriber_id AND
                          (SELECT count(*) FROM json_each(json_patch(s.attributes, import_stage.attributes)))
                          > max(:max_keys, (SELECT count(*) FROM json_each(s.attributes))))
                        THEN 'too_many' ELSE 'changed' END
                    WHEN NOT EXISTS (
                        SELECT 1 FROM list_members AS m
                        WHERE m.list_id = :list_id AND m.subscriber_id = import_stage.subscriber_id)
                        THEN 'joined'
                    ELSE 'same' END
                """
            ),
            {"list_id": list_id, "max_keys": self.max_keys},
        )
        now = utcnow().replace(tzinfo=None).isoformat(sep=" ")
        connection.execute(
            text(
                """
                UPDATE subscribers SET
                    name = CASE WHEN stage.name <> '' THEN stage.name ELSE subscribers.name END,
                    attributes = json_patch(subscribers.attributes, stage.attributes),
                    updated_at = :now
                FROM temp.import_stage AS stage
                WHERE stage.kind = 'changed' AND subscribers.id = stage.subscriber_id
                """
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO subscribers (email, name, attributes, status, created_at, updated_at) "
                "SELECT email, name, attributes, 'active', :now, :now FROM temp.import_stage "
                "WHERE kind = 'new' ORDER BY line"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT OR IGNORE INTO list_members (list_id, subscriber_id) "
                "SELECT :list_id, subscribers.id FROM temp.import_stage AS stage "
                "JOIN subscribers ON subscribers.email = stage.email WHERE stage.kind <> 'too_many'"
            ),
            {"list_id": list_id},
        )
        kinds = dict(
            connection.exec_driver_sql("SELECT kind, count(*) FROM temp.import_stage GROUP BY kind").all()
        )
        too_many = connection.exec_driver_sql(
            "SELECT line, email FROM temp.import_stage WHERE kind = 'too_many' ORDER BY line"
        ).all()
        return ChunkCounts(
            imported=kinds.get("new", 0),
            updated=kinds.get("changed", 0) + kinds.get("joined", 0),
            unchanged=kinds.get("same", 0),
            duplicates=duplicates,
            too_many_attributes=[tuple(row) for row in too_many],
        )

    def finish(self, connection: Connection) -> None:
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.import_stage")
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.import_seen")


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
