"""What every API endpoint shares: JSON body parsing (bounded in size and depth, with strings the
database can store), ids from query strings, and the page envelope."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from flask import current_app, request
from sqlalchemy import Select, func, select

from mailapp.errors import JSONBodyError, UnstorableTextError, ValidationError
from mailapp.extensions import db
from mailapp.ids import MAX_ID, MAX_PAGE, MIN_ID, id_from_text
from mailapp.json_nesting import MAX_JSON_DEPTH, nesting_exceeds

MAX_PER_PAGE = 500
# Left by json.loads only where the text had an unpaired \uXXXX escape; UTF-8 (and so the database)
# cannot hold them. PostgreSQL refuses NUL in text as well.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def json_body(*, optional: bool = False, max_bytes: int | None = None) -> dict[str, Any]:
    """The request's JSON object. Refused with 413 beyond max_bytes (API_MAX_JSON_BYTES by default),
    with 422 JSONBodyError when it is not UTF-8 JSON or nests deeper than MAX_JSON_DEPTH, and with 422
    UnstorableTextError when a string or key holds a NUL or a lone surrogate (details name the field).
    optional: an empty body is {}."""
    limit = max_bytes or int(current_app.config["API_MAX_JSON_BYTES"])
    # Read no further than the limit: werkzeug answers 413 from the Content-Length or mid-stream.
    request.max_content_length = limit
    raw = request.get_data(cache=True)
    if optional and not raw.strip():
        return {}
    if not request.is_json:
        raise JSONBodyError(
            "The request body must be a JSON object, sent with Content-Type: application/json.",
            [{"field": None}],
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise JSONBodyError(
            f"The request body is not UTF-8 (byte {error.start}).", [{"field": None}]
        ) from error
    if nesting_exceeds(text):
        raise JSONBodyError(
            f"The request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels.",
            [{"field": None, "max_depth": MAX_JSON_DEPTH}],
        )
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except ValueError as error:
        where = ""
        if isinstance(error, json.JSONDecodeError):
            where = f" at line {error.lineno}, column {error.colno}"
        raise JSONBodyError(f"The request body is not valid JSON{where}.", [{"field": None}]) from error
    if not isinstance(data, dict):
        raise ValidationError("The request body must be a JSON object.", [{"field": None}])
    require_storable_text(data)
    return data


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal} is out of range")
    return value


def refuse_unknown_fields(data: dict[str, Any], allowed: set[str], what: str) -> None:
    """ValidationError naming each field of the body that is not one of `what`'s."""
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationError(
            f"Unknown field(s): {', '.join(unknown)}.",
            [{"field": name, "message": f"Not a field of {what}."} for name in unknown],
        )


def require_storable_text(fields: dict[str, Any]) -> None:
    """The same refusal as json_body's, for values that came another way (a multipart form, a file)."""
    field = _unstorable_string_at(fields, "")
    if field is not None:
        raise UnstorableTextError(
            f"{field or 'A key'} holds a NUL character or an unpaired UTF-16 surrogate, "
            "which cannot be stored.",
            [{"field": field or None}],
        )


def _unstorable_string_at(value: Any, path: str) -> str | None:
    """The path (like 'attributes.city' or 'list_ids[2]') of the first string or key holding a NUL or
    a lone surrogate; '' for the top-level object's own keys; None when every string is storable."""
    if isinstance(value, str):
        return path if _UNSTORABLE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if _UNSTORABLE.search(key):
                return path
            found = _unstorable_string_at(item, child)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable_string_at(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def query_id(name: str) -> int | None:
    """An id from the query string (?list_id=7); None when absent or blank; 422 when not an id."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    parsed = id_from_text(raw)
    if parsed is None:
        raise ValidationError(
            f"{name} must be a whole number between {MIN_ID} and {MAX_ID}.", [{"field": name}]
        )
    return parsed


def number_arg(name: str, default: int, low: int, high: int) -> int:
    """?name= as a whole number in low..high; default when absent or blank; 422 naming it otherwise."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return default
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= len(str(high)) else None
    if value is None or not low <= value <= high:
        raise ValidationError(f"{name} must be a whole number between {low} and {high}.", [{"field": name}])
    return value


def page_args() -> tuple[int, int]:
    page = number_arg("page", 1, 1, MAX_PAGE)
    per_page = number_arg("per_page", 50, 1, MAX_PER_PAGE)
    return page, per_page


def paginated(statement: Select, serialize: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """{"items", "page", "per_page", "total"} for a select of ORM rows, ordered by the caller."""
    page, per_page = page_args()
    total = db.session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    rows = db.session.scalars(statement.limit(per_page).offset((page - 1) * per_page))
    return {"items": [serialize(row) for row in rows], "page": page, "per_page": per_page, "total": total}
