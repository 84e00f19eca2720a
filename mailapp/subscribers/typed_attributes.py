"""Attributes as typed form rows (text, number, date, yes/no) instead of raw JSON: rows to a dict and
back, and the attribute names the data already has, offered as suggestions."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from sqlalchemy import select

from mailapp.errors import ValidationError, field_problem
from mailapp.extensions import db
from mailapp.models.subscriber import Subscriber

TYPES = ("text", "number", "date", "yes/no")
# Suggestions come from the newest subscribers only: one short primary-key range at any table size.
SUGGESTION_SAMPLE = 1000
MAX_SUGGESTIONS = 200
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def typed_rows(attributes: dict[str, Any] | None) -> list[tuple[str, str, str]] | None:
    """(key, type, value as text) per attribute; None when a value has no typed form (a nested object,
    a list or null), and the form falls back to JSON."""
    rows = []
    for key, value in (attributes or {}).items():
        if isinstance(value, bool):
            rows.append((key, "yes/no", "yes" if value else "no"))
        elif isinstance(value, int | float):
            rows.append((key, "number", f"{value:g}" if isinstance(value, float) else str(value)))
        elif isinstance(value, str):
            rows.append((key, "date" if _DATE.match(value) else "text", value))
        else:
            return None
    return rows


def attributes_from_rows(keys: list[str], types: list[str], values: list[str]) -> dict[str, Any]:
    """The dict the rows mean; a row with no name is ignored. ValidationError names the row."""
    attributes: dict[str, Any] = {}
    for n, (key, kind, raw) in enumerate(zip(keys, types, values, strict=False), start=1):
        key = key.strip()
        if not key:
            continue
        if key in attributes:
            raise _bad(n, key, "appears twice")
        raw = raw.strip()
        if kind == "number":
            try:
                number = float(raw)
            except ValueError:
                raise _bad(n, key, f"{raw!r} is not a number") from None
            if number != number or number in (float("inf"), float("-inf")):
                raise _bad(n, key, "is not a finite number")
            attributes[key] = int(number) if re.fullmatch(r"-?\d+", raw) else number
        elif kind == "date":
            try:
                attributes[key] = date.fromisoformat(raw).isoformat()
            except ValueError:
                raise _bad(n, key, f"{raw!r} is not a date (YYYY-MM-DD)") from None
        elif kind == "yes/no":
            if raw not in ("yes", "no"):
                raise _bad(n, key, "must be yes or no")
            attributes[key] = raw == "yes"
        elif kind == "text":
            attributes[key] = raw
        else:
            raise _bad(n, key, f"has an unknown type {kind!r}")
    return attributes


def _bad(row: int, key: str, problem: str) -> ValidationError:
    message = f"Attribute row {row} ({key[:40]!r}) {problem}."
    return ValidationError(message, [field_problem("attributes", message)])


def key_suggestions() -> list[str]:
    """The attribute names of the newest subscribers, sorted."""
    newest = select(Subscriber.attributes).order_by(Subscriber.id.desc()).limit(SUGGESTION_SAMPLE)
    sample = db.session.scalars(newest)
    keys: set[str] = set()
    for attributes in sample:
        keys.update(attributes or {})
        if len(keys) >= MAX_SUGGESTIONS:
            break
    return sorted(keys)[:MAX_SUGGESTIONS]
