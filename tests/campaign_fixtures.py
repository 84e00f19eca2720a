"""Test data for the campaigns tests: a layout, overlapping lists, and a campaign ready to send."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mailapp.extensions import db
from mailapp.models import Campaign, Delivery, Layout, Subscriber, SubscriberList
from tests.factories import CampaignFactory, LayoutFactory, SubscriberFactory, SubscriberListFactory


@dataclass
class Audience:
    layout: Layout
    lists: list[SubscriberList]
    active: list[Subscriber]
    inactive: list[Subscriber]


def make_audience(size: int = 4) -> Audience:
    """Two overlapping lists: `size` active subscribers, the middle ones on both lists, plus one
    unsubscribed and one blocklisted member who must never count."""
    layout = LayoutFactory()
    first, second = SubscriberListFactory(), SubscriberListFactory()
    active = []
    for index in range(size):
        member_of = [first] if index < size // 2 else [second]
        if index in (size // 2 - 1, size // 2):
            member_of = [first, second]
        active.append(SubscriberFactory(lists=member_of))
    inactive = [
        SubscriberFactory(status="unsubscribed", lists=[first, second]),
        SubscriberFactory(status="blocklisted", lists=[first]),
    ]
    return Audience(layout, [first, second], active, inactive)


def make_ready_campaign(audience: Audience, **fields: object) -> Campaign:
    return CampaignFactory(layout=audience.layout, lists=audience.lists, **fields)


def campaign_payload(audience: Audience, **overrides: object) -> dict:
    payload = {
        "name": "November news",
        "subject": "News for {{ subscriber.name }}",
        "from_name": "Example News",
        "from_email": "News@Example.com",
        "reply_to": "",
        "layout_id": audience.layout.id,
        "list_ids": [lst.id for lst in audience.lists],
        "message": "Hello there.\n\nSecond paragraph.",
    }
    payload.update(overrides)
    return payload


@pytest.fixture
def audience(app) -> Audience:
    return make_audience()


def make_delivery(campaign_id: int, subscriber_id: int | None = None, **fields: object) -> Delivery:
    """A committed delivery row (tests.factories.DeliveryFactory passes a `campaign` keyword that the
    Delivery model no longer has)."""
    if subscriber_id is None:
        subscriber_id = SubscriberFactory().id
    subscriber = db.session.get(Subscriber, subscriber_id)
    fields.setdefault("email", subscriber.email)
    fields.setdefault("status", "pending")
    delivery = Delivery(campaign_id=campaign_id, subscriber_id=subscriber_id, **fields)
    db.session.add(delivery)
    db.session.commit()
    return delivery
