"""Business rules for subscribers: create, edit, status, search and page. Services flush; callers commit.

Lists, imports and exports have their own modules: subscriber_lists.py, imports.py, exports.py."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError

from mailapp.addresses import normalize_email_field
from mailapp.audit.services import record
from mailapp.errors import ConflictError, NotFoundError, ValidationError
from mailapp.extensions import db
from mailapp.ids import is_id
from mailapp.json_nesting import MAX_JSON_DEPTH, nesting_exceeds
from mailapp.models.base import iso_or_none, utcnow
from mailapp.models.campaign import Campaign
from mailapp.models.subscriber import (
    Subscriber,
    SubscriberList,
    SubscriberStatus,
    list_members,
)
from mailapp.models.system_message import SystemMessage
from mailapp.segment_rules import compile_rules, validate_rules
from mailapp.subscribers import import_parse
from mailapp.subscribers.validation import (
    AttributeLimits,
    clean_attributes,
    clean_name,
)


def get_subscriber(subscriber_id: int) -> Subscriber:
    found = db.session.get(Subscriber, subscriber_id)
    if found is None:
        raise NotFoundError(f"Subscriber {subscriber_id} does not exist.")
    return found


def parse_attributes(raw: Any) -> dict[str, Any]:
    """Attributes are a JSON object: given as a dict (API) or as JSON text (form). Checked against the
    SUBSCRIBER_MAX_ATTRIBUTE* limits, string values made one line (validation.clean_attributes)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        if nesting_exceeds(raw):
            raise ValidationError(
                f"Attributes nest arrays and objects deeper than {MAX_JSON_DEPTH} levels.",
                [{"field": "attributes"}],
            )
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValidationError(
                f"Attributes are not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}.",
                [{"field": "attributes", "line": error.lineno}],
            ) from error
    if not isinstance(raw, dict):
        raise ValidationError(
            'Attributes must be a JSON object, like {"city": "Paris"}.', [{"field": "attributes"}]
        )
    return clean_attributes(raw, AttributeLimits.from_config(current_app.config))


def _clean_status(status: Any) -> SubscriberStatus:
    try:
        return SubscriberStatus(status)
    except ValueError as error:
        allowed = ", ".join(s.value for s in SubscriberStatus)
        raise ValidationError(f"Status must be one of {allowed}.", [{"field": "status"}]) from error


def _clean_email(email: Any) -> str:
    return normalize_email_field(email)


def _ensure_email_free(email: str, except_id: int | None = None) -> None:
    taken = db.session.scalar(select(Subscriber.id).where(Subscriber.email == email))
    if taken is not None and taken != except_id:
        raise ConflictError(f"A subscriber with the email {email} already exists.", [{"field": "email",
                                                                                      "id": taken}])


def _lists_by_id(list_ids: Any) -> list[SubscriberList]:
    if list_ids is None:
        return []
    if not isinstance(list_ids, list | tuple) or not all(is_id(i) for i in list_ids):
        raise ValidationError("list_ids must be a list of list ids.", [{"field": "list_ids"}])
    wanted = set(list_ids)
    found = list(db.session.scalars(select(SubscriberList).where(SubscriberList.id.in_(wanted))))
    missing = wanted - {item.id for item in found}
    if missing:
        raise ValidationError(
            f"No such list: {', '.join(str(i) for i in sorted(missing))}.", [{"field": "list_ids"}]
        )
    return found


def _apply_status(subscriber: Subscriber, status: SubscriberStatus) -> None:
    if status == subscriber.status:
        return
    subscriber.status = status
    if status == SubscriberStatus.ACTIVE:
        subscriber.unsubscribed_at = None
        subscriber.unsubscribed_campaign_id = None
    elif status == SubscriberStatus.UNSUBSCRIBED and subscriber.unsubscribed_at is None:
        subscriber.unsubscribed_at = utcnow()


def create_subscriber(
    email: Any,
    name: Any = "",
    attributes: Any = None,
    list_ids: Any = None,
    status: Any = SubscriberStatus.ACTIVE,
) -> Subscriber:
    cleaned_email = _clean_email(email)
    cleaned = {"name": clean_name(name), "attributes": parse_attributes(attributes)}
    wanted_status = _clean_status(status)
    lists = _lists_by_id(list_ids)
    _ensure_email_free(cleaned_email)
    subscriber = Subscriber(email=cleaned_email, status=SubscriberStatus.ACTIVE, lists=lists, **cleaned)
    _apply_status(subscriber, wanted_status)
    db.session.add(subscriber)
    _flush_unique(cleaned_email)
    return subscriber


