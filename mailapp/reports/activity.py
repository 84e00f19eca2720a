"""Campaign report, per recipient: who opened, clicked, unsubscribed or failed, a keyset page at a time.

"Opened" and "clicked" count human events only; see figures.py for the definitions.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import false, func, select

from mailapp.extensions import db
from mailapp.models import ClickEvent, Delivery, DeliveryStatus, MailEvent, OpenEvent
from mailapp.reports.figures import get_campaign

DELIVERY_PAGE_SIZE = 50

ACTIVITY_FILTERS = {
    "all": "Everyone",
    "opened": "Opened",
    "clicked": "Clicked",
    "not_opened": "Not opened",
    "unsubscribed": "Unsubscribed",
    "failed": "Failed",
}


@dataclass(frozen=True)
class RecipientActivity:
    delivery: Delivery
    human_open: bool
    human_click: bool
    # The kinds of mail event (hard_bounce, soft_bounce, complaint) recorded for this delivery.
    mail_events: frozenset[str] = frozenset()

    @property
    def opened(self) -> bool:
        return self.human_open or self.human_click

    @property
    def machine_only(self) -> bool:
        return self.delivery.open_count > 0 and not self.opened


def _human(model, delivery_ids: list[int]) -> set[int]:
    if not delivery_ids:
        return set()
    return set(
        db.session.scalars(
            select(model.delivery_id)
            .distinct()
            .where(model.delivery_id.in_(delivery_ids), model.is_machine.is_(False))
        )
    )


def _human_exists(model, campaign_id: int, after: int):
    # campaign_id and the id range repeat what the correlation implies, so the planner can read the
    # campaign's events from `after` on (a merge anti-join) instead of every human event there is.
    # `after` must not exceed the first delivery id the page can hold.
    return (
        select(model.id)
        .where(
            model.delivery_id == Delivery.id,
            model.campaign_id == campaign_id,
            model.delivery_id > after,
            model.is_machine == false(),
        )
        .exists()
    )


def _deliveries_after(campaign_id: int, after: int, limit: int, *conditions, statuses=None) -> list[Delivery]:
    """The campaign's next `limit` deliveries by id after `after`. One query per status, each an index
    range scan on (campaign_id, status, id), merged here: a single query ordered by id would walk the
    primary key through every other campaign's rows first."""
    found: list[Delivery] = []
    for status in statuses or list(DeliveryStatus):
        found += db.session.scalars(
            select(Delivery)
            .where(
                Delivery.campaign_id == campaign_id,
                Delivery.status == status,
                Delivery.id > after,
                *conditions,
            )
            .order_by(Delivery.id)
            .limit(limit)
        )
    found.sort(key=lambda delivery: delivery.id)
    return found[:limit]


def _engaged_after(campaign_id: int, after: int, limit: int, models: tuple) -> list[Delivery]:
    """The next `limit` deliveries after `after` with a human event in any of `models` (OpenEvent,
    ClickEvent), read in delivery order from the partial indexes of human events: a page costs the
    same whether one recipient in two engaged or one in ten thousand."""
    ids: set[int] = set()
    for model in models:
        ids.update(
            db.session.scalars(
                select(model.delivery_id)
                .where(
                    model.campaign_id == campaign_id, model.is_machine == false(), model.delivery_id > after
                )
                .group_by(model.delivery_id)
                .order_by(model.delivery_id)
                .limit(limit)
            )
        )
    wanted = sorted(ids)[:limit]
    if not wanted:
        return []
    return list(db.session.scalars(select(Delivery).where(Delivery.id.in_(wanted)).order_by(Delivery.id)))


def activity_page(
    campaign_id: int, *, show: str = "all", after: int = 0
) -> tuple[list[RecipientActivity], int | None]:
    """One page of the campaign's recipients with their activity, in delivery order, and the id to
    continue after (keyset pagination: the page costs the same on page 1 and page 20,000)."""
    get_campaign(campaign_id)
    limit = DELIVERY_PAGE_SIZE + 1
    if show == "opened":
        deliveries = _engaged_after(campaign_id, after, limit, (OpenEvent, ClickEvent))
    elif show == "clicked":
        deliveries = _engaged_after(campaign_id, after, limit, (ClickEvent,))
    elif show == "not_opened":
        # From the campaign's first delivery on, not from 0: the planner may read the events in delivery
        # order from this bound, and every event before it belongs to earlier campaigns.
        first = db.session.scalar(select(func.min(Delivery.id)).where(Delivery.campaign_id == campaign_id))
        start = max(after, (first or 1) - 1)
        conditions = [
            ~_human_exists(OpenEvent, campaign_id, start),
            ~_human_exists(ClickEvent, campaign_id, start),
        ]
        deliveries = _deliveries_after(campaign_id, after, limit, *conditions, statuses=[DeliveryStatus.SENT])
    elif show == "unsubscribed":
        # The partial index of unsubscribed deliveries, whatever their status.
        deliveries = list(
            db.session.scalars(
                select(Delivery)
                .where(
                    Delivery.campaign_id == campaign_id,
                    Delivery.unsubscribed_at.is_not(None),
                    Delivery.id > after,
                )
                .order_by(Delivery.id)
                .limit(limit)
            )
        )
    elif show == "failed":
        deliveries = _deliveries_after(campaign_id, after, limit, statuses=[DeliveryStatus.FAILED])
    else:
        deliveries = _deliveries_after(campaign_id, after, limit)
    more = len(deliveries) > DELIVERY_PAGE_SIZE
    deliveries = deliveries[:DELIVERY_PAGE_SIZE]
    return _with_activity(deliveries), (deliveries[-1].id if more else None)


def _with_activity(deliveries: list[Delivery]) -> list[RecipientActivity]:
    ids = [delivery.id for delivery in deliveries]
    opened, clicked = _human(OpenEvent, ids), _human(ClickEvent, ids)
    events: dict[int, set[str]] = {}
    if ids:
        for delivery_id, kind in db.session.execute(
            select(MailEvent.delivery_id, MailEvent.kind).distinct().where(MailEvent.delivery_id.in_(ids))
        ):
            events.setdefault(delivery_id, set()).add(kind)
    return [
        RecipientActivity(
            delivery, delivery.id in opened, delivery.id in clicked, frozenset(events.get(delivery.id, ()))
        )
        for delivery in deliveries
    ]
