"""Row ids as they arrive from outside (URL paths, query strings, JSON bodies, forms): whole numbers in
the range of the database's BIGINT keys. A number outside it cannot name a row, and handed to the
database it would overflow the driver (a 500) instead of simply matching nothing."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter, Map

from mailapp.errors import ValidationError

MIN_ID = 1
MAX_ID = 2**63 - 1  # BIGINT on PostgreSQL, INTEGER (64-bit) on SQLite
# Far beyond any real list, and small enough that (page - 1) * per_page stays a 64-bit OFFSET.
MAX_PAGE = 1_000_000_000


def is_id(value: Any) -> bool:
    """An int (not a bool) that can be a row id."""
    return isinstance(value, int) and not isinstance(value, bool) and MIN_ID <= value <= MAX_ID


def id_from_text(raw: str) -> int | None:
    """'42' -> 42; None for anything that is not ASCII digits naming an id ('²', '1e3', '-1', 2**64)."""
    text = raw.strip()
    # isdigit() alone accepts '²' and other digits int() refuses; a long run of digits cannot be an id.
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
        return None
    value = int(text)
    return value if MIN_ID <= value <= MAX_ID else None


def id_arg(text: str) -> int:
    """type= for request.args.get(): an id, or ValueError, so that get() answers its default."""
    parsed = id_from_text(text)
    if parsed is None:
        raise ValueError(f"{text!r} is not an id")
    return parsed


def page_arg(text: str) -> int:
    """type= for request.args.get(): a page number in 1..MAX_PAGE, or ValueError (get() answers its
    default)."""
    parsed = id_from_text(text)
    if parsed is None or parsed > MAX_PAGE:
        raise ValueError(f"{text!r} is not a page number")
    return parsed


def parse_id(value: Any, field: str) -> int:
    """An id from a JSON body: an int in range, or a ValidationError naming the field."""
    if is_id(value):
        return value
    raise ValidationError(
        f"{field} must be a whole number between {MIN_ID} and {MAX_ID}.",
        [{"field": field, "message": "Not an id."}],
    )


def _positive_up_to(bound: int) -> str:
    """A regex for the whole numbers 1..bound in decimal (leading zeros allowed), ASCII digits only."""
    digits = str(bound)
    alternatives = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"]  # fewer digits than the bound
    for position, digit in enumerate(digits):  # as many: equal up to `position`, then smaller there
        lowest = 1 if position == 0 else 0
        if int(digit) > lowest:
            rest = len(digits) - position - 1
            alternatives.append(f"{digits[:position]}[{lowest}-{int(digit) - 1}][0-9]{{{rest}}}")
    alternatives.append(digits)
    return "0*(?:" + "|".join(alternatives) + ")"


class IdConverter(IntegerConverter):
    """<int:...> in every route: an id out of range does not match the rule, so it is a plain 404
    (the API answers it in its JSON error shape) before any view runs. The range is in the regex, not
    only in to_python: werkzeug answers a converter's refusal with 405 when the same path has a rule
    for another method."""

    regex = _positive_up_to(MAX_ID)

    def __init__(self, map: Map, fixed_digits: int = 0, min: int | None = MIN_ID, max: int | None = MAX_ID,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)
