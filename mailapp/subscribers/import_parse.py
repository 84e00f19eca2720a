"""CSV import, reading: stream an uploaded file's rows, validated and normalised, in bounded chunks.

Memory is bounded whatever the file (see BoundedLines and CHUNK_MAX_BYTES); importer.py's docstring
says what the counters mean and which rows are invalid.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from email_validator import SPECIAL_USE_DOMAIN_NAMES

from mailapp.addresses import normalize_email
from mailapp.errors import ValidationError
from mailapp.subscribers.import_file import HEADER_SAMPLE_BYTES, CsvLayout, ImportLimits
from mailapp.subscribers.validation import NAME_MAX_LENGTH, one_line

CHUNK_ROWS = 50_000
# With the row bound this caps a chunk's memory: its rows as Python strings, plus the COPY payload
# made from them, for the chunk being parsed, the one queued and the one being written.
CHUNK_MAX_BYTES = 4 * 1024 * 1024
MAX_REPORTED_ERRORS = 1000
EMAIL_MAX_LENGTH = 320

# The common plain ASCII address: an unquoted dot-atom local part and an ordinary host name. It only
# accepts what email-validator accepts (tests compare the two); anything else goes to normalize_email.
_PLAIN_EMAIL = re.compile(
    r"(?P<local>[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})",
    re.ASCII,
)
_SPECIAL_DOMAINS = tuple(SPECIAL_USE_DOMAIN_NAMES)

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
    if len(cells) > layout.column_count:
        errors.add(line, _printable(raw_email[:EMAIL_MAX_LENGTH]),
                   f"Expected {layout.column_count} columns, found {len(cells)}.")
        return None
    if len(cells) < layout.column_count:
        # Spreadsheets drop trailing empty cells when they save CSV: the missing cells are empty ones.
        cells = cells + [""] * (layout.column_count - len(cells))
    if not all(map(str.isascii, cells)):  # the common row is ASCII: one C-level pass decides
        for cell in cells:
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
