"""CSV import, first look: check that an uploaded file can be imported and read its header row.

What importer.py's docstring says about columns applies here: `email` (required) and `name` match
case-insensitively, an export's own columns are ignored, every other named column is an attribute.
"""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mailapp.errors import ImportFileError, ValidationError
from mailapp.subscribers.validation import AttributeLimits, check_attribute_key

HEADER_SAMPLE_BYTES = 64 * 1024
MAX_ROW_BYTES = 64 * 1024
# Subscriber fields an export writes that an import must not turn into attributes (nor set: an import
# never changes a status), so an exported file imports back cleanly.
IGNORED_COLUMNS = frozenset({"status", "created_at", "updated_at", "unsubscribed_at"})
DELIMITERS = (",", ";")
UTF8_BOM = codecs.BOM_UTF8


@dataclass(frozen=True)
class CsvLayout:
    """What the header row says about the file's columns."""

    delimiter: str
    column_count: int
    email_index: int
    name_index: int | None
    attribute_columns: tuple[tuple[int, str], ...]

    # Cached: the importer reads them for every row.
    @cached_property
    def attribute_names(self) -> list[str]:
        return [name for _, name in self.attribute_columns]

    @cached_property
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
