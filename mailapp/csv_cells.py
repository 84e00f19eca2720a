"""Every CSV file the app writes goes through here, so that no cell, header row included, reaches a
spreadsheet as a formula (OWASP "CSV injection")."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

# Cells starting with these are run as formulas by spreadsheet programs.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def guard_cell(value: Any) -> str:
    """The cell's text, with a leading apostrophe (shown by no spreadsheet) where it would start a
    formula. None is empty; objects, lists and booleans are written as JSON."""
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    elif isinstance(value, dict | list | bool):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def guarded_row(values: Iterable[Any]) -> list[str]:
    return [guard_cell(value) for value in values]


def csv_line(values: Iterable[Any]) -> str:
    """One CSV record (CRLF-terminated, as RFC 4180 and csv.writer write it) of guarded cells."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(guarded_row(values))
    return out.getvalue()