def update_subscriber(subscriber: Subscriber, **changes: Any) -> Subscriber:
    """Change the given fields only: email, name, attributes (replaced whole), status, list_ids."""
    unknown = set(changes) - {"email", "name", "attributes", "status", "list_ids"}
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    if "email" in changes:
        cleaned = _clean_email(changes["email"])
        _ensure_email_free(cleaned, except_id=subscriber.id)
        subscriber.email = cleaned
    if "name" in changes:
        subscriber.name = clean_name(changes["name"])
    if "attributes" in changes:
        subscriber.attributes = parse_attributes(changes["attributes"])
    if "status" in changes:
        _apply_status(subscriber, _clean_status(changes["status"]))
    if "list_ids" in changes:
        subscriber.lists = _lists_by_id(changes["list_ids"])
    _flush_unique(subscriber.email)
    return subscriber


def _flush_unique(email: str) -> None:
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as error:  # another request took the email between the check and the flush
        raise ConflictError(f"A subscriber with the email {email} already exists.", [{"field": "email"}]) \
            from error


def set_subscriber_status(subscriber: Subscriber, status: Any) -> Subscriber:
    """Resubscribe (active: clears unsubscribed_at), unsubscribe, blocklist or unblocklist."""
    _apply_status(subscriber, _clean_status(status))
    db.session.flush()
    return subscriber


def delete_subscriber(subscriber: Subscriber) -> None:
    record("subscriber.delete", subscriber, f"subscriber {subscriber.email} deleted")
    db.session.delete(subscriber)
    db.session.flush()


def subscriber_filter(
    q: str | None = None, list_id: int | None = None, status: str | None = None, rules: dict | None = None
) -> Select:
    """The subscribers matching a search (email or name contains q), a list, a status and a validated
    segment rule tree (the attribute filter), unordered."""
    statement = select(Subscriber)
    if rules is not None:
        statement = statement.where(compile_rules(rules, db.session.get_bind().dialect.name))
    if list_id is not None:
        statement = statement.join(list_members, list_members.c.subscriber_id == Subscriber.id).where(
            list_members.c.list_id == list_id
        )
    if status:
        statement = statement.where(Subscriber.status == _clean_status(status))
    if q and q.strip():
        term = q.strip()
        if "\x00" in term:  # PostgreSQL cannot even compare text with a NUL in it
            raise ValidationError("The search contains a NUL character.", [{"field": "q"}])
        whole_email = _as_whole_email(term)
        if whole_email is not None:
            # A complete address is looked up through the unique index, not by scanning every row.
            return statement.where(Subscriber.email == whole_email)
        statement = statement.where(
            or_(
                Subscriber.email.contains(term.lower(), autoescape=True),
                Subscriber.name.icontains(term, autoescape=True),
            )
        )
    return statement


def _as_whole_email(term: str) -> str | None:
    if "@" not in term or " " in term:
        return None
    try:
        return import_parse.fast_normalize_email(term)
    except ValidationError:
        return None


@dataclass
class KeysetPage:
    items: list[Subscriber]
    newer_than: int | None  # id for the "previous" link, None on the first page
    older_than: int | None  # id for the "next" link, None on the last page


def subscriber_page(
    q: str | None = None,
    list_id: int | None = None,
    status: str | None = None,
    before: int | None = None,
    after: int | None = None,
    limit: int = 50,
    rules: dict | None = None,
) -> KeysetPage:
    """Newest first, by id: `before` pages towards older ids, `after` back towards newer ones. Each page
    is an index range scan, so page 20,000 costs what page 1 costs."""
    statement = subscriber_filter(q, list_id, status, rules)
    if after is not None:
        rows = list(db.session.scalars(
            statement.where(Subscriber.id > after).order_by(Subscriber.id.asc()).limit(limit + 1)
        ))
        more_newer = len(rows) > limit
        items = list(reversed(rows[:limit]))
        return KeysetPage(items, items[0].id if more_newer and items else None,
                          items[-1].id if items else None)
    if before is not None:
        statement = statement.where(Subscriber.id < before)
    rows = list(db.session.scalars(statement.order_by(Subscriber.id.desc()).limit(limit + 1)))
    items = rows[:limit]
    return KeysetPage(
        items,
        items[0].id if before is not None and items else None,
        items[-1].id if len(rows) > limit else None,
    )


