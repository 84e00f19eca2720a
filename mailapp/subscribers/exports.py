"""CSV export of a subscriber list, streamed batch by batch."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from sqlalchemy import select, text

from mailapp.csv_cells import guarded_row
from mailapp.db_setup import is_postgres
from mailapp.extensions import db
from mailapp.models.base import utcnow
from mailapp.models.subscriber import Subscriber, SubscriberList, list_members
from mailapp.subscribers.subscriber_lists import get_list

EXPORT_BATCH = 5000


def export_attribute_keys(list_id: int) -> list[str]:
    """Every attribute key used on the list, found by the database without loading the rows."""
    if is_postgres():
        keys = text(
            "SELECT DISTINCT jsonb_object_keys(s.attributes) FROM list_members AS m "
            "JOIN subscribers AS s ON s.id = m.subscriber_id WHERE m.list_id = :list_id"
        )
    else:
        keys = text(
            "SELECT DISTINCT attribute.key FROM list_members AS m "
            "JOIN subscribers AS s ON s.id = m.subscriber_id, json_each(s.attributes) AS attribute "
            "WHERE m.list_id = :list_id"
        )
    return sorted(str(key) for key in db.session.scalars(keys, {"list_id": list_id}))


def export_list_csv(list_id: int) -> Iterator[str]:
    """The list as CSV text, generated batch by batch (keyset on subscriber id): memory stays flat."""
    get_list(list_id)
    keys = export_attribute_keys(list_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    # Attribute keys are the subscribers' data as much as the values are: the header is guarded too.
    writer.writerow(guarded_row(["email", "name", "status", "created_at", *keys]))
    last_id = 0
    while True:
        batch = list(db.session.execute(
            select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.status,
                   Subscriber.created_at, Subscriber.attributes)
            .join(list_members, list_members.c.subscriber_id == Subscriber.id)
            .where(list_members.c.list_id == list_id, list_members.c.subscriber_id > last_id)
            .order_by(list_members.c.subscriber_id)
            .limit(EXPORT_BATCH)
        ))
        for row in batch:
            attributes = row.attributes or {}
            writer.writerow(guarded_row([
                row.email, row.name, row.status, row.created_at.isoformat() if row.created_at else "",
                *(attributes.get(key) for key in keys),
            ]))
        chunk = buffer.getvalue()
        if chunk:
            yield chunk
            buffer.seek(0)
            buffer.truncate()
        if len(batch) < EXPORT_BATCH:
            return
        last_id = batch[-1].id
        db.session.rollback()  # end each batch's read transaction; a long export must not hold one open


def export_filename(target: SubscriberList) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in target.name.lower()).strip("-") or "list"
    return f"{slug[:60]}-{utcnow():%Y%m%d}.csv"
