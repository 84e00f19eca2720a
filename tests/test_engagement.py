"""Engagement kept by the database: Delivery.engaged_at (first human open or click), Delivery.human_clicked_at
and Subscriber.last_engaged_at follow every human event, whichever way it is recorded (the pixel with
its buffer, the click redirect, a plain INSERT), and migration 0017 fills them from the events already
recorded. Segments' activity rules read only these columns."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from mailapp.extensions import db
from mailapp.models import ClickEvent, Delivery, Link, OpenEvent, Subscriber, utcnow
from tests.factories import SubscriberFactory
from tests.sibling_database import app_on_fresh_database
from tests.test_tracking import READER, click_path, open_path
from tests.tracking_fixtures import empty_open_buffer, make_campaign, make_delivery, settle

__all__ = ["empty_open_buffer"]

SCANNER = {"User-Agent": "Proofpoint ppops-url-defense"}


def engagement(delivery: Delivery | int) -> tuple[datetime | None, datetime | None, datetime | None]:
    db.session.expire_all()
    row = db.session.get(Delivery, delivery if isinstance(delivery, int) else delivery.id)
    subscriber = db.session.get(Subscriber, row.subscriber_id)
    return row.engaged_at, row.human_clicked_at, subscriber.last_engaged_at


def event_times(model, delivery: Delivery) -> list[datetime]:
    db.session.expire_all()
    return sorted(
        event.at for event in db.session.query(model).filter_by(delivery_id=delivery.id, is_machine=False)
    )


def test_a_human_open_and_a_human_click_set_the_engagement_columns(client):
    delivery = make_delivery(make_campaign())
    assert engagement(delivery) == (None, None, None)

    client.get(open_path(delivery.id), headers=READER)
    settle()
    (opened_at,) = event_times(OpenEvent, delivery)
    assert engagement(delivery) == (opened_at, None, opened_at)

    client.get(click_path(delivery.id, 0), headers=READER)
    (clicked_at,) = event_times(ClickEvent, delivery)
    assert engagement(delivery) == (opened_at, clicked_at, clicked_at)


def test_machine_opens_and_scanner_clicks_are_not_engagement(client):
    delivery = make_delivery(make_campaign())
    client.get(open_path(delivery.id), headers={"User-Agent": "Mozilla/5.0"})  # Apple's proxy
    client.get(open_path(delivery.id), headers={"User-Agent": "Mimecast URL Protect"})
    client.get(click_path(delivery.id, 0), headers=SCANNER)
    settle()
    flags = [event.is_machine for model in (OpenEvent, ClickEvent) for event in db.session.query(model)]
    assert flags == [True, True, True]
    assert engagement(delivery) == (None, None, None)


def test_first_engagement_only_moves_earlier_and_the_last_only_later():
    campaign = make_campaign()
    subscriber = SubscriberFactory()
    db.session.commit()
    first, second = make_delivery(campaign, subscriber=subscriber), make_delivery(
        make_campaign(), subscriber=subscriber
    )
    link = db.session.query(Link).filter_by(campaign_id=campaign.id, position=0).one()
    now = utcnow().replace(microsecond=0)

    def record(model, delivery: Delivery, at: datetime, **fields: object) -> None:
        db.session.add(model(delivery_id=delivery.id, campaign_id=delivery.campaign_id, at=at, **fields))
        db.session.commit()

    record(OpenEvent, first, now - timedelta(days=2), is_machine=False)
    record(OpenEvent, first, now - timedelta(days=5), is_machine=False)  # recorded late (a replay)
    record(OpenEvent, first, now, is_machine=True)  # a machine's newer open changes nothing
    assert engagement(first) == (now - timedelta(days=5), None, now - timedelta(days=2))

    record(ClickEvent, first, now - timedelta(days=3), is_machine=False, link_id=link.id)
    assert engagement(first) == (now - timedelta(days=5), now - timedelta(days=3), now - timedelta(days=2))

    record(OpenEvent, second, now - timedelta(hours=1), is_machine=False)  # another campaign, newer
    assert engagement(first)[2] == now - timedelta(hours=1)
    assert engagement(second) == (now - timedelta(hours=1), None, now - timedelta(hours=1))


# --- migration 0017 --------------------------------------------------------------------------------------


@pytest.fixture
def fresh_app(app: Flask, tmp_path: Path) -> Iterator[Flask]:
    with app_on_fresh_database(app, tmp_path, "engagement") as fresh:
        yield fresh


def columns(table: str) -> set[str]:
    return {column["name"] for column in db.inspect(db.engine).get_columns(table)}


def test_0017_fills_engagement_from_the_events_already_recorded_and_downgrades(fresh_app):
    with fresh_app.app_context():
        upgrade()
        now = utcnow().replace(microsecond=0)
        campaign, other = make_campaign(), make_campaign()
        reader, idle = SubscriberFactory(), SubscriberFactory()
        db.session.commit()
        read, opened_elsewhere, unread = (
            make_delivery(campaign, subscriber=reader),
            make_delivery(other, subscriber=reader),
            make_delivery(campaign, subscriber=idle),
        )
        link = db.session.query(Link).filter_by(campaign_id=campaign.id, position=0).one()
        db.session.add_all([
            OpenEvent(delivery_id=read.id, campaign_id=campaign.id, at=now - timedelta(days=4),
                      is_machine=False),
            ClickEvent(delivery_id=read.id, campaign_id=campaign.id, link_id=link.id,
                       at=now - timedelta(days=3), is_machine=False),
            OpenEvent(delivery_id=opened_elsewhere.id, campaign_id=other.id, at=now - timedelta(days=1),
                      is_machine=False),
            OpenEvent(delivery_id=unread.id, campaign_id=campaign.id, at=now, is_machine=True),
        ])  # fmt: skip
        db.session.commit()
        ids = [delivery.id for delivery in (read, opened_elsewhere, unread)]
        expected = [engagement(delivery_id) for delivery_id in ids]
        assert expected == [
            (now - timedelta(days=4), now - timedelta(days=3), now - timedelta(days=1)),
            (now - timedelta(days=1), None, now - timedelta(days=1)),
            (None, None, None),
        ]
        campaign_id = campaign.id
        db.session.remove()

        downgrade(revision="0016")
        assert "engaged_at" not in columns("deliveries")
        assert "last_engaged_at" not in columns("subscribers")
        upgrade(revision="0017")  # the backfill, from the events alone
        assert [engagement(delivery_id) for delivery_id in ids] == expected

        # The triggers are back too: a new human open of the idle subscriber engages them.
        db.session.add(OpenEvent(delivery_id=ids[2], campaign_id=campaign_id, at=now, is_machine=False))
        db.session.commit()
        assert engagement(ids[2]) == (now, None, now)
        assert db.session.execute(text("SELECT count(*) FROM open_events")).scalar() == 4
