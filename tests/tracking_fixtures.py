"""Shared helpers of the tracking, report and dashboard tests: sent deliveries with links, and a fixture
that keeps the Redis open buffer and the aggregates cache empty between tests. Delivery and campaign ids
restart in every test on PostgreSQL (RESTART IDENTITY) but not on SQLite, where AUTOINCREMENT never
hands an id out twice: tests must not assume particular ids."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from mailapp.extensions import db
from mailapp.models import Campaign, CampaignStatus, Delivery, Link, Subscriber, utcnow
from mailapp.reports import figures as report_services
from mailapp.tracking import buffer, opens
from tests.factories import CampaignFactory, SubscriberFactory

LINKS = ["https://example.com/offer", "https://example.com/news?a=1&b=2", "http://example.org/"]
READER_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"


@pytest.fixture(autouse=True)
def empty_open_buffer(app) -> Iterator[None]:
    client = buffer.redis_client()
    if client is not None:
        client.delete(buffer.STREAM_KEY, buffer.FLUSH_LOCK_KEY)
    report_services._cache.clear()  # the one-minute cache of big aggregates
    yield
    if client is not None:
        client.delete(buffer.STREAM_KEY, buffer.FLUSH_LOCK_KEY)


def make_campaign(links: list[str] | None = None, **fields: object) -> Campaign:
    fields.setdefault("status", CampaignStatus.SENT)
    fields.setdefault("started_at", utcnow() - timedelta(hours=2))
    campaign = CampaignFactory(**fields)
    for position, url in enumerate(LINKS if links is None else links):
        db.session.add(Link(campaign_id=campaign.id, position=position, url=url))
    db.session.commit()
    return campaign


def make_delivery(
    campaign: Campaign, *, sent_ago: timedelta = timedelta(hours=1), status: str = "sent",
    subscriber: Subscriber | None = None,
) -> Delivery:
    subscriber = subscriber or SubscriberFactory()
    # Built directly: DeliveryFactory passes a `campaign` keyword that Delivery does not have.
    delivery = Delivery(
        campaign_id=campaign.id,
        subscriber_id=subscriber.id,
        email=subscriber.email,
        status=status,
        sent_at=utcnow() - sent_ago if status == "sent" else None,
    )
    db.session.add(delivery)
    db.session.commit()
    return delivery


def settle() -> int:
    """Flush buffered opens into the database (nothing to do on the embedded default)."""
    return opens.flush_open_buffer()
