"""Segment rule trees: strict validation (errors name the path, like `rules.any[2].value`) and
compilation to one SQLAlchemy condition on subscribers that runs on PostgreSQL and SQLite.

A tree is a group {"all": [...]} or {"any": [...]} of rules and groups, or a single rule
{"field", "op", "value"?, "key"?}. See RULE_FIELDS for each field's operators and value types, and the
README's "Segments" section. Activity counts human events only, as reports do: "opened" means a human
open or a human click (a click implies an open), machine opens never count. Activity rules read the
engagement columns (Delivery.engaged_at, Delivery.human_clicked_at, Subscriber.last_engaged_at) that
triggers on the event tables keep.

Ground floor: the send engine's snapshot compiles the segments a campaign targets."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Numeric,
    and_,
    case,
    false,
    func,
    literal,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB

from mailapp.errors import ValidationError, field_problem
from mailapp.models import (
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    list_members,
    utcnow,
)

MAX_DEPTH = 5
MAX_NODES = 200
MAX_IN_VALUES = 500
MAX_STRING_BYTES = 2048
MAX_KEY_LENGTH = 100
MAX_DAYS = 36_500
# Beyond 2**53 a JSON number is not exact in every client; bounding rule values keeps comparisons exact.
MAX_NUMBER = 10**15
MAX_ID = 2**31 - 1

ATTRIBUTE_OPS = ("equals", "contains", "gt", "gte", "lt", "lte", "exists", "in")
RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "attribute": ATTRIBUTE_OPS,
    "list": ("member", "not_member"),
    "status": ("is", "is_not"),
    "subscribed": ("before", "after", "within_days"),
    "activity": (
        "opened", "clicked", "not_opened", "not_clicked", "opened_within_days", "never_opened",
    ),
}
# Operators that take no value.
NO_VALUE_OPS = frozenset({"exists", "never_opened"})
CAMPAIGN_OPS = frozenset({"opened", "clicked", "not_opened", "not_clicked"})
DAYS_OPS = frozenset({"within_days", "opened_within_days"})
NUMBER_OPS = frozenset({"gt", "gte", "lt", "lte"})


class RuleError(ValidationError):
    """A segment rule tree that breaks the grammar. details: [{"field": "rules.any[2].value", ...}]."""

    code = "invalid_rules"


# --- validation -------------------------------------------------------------------------------------


def validate_rules(tree: Any, path: str = "rules") -> dict[str, Any]:
    """The tree, checked whole and normalised (dates as ISO strings in UTC); RuleError names the first
    problem's path."""
    counter = [0]
    return _check_node(tree, path, 1, counter)


def _fail(path: str, message: str) -> RuleError:
    return RuleError(f"{path}: {message}", [field_problem(path, message)])


def _check_node(node: Any, path: str, depth: int, counter: list[int]) -> dict[str, Any]:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise _fail(path, f"A segment may have at most {MAX_NODES} rules and groups.")
    if not isinstance(node, dict):
        raise _fail(path, "Must be an object: a group {\"all\": [...]} / {\"any\": [...]} or a rule.")
    if "all" in node or "any" in node:
        if len(node) != 1:
            raise _fail(path, "A group has exactly one key, all or any.")
        kind = "all" if "all" in node else "any"
        if depth > MAX_DEPTH:
            raise _fail(path, f"Groups nest at most {MAX_DEPTH} levels deep.")
        children = node[kind]
        if not isinstance(children, list) or not children:
            raise _fail(f"{path}.{kind}", "Must be a non-empty list of rules and groups.")
        return {kind: [_check_node(child, f"{path}.{kind}[{n}]", depth + 1, counter)
                       for n, child in enumerate(children)]}  # fmt: skip
    return _check_rule(node, path)


def _check_rule(node: dict[str, Any], path: str) -> dict[str, Any]:
    unknown = sorted(set(node) - {"field", "op", "value", "key"})
    if unknown:
        raise _fail(f"{path}.{unknown[0]}", "Unknown key (a rule has field, op, value and key).")
    field = node.get("field")
    if not isinstance(field, str) or field not in RULE_FIELDS:
        raise _fail(f"{path}.field", f"Must be one of: {', '.join(RULE_FIELDS)}.")
    op = node.get("op")
    if not isinstance(op, str) or op not in RULE_FIELDS[field]:
        raise _fail(f"{path}.op", f"For {field}, must be one of: {', '.join(RULE_FIELDS[field])}.")
    rule: dict[str, Any] = {"field": field, "op": op}
    if field == "attribute":
        rule["key"] = _check_key(node.get("key"), f"{path}.key")
    elif "key" in node:
        raise _fail(f"{path}.key", "Only attribute rules have a key.")
    if op in NO_VALUE_OPS:
        if "value" in node:
            raise _fail(f"{path}.value", f"{op} takes no value.")
        return rule
    if "value" not in node:
        raise _fail(f"{path}.value", "Required.")
    rule["value"] = _check_value(field, op, node["value"], f"{path}.value")
    return rule


