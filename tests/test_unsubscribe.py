"""Unsubscribe: GET only asks, POST (RFC 8058 one-click, no cookie, no CSRF token) unsubscribes, and
view in browser."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailapp.extensions import db
from mailapp.models import CampaignStats, Delivery, Subscriber
from mailapp.sending import tokens
from tests.factories import SubscriberFactory
from tests.tracking_fixtures import empty_open_buffer, make_campaign, make_delivery

__all__ = ["empty_open_buffer"]

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def unsubscribe_path(delivery_id: int) -> str:
    return f"/u/{tokens.make_token('unsubscribe', delivery_id)}"


def reload(subscriber_id: int, delivery_id: int) -> tuple[Subscriber, Delivery]:
    db.session.expire_all()
    return db.session.get(Subscriber, subscriber_id), db.session.get(Delivery, delivery_id)


def test_get_shows_a_confirmation_and_changes_nothing(client):
    delivery = make_delivery(make_campaign())
    page = client.get(unsubscribe_path(delivery.id))
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert delivery.email in html
    assert 'method="post"' in html
    assert 'name="List-Unsubscribe" value="One-Click"' in html
    assert page.headers["Referrer-Policy"] == "no-referrer"
    subscriber, delivery = reload(delivery.subscriber_id, delivery.id)
    assert subscriber.status == "active"
    assert subscriber.unsubscribed_at is None
    assert delivery.unsubscribed_at is None


@pytest.mark.parametrize(
    ("from_name", "sentence_end"), [("Example Inc.", "Example Inc."), ("Example News", "Example News.")]
)
def test_the_confirmation_ends_its_sentence_with_one_full_stop(client, from_name, sentence_end):
    delivery = make_delivery(make_campaign(from_name=from_name))
    html = " ".join(client.get(unsubscribe_path(delivery.id)).get_data(as_text=True).split())
    assert f"will get no more emails from {sentence_end}" in html
    assert ".." not in html.split("<body", 1)[1]


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_without_cookie_or_csrf_unsubscribes(app, encoding):
    delivery = make_delivery(make_campaign())
    client = app.test_client(use_cookies=False)
    if encoding == "multipart":
        response = client.post(
            unsubscribe_path(delivery.id), data=ONE_CLICK, content_type="multipart/form-data"
        )
    else:
        response = client.post(unsubscribe_path(delivery.id), data=ONE_CLICK)
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert "Set-Cookie" not in response.headers
    assert "unsubscribed" in response.get_data(as_text=True)
    subscriber, delivery = reload(delivery.subscriber_id, delivery.id)
    assert subscriber.status == "unsubscribed"
    assert subscriber.unsubscribed_campaign_id == delivery.campaign_id
    assert subscriber.unsubscribed_at is not None
    assert delivery.unsubscribed_at == subscriber.unsubscribed_at
    assert db.session.get(CampaignStats, delivery.campaign_id).unsubscribes == 1


def test_the_confirmation_button_posts_the_same_form(client):
    delivery = make_delivery(make_campaign())
    html = client.get(unsubscribe_path(delivery.id)).get_data(as_text=True)
    assert f'action="{unsubscribe_path(delivery.id)}"' in html
    assert client.post(unsubscribe_path(delivery.id), data=ONE_CLICK).status_code == 200
    assert "already unsubscribed" in client.get(unsubscribe_path(delivery.id)).get_data(as_text=True)


def test_unsubscribing_twice_keeps_the_first_time_and_counts_once(client):
    campaign = make_campaign()
    delivery = make_delivery(campaign)
    client.post(unsubscribe_path(delivery.id), data=ONE_CLICK)
    first, _ = reload(delivery.subscriber_id, delivery.id)
    first_at = first.unsubscribed_at
    assert client.post(unsubscribe_path(delivery.id), data=ONE_CLICK).status_code == 200
    subscriber, delivery = reload(delivery.subscriber_id, delivery.id)
    assert subscriber.unsubscribed_at == first_at
    assert delivery.unsubscribed_at == first_at
    assert db.session.get(CampaignStats, campaign.id).unsubscribes == 1


def test_a_later_campaigns_link_keeps_the_first_unsubscribe(client):
    subscriber = SubscriberFactory()
    earlier = make_delivery(make_campaign(), subscriber=subscriber)
    later = make_delivery(make_campaign(), subscriber=subscriber)
    client.post(unsubscribe_path(earlier.id), data=ONE_CLICK)
    client.post(unsubscribe_path(later.id), data=ONE_CLICK)
    subscriber, _ = reload(subscriber.id, later.id)
    assert subscriber.unsubscribed_campaign_id == earlier.campaign_id


def test_blocklisted_subscriber_stays_blocklisted(client):
    subscriber = SubscriberFactory(status="blocklisted")
    delivery = make_delivery(make_campaign(), subscriber=subscriber)
    assert client.post(unsubscribe_path(delivery.id), data=ONE_CLICK).status_code == 200
    subscriber, delivery = reload(subscriber.id, delivery.id)
    assert subscriber.status == "blocklisted"
    assert delivery.unsubscribed_at is not None


def test_bad_tokens_are_refused_without_a_write(client):
    delivery = make_delivery(make_campaign())
    good = tokens.make_token("unsubscribe", delivery.id)
    bad = [
        good[:-1],
        good[:-1] + ("A" if good[-1] != "A" else "B"),
        tokens.make_token("open", delivery.id),
        tokens.make_token("view", delivery.id),
        tokens.make_token("unsubscribe", delivery.id + 100),
        "nonsense",
    ]
    for token in bad:
        for response in (client.get(f"/u/{token}"), client.post(f"/u/{token}", data=ONE_CLICK)):
            assert response.status_code == 404, token
            assert "Location" not in response.headers
    subscriber, delivery = reload(delivery.subscriber_id, delivery.id)
    assert subscriber.status == "active"
    assert delivery.unsubscribed_at is None
    assert db.session.scalars(select(CampaignStats)).all() == []


def test_view_in_browser_renders_the_message_for_its_recipient(client):
    subscriber = SubscriberFactory(name="Ada <Lovelace>")
    delivery = make_delivery(make_campaign(), subscriber=subscriber)
    page = client.get(f"/v/{tokens.make_token('view', delivery.id)}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Hello Ada &lt;Lovelace&gt;" in html
    assert "This week&#39;s news." in html or "This week's news." in html
    assert f"/u/{tokens.make_token('unsubscribe', delivery.id)}" in html
    # The same message as sent: tracked links and the open pixel included.
    assert f"/c/{tokens.make_token('click', delivery.id, 0)}" in html
    assert f"/o/{tokens.make_token('open', delivery.id)}.gif" in html
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_view_in_browser_refuses_other_tokens(client):
    delivery = make_delivery(make_campaign())
    assert client.get(f"/v/{tokens.make_token('open', delivery.id)}").status_code == 404
    assert client.get("/v/nonsense").status_code == 404
