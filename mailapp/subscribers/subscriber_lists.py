"""Business rules for subscriber lists: names, create, rename, delete, member counts. Services flush;
callers commit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from mailapp.audit.services import record
from mailapp.errors import ConflictError, NotFoundError, ValidationError
from mailapp.extensions import db
from mailapp.models.subscriber import Subscriber, SubscriberList, SubscriberStatus, list_members
from mailapp.subscribers.validation import refuse_nul

LIST_NAME_MAX = 200


def get_list(list_id: int) -> SubscriberList:
    found = db.session.get(SubscriberList, list_id)
    if found is None:
        raise NotFoundError(f"List {list_id} does not exist.")
    return found


def _clean_list_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("A list needs a name.", [{"field": "name"}])
    refuse_nul("name", name)
    cleaned = name.strip()
    if len(cleaned) > LIST_NAME_MAX:
        raise ValidationError(f"The name is longer than {LIST_NAME_MAX} characters.", [{"field": "name"}])
    return cleaned


def _clean_description(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str):
        raise ValidationError("The description must be text.", [{"field": "description"}])
    refuse_nul("description", description)
    return description.strip()


def _ensure_list_name_free(name: str, except_id: int | None = None) -> None:
    statement = select(SubscriberList.id).where(func.lower(SubscriberList.name) == name.lower())
    taken = db.session.scalar(statement)
    if taken is not None and taken != except_id:
        raise ConflictError(f"A list named {name!r} already exists.", [{"field": "name"}])


def create_list(name: Any, description: Any = "") -> SubscriberList:
    cleaned = _clean_list_name(name)
    _ensure_list_name_free(cleaned)
    created = SubscriberList(name=cleaned, description=_clean_description(description))
    with _unique_list_name(cleaned):
        db.session.add(created)
    record("list.create", created, f"list {cleaned!r} created")
    return created


def update_list(target: SubscriberList, name: Any = None, description: Any = None) -> SubscriberList:
    if name is not None:
        cleaned = _clean_list_name(name)
        _ensure_list_name_free(cleaned, except_id=target.id)
        with _unique_list_name(cleaned):
            target.name = cleaned
    if description is not None:
        target.description = _clean_description(description)
    db.session.flush()
    return target


@contextmanager
def _unique_list_name(name: str) -> Iterator[None]:
    """The changes made inside, flushed in a savepoint, where the unique index has the last word:
    another request may take the name after the check, and SQLite's lower() folds ASCII only, so the
    check misses any name with a non-ASCII capital."""
    try:
        with db.session.begin_nested():
            yield
            db.session.flush()
    except IntegrityError as error:
        raise ConflictError(f"A list named {name!r} already exists.", [{"field": "name"}]) from error


def delete_list(target: SubscriberList) -> None:
    """The list and its memberships go; the subscribers stay."""
    record("list.delete", target, f"list {target.name!r} deleted")
    db.session.execute(delete(list_members).where(list_members.c.list_id == target.id))
    db.session.delete(target)
    db.session.flush()


@dataclass
class ListCounts:
    total: int = 0
    active: int = 0
    unsubscribed: int = 0
    blocklisted: int = 0
    bounced: int = 0


def list_counts(list_ids: Iterable[int]) -> dict[int, ListCounts]:
    """Totals from list_members alone (an index-only count), then only the few inactive members are
    joined to subscribers (through the status index): active = total - inactive. Joining every member
    to read its status would cost a second per million members."""
    ids = list(list_ids)
    counts = {list_id: ListCounts() for list_id in ids}
    if not ids:
        return counts
    totals = db.session.execute(
        select(list_members.c.list_id, func.count())
        .where(list_members.c.list_id.in_(ids))
        .group_by(list_members.c.list_id)
    )
    for list_id, total in totals:
        counts[list_id].total = counts[list_id].active = total
    inactive = db.session.execute(
        select(list_members.c.list_id, Subscriber.status, func.count())
        .join(Subscriber, Subscriber.id == list_members.c.subscriber_id)
        .where(
            list_members.c.list_id.in_(ids),
            Subscriber.status.in_(
                [SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BLOCKLISTED, SubscriberStatus.BOUNCED]
            ),
        )
        .group_by(list_members.c.list_id, Subscriber.status)
    )
    for list_id, status, count in inactive:
        entry = counts[list_id]
        entry.active -= count
        if status == SubscriberStatus.UNSUBSCRIBED:
            entry.unsubscribed += count
        elif status == SubscriberStatus.BLOCKLISTED:
            entry.blocklisted += count
        elif status == SubscriberStatus.BOUNCED:
            entry.bounced += count
    return counts


def all_lists() -> list[SubscriberList]:
    return list(db.session.scalars(select(SubscriberList).order_by(SubscriberList.name)))