def attribute_rule(key: str, op: str, raw: str) -> dict:
    """The subscriber list's attribute filter as a validated segment rule: the value typed as it reads
    (true/false, a number, else text; a comma-separated list for "in")."""

    def typed(text: str):
        if text in ("true", "false"):
            return text == "true"
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number

    rule: dict = {"field": "attribute", "key": key, "op": op}
    if op == "in":
        rule["value"] = [typed(item.strip()) for item in raw.split(",") if item.strip()]
    elif op == "contains":
        rule["value"] = raw
    elif op != "exists":
        rule["value"] = typed(raw)
    return validate_rules(rule, path="attribute")


def count_subscribers(q: str | None = None, list_id: int | None = None, status: str | None = None) -> int:
    """Counted on the narrowest index: list_members alone for a list, the table alone for no filter."""
    if not q and not status:
        if list_id is not None:
            return db.session.scalar(
                select(func.count()).select_from(list_members).where(list_members.c.list_id == list_id)
            ) or 0
        return db.session.scalar(select(func.count()).select_from(Subscriber)) or 0
    statement = subscriber_filter(q, list_id, status).with_only_columns(func.count(Subscriber.id))
    return db.session.scalar(statement) or 0


def subscriber_to_dict(subscriber: Subscriber, with_lists: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": subscriber.id,
        "email": subscriber.email,
        "name": subscriber.name,
        "attributes": subscriber.attributes or {},
        "status": subscriber.status,
        "created_at": iso_or_none(subscriber.created_at),
        "updated_at": iso_or_none(subscriber.updated_at),
        "unsubscribed_at": iso_or_none(subscriber.unsubscribed_at),
        "unsubscribed_campaign_id": subscriber.unsubscribed_campaign_id,
    }
    if with_lists:
        data["list_ids"] = sorted(item.id for item in subscriber.lists)
    return data


# A subscriber's page and API view show their newest system emails, this many.
SYSTEM_MESSAGES_SHOWN = 20


def system_messages_for(subscriber_id: int) -> list[SystemMessage]:
    """The subscriber's newest confirmation and welcome emails, with what became of each."""
    return list(db.session.scalars(
        select(SystemMessage).where(SystemMessage.subscriber_id == subscriber_id)
        .order_by(SystemMessage.id.desc()).limit(SYSTEM_MESSAGES_SHOWN)
    ))


def system_message_to_dict(row: SystemMessage) -> dict[str, Any]:
    return {
        "id": row.id, "kind": row.kind, "list_id": row.list_id, "email": row.email, "subject": row.subject,
        "status": row.status, "attempts": row.attempts, "smtp_code": row.smtp_code, "error": row.error,
        "message_id": row.message_id, "created_at": iso_or_none(row.created_at),
        "sent_at": iso_or_none(row.sent_at),
    }


def unsubscribe_campaign_names(subscribers: Iterable[Subscriber]) -> dict[int, str]:
    """The names of the campaigns these subscribers unsubscribed through, in one query; a deleted
    campaign has no entry (the id is kept without a foreign key)."""
    ids = {s.unsubscribed_campaign_id for s in subscribers if s.unsubscribed_campaign_id is not None}
    if not ids:
        return {}
    rows = db.session.execute(select(Campaign.id, Campaign.name).where(Campaign.id.in_(ids)))
    return {row.id: row.name for row in rows}


def list_ids_by_subscriber(subscriber_ids: list[int]) -> dict[int, list[int]]:
    """Memberships of a page of subscribers in one query."""
    found: dict[int, list[int]] = {subscriber_id: [] for subscriber_id in subscriber_ids}
    if subscriber_ids:
        rows = db.session.execute(
            select(list_members.c.subscriber_id, list_members.c.list_id)
            .where(list_members.c.subscriber_id.in_(subscriber_ids))
            .order_by(list_members.c.list_id)
        )
        for subscriber_id, list_id in rows:
            found[subscriber_id].append(list_id)
    return found