def _check_key(key: Any, path: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise _fail(path, "Must be an attribute name (a non-empty string).")
    if len(key) > MAX_KEY_LENGTH:
        raise _fail(path, f"Must be at most {MAX_KEY_LENGTH} characters.")
    return key


def _check_value(field: str, op: str, value: Any, path: str) -> Any:
    if field == "attribute":
        if op == "in":
            if not isinstance(value, list) or not value:
                raise _fail(path, "Must be a non-empty list of strings, numbers or true/false.")
            if len(value) > MAX_IN_VALUES:
                raise _fail(path, f"At most {MAX_IN_VALUES} values.")
            return [_scalar(item, f"{path}[{n}]") for n, item in enumerate(value)]
        if op == "contains":
            if not isinstance(value, str) or not value:
                raise _fail(path, "Must be a non-empty string.")
            return _string(value, path)
        if op in NUMBER_OPS:
            return _number(value, path)
        return _scalar(value, path)
    if field == "list" or op in CAMPAIGN_OPS:
        if not _is_int(value) or not 1 <= value <= MAX_ID:
            raise _fail(path, f"Must be an id (a whole number from 1 to {MAX_ID}).")
        return value
    if field == "status":
        if not isinstance(value, str) or value not in tuple(SubscriberStatus):
            raise _fail(path, f"Must be one of: {', '.join(SubscriberStatus)}.")
        return str(value)
    if op in DAYS_OPS:
        if not _is_int(value) or not 0 <= value <= MAX_DAYS:
            raise _fail(path, f"Must be a whole number of days from 0 to {MAX_DAYS}.")
        return value
    return _moment(value, path).isoformat()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(value: str, path: str) -> str:
    if len(value.encode("utf-8", "surrogatepass")) > MAX_STRING_BYTES:
        raise _fail(path, f"Must be at most {MAX_STRING_BYTES} bytes.")
    if "\x00" in value or any("\ud800" <= char <= "\udfff" for char in value):
        raise _fail(path, "Holds a NUL character or an unpaired surrogate.")
    return value


def _number(value: Any, path: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, "Must be a number.")
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise _fail(path, f"Must be a finite number between -{MAX_NUMBER} and {MAX_NUMBER}.")
    return value


def _scalar(value: Any, path: str) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _string(value, path)
    if isinstance(value, int | float):
        return _number(value, path)
    raise _fail(path, "Must be a string, a number or true/false.")


def _moment(value: Any, path: str) -> datetime:
    """A date (YYYY-MM-DD, midnight UTC) or a time with a UTC offset."""
    if not isinstance(value, str) or len(value) > 40:
        raise _fail(path, "Must be a date (YYYY-MM-DD) or an ISO 8601 time with an offset.")
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
    except ValueError as error:
        raise _fail(path, "Must be a date (YYYY-MM-DD) or an ISO 8601 time with an offset.") from error
    if moment.tzinfo is None:
        raise _fail(path, "A time needs a UTC offset, e.g. Z or +01:00.")
    return moment.astimezone(UTC)


# --- compilation ------------------------------------------------------------------------------------


def compile_rules(tree: dict[str, Any], dialect: str, now: datetime | None = None) -> ColumnElement[bool]:
    """A condition on Subscriber (correlated: use it in a select over subscribers) for a validated
    tree. dialect: "postgresql" or "sqlite"."""
    return _compile(tree, dialect, now or utcnow())


def _compile(node: dict[str, Any], dialect: str, now: datetime) -> ColumnElement[bool]:
    if "all" in node:
        return and_(true(), *(_compile(child, dialect, now) for child in node["all"]))
    if "any" in node:
        return or_(false(), *(_compile(child, dialect, now) for child in node["any"]))
    field, op, value = node["field"], node["op"], node.get("value")
    if field == "attribute":
        return _attribute(node["key"], op, value, dialect)
    if field == "list":
        member = (
            select(literal(1))
            .where(list_members.c.subscriber_id == Subscriber.id, list_members.c.list_id == value)
            .exists()
        )
        return member if op == "member" else ~member
    if field == "status":
        return Subscriber.status == value if op == "is" else Subscriber.status != value
    if field == "subscribed":
        if op == "within_days":
            return Subscriber.created_at >= now - timedelta(days=value)
        moment = datetime.fromisoformat(value)
        return Subscriber.created_at < moment if op == "before" else Subscriber.created_at > moment
    return _activity(op, value, now)


def _activity(op: str, value: Any, now: datetime) -> ColumnElement[bool]:
    """Read from the engagement columns the events' triggers keep (migration 0017), never from the
    events themselves: a campaign rule is a probe into one partial index of that campaign's deliveries
    (or, at the top of a tree, one index-only scan of it), and the all-campaigns rules read one column
    of the subscriber."""
    if op == "never_opened":
        return Subscriber.last_engaged_at.is_(None)
    if op == "opened_within_days":
        return Subscriber.last_engaged_at >= now - timedelta(days=value)
    received = select(literal(1)).where(
        Delivery.campaign_id == value, Delivery.subscriber_id == Subscriber.id
    )
    if op == "opened":
        return received.where(Delivery.engaged_at.is_not(None)).exists()
    if op == "clicked":
        return received.where(Delivery.human_clicked_at.is_not(None)).exists()
    # Did not open / click it: among those it was sent to, so a later resend reaches only them.
    unengaged = Delivery.engaged_at if op == "not_opened" else Delivery.human_clicked_at
    return received.where(Delivery.status == DeliveryStatus.SENT, unengaged.is_(None)).exists()


def _attribute(key: str, op: str, value: Any, dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return _attribute_postgres(key, op, value)
    return _attribute_sqlite(key, op, value)


def _attribute_postgres(key: str, op: str, value: Any) -> ColumnElement[bool]:
    # AttributesJSON is JSONB on PostgreSQL; its JSONB operators are reached through the JSONB type.
    attributes = type_coerce(Subscriber.attributes, JSONB)
    if op == "exists":
        return attributes.has_key(key)
    if op == "equals":
        # @> compares JSON types exactly ("1" is not 1, true is not 1) and can use a GIN index.
        return attributes.contains({key: value})
    if op == "in":
        return or_(*(attributes.contains({key: item}) for item in value))
    element = attributes[key]
    kind = func.jsonb_typeof(element)
    if op == "contains":
        text_value = case((kind == "string", element.astext), else_=None)
        return func.strpos(text_value, value) > 0
    number = case((kind == "number", element.astext.cast(Numeric)), else_=None)
    return _compare(number, op, value)


def _attribute_sqlite(key: str, op: str, value: Any) -> ColumnElement[bool]:
    # json_each reads keys literally; a JSON path ($."key") cannot spell every key.
    entry = func.json_each(Subscriber.attributes).table_valued("key", "value", "type")
    condition: ColumnElement[bool]
    if op == "exists":
        condition = true()
    elif op == "equals":
        condition = _sqlite_equals(entry, value)
    elif op == "in":
        condition = or_(*(_sqlite_equals(entry, item) for item in value))
    elif op == "contains":
        condition = and_(entry.c.type == "text", func.instr(entry.c.value, value) > 0)
    else:
        condition = and_(entry.c.type.in_(("integer", "real")), _compare(entry.c.value, op, value))
    return select(literal(1)).select_from(entry).where(entry.c.key == key, condition).exists()


def _sqlite_equals(entry, value: Any) -> ColumnElement[bool]:
    if isinstance(value, bool):
        return entry.c.type == ("true" if value else "false")
    if isinstance(value, str):
        return and_(entry.c.type == "text", entry.c.value == value)
    return and_(entry.c.type.in_(("integer", "real")), entry.c.value == value)


def _compare(column, op: str, value: Any) -> ColumnElement[bool]:
    return {
        "gt": column > value,
        "gte": column >= value,
        "lt": column < value,
        "lte": column <= value,
    }[op]


def rules_with_paths(tree: dict[str, Any], path: str = "rules"):
    """(path, rule) for every rule of a validated tree, depth first."""
    for kind in ("all", "any"):
        if kind in tree:
            for n, child in enumerate(tree[kind]):
                yield from rules_with_paths(child, f"{path}.{kind}[{n}]")
            return
    yield path, tree
