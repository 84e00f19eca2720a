"""What every API endpoint shares: JSON body parsing and the page envelope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request
from sqlalchemy import Select, func, select

from mailapp.errors import ValidationError
from mailapp.extensions import db

MAX_PER_PAGE = 500


def json_body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValidationError("The request body must be a JSON object.")
    return data


def page_args() -> tuple[int, int]:
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", 50))
    except ValueError as error:
        raise ValidationError("page and per_page must be whole numbers.") from error
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise ValidationError(f"page must be >= 1 and per_page between 1 and {MAX_PER_PAGE}.")
    return page, per_page


def paginated(statement: Select, serialize: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """{"items", "page", "per_page", "total"} for a select of ORM rows, ordered by the caller."""
    page, per_page = page_args()
    total = db.session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    rows = db.session.scalars(statement.limit(per_page).offset((page - 1) * per_page))
    return {"items": [serialize(row) for row in rows], "page": page, "per_page": per_page, "total": total}
