"""Keeping the campaign counters true while opens, clicks and unsubscribes are recorded.

Every write path goes through the same steps, in one transaction:
1. lock the campaign's counter row (PostgreSQL row lock; SQLite's write lock is already held), so two
   writers cannot both count the same recipient as a new unique opener or clicker;
2. look up which recipients had already engaged (a human open or a human click);
3. insert the events and bump the delivery and campaign counters by what was actually inserted.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mailapp.db_setup import is_postgres
from mailapp.extensions import db
from mailapp.models import CampaignStats, Delivery


def _insert_ignoring_conflicts(table: Table):  # a dialect Insert
    dialect = postgresql if is_postgres() else sqlite
    return dialect.insert(table)


def ensure_campaign_stats(campaign_ids: Iterable[int]) -> list[int]:
    """Create the missing counter rows (concurrent writers may race to do it: the loser does nothing).
    Returns the ids, sorted."""
    ids = sorted(set(campaign_ids))
    if ids:
        statement = _insert_ignoring_conflicts(CampaignStats.__table__).on_conflict_do_nothing(
            index_elements=["campaign_id"]
        )
        db.session.execute(statement, [{"campaign_id": campaign_id} for campaign_id in ids])
    return ids


def _lock_campaign_stats(campaign_ids: Iterable[int]) -> None:
    """Make sure each campaign has its counter row, and hold it until the commit."""
    ids = ensure_campaign_stats(campaign_ids)
    table = CampaignStats.__table__
    if ids and is_postgres():
        db.session.execute(
            select(table.c.campaign_id)
            .where(table.c.campaign_id.in_(ids))
            .order_by(table.c.campaign_id)
            .with_for_update()
        ).all()


def _bump_campaign_stats(campaign_id: int, **increments: int) -> None:
    increments = {name: amount for name, amount in increments.items() if amount}
    if not increments:
        return
    table = CampaignStats.__table__
    db.session.execute(
        update(table)
        .where(table.c.campaign_id == campaign_id)
        .values({name: table.c[name] + amount for name, amount in increments.items()})
    )


def _engaged_deliveries(delivery_ids: Iterable[int]) -> set[int]:
    """Deliveries whose recipient has already opened or clicked as a human (a click implies an open):
    Delivery.engaged_at, which the event tables' triggers set (migration 0017). Read after
    _lock_campaign_stats, so a concurrent writer's events of the same campaign are already committed."""
    ids = sorted(set(delivery_ids))
    if not ids:
        return set()
    engaged = select(Delivery.id).where(Delivery.id.in_(ids), Delivery.engaged_at.is_not(None))
    return set(db.session.scalars(engaged))
