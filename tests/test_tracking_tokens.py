"""A tracking link names one delivery forever: an old email's links answer 404 once their delivery is
gone (even where SQLite used to hand its id to someone else), v2 tokens bind the campaign and the
subscriber, v1 links in inboxes keep working for the deliveries they were issued for, and HEAD (link
checkers) records nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mailapp.extensions import db
from mailapp.models import CampaignStats, ClickEvent, Delivery, OpenEvent, Subscriber
from mailapp.sending import tokens
from mailapp.tracking import buffer, opens, services
from mailapp.tracking.opens import OpenHit
from tests.factories import CampaignFactory, LayoutFactory, SubscriberFactory, SubscriberListFactory
from tests.test_tracking import READER, assert_pixel, count
from tests.test_tracking_e2e import links_in, send_and_wait
from tests.test_tracking_fast_path import flask_only
from tests.tracking_fixtures import empty_open_buffer, make_campaign, make_delivery, settle

__all__ = ["empty_open_buffer"]

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def generic_page(client) -> bytes:
    """What any token that names no delivery gets."""
    response = client.get("/u/nonsense")
    assert response.status_code == 404
    return response.get_data()


def nothing_written(delivery: Delivery) -> None:
    db.session.expire_all()
    row = db.session.get(Delivery, delivery.id)
    assert (row.open_count, row.click_count, row.unsubscribed_at) == (0, 0, None)
    assert count(OpenEvent) == count(ClickEvent) == 0
    assert db.session.get(Subscriber, delivery.subscriber_id).status == "active"


# --- the issue's case, through the real send path ----------------------------------------------------


@pytest.mark.e2e
def test_an_old_emails_unsubscribe_link_names_nobody_after_its_campaign_is_deleted(
    app, auth_client, smtp_server, celery_worker
):
    layout = LayoutFactory(
        html='<html><body>{{ message }}<a href="https://example.com/offer">Offer</a>'
        '<a href="{{ view_in_browser_url }}">View</a><a href="{{ unsubscribe_url }}">Unsubscribe</a>'
        "</body></html>"
    )
    list_a, list_b = SubscriberListFactory(), SubscriberListFactory()
    old_reader, new_reader = SubscriberFactory(lists=[list_a]), SubscriberFactory(lists=[list_b])
    campaign_a = CampaignFactory(layout=layout, lists=[list_a])
    old_mail = links_in(send_and_wait(auth_client, smtp_server, campaign_a.id, 1)[old_reader.email])
    smtp_server.reset()
    page = f"/campaigns/{campaign_a.id}"
    assert auth_client.post_form(f"{page}/delete", token_page=page).status_code == 302
    campaign_b = CampaignFactory(layout=layout, lists=[list_b])
    send_and_wait(auth_client, smtp_server, campaign_b.id, 1)
    new_delivery = db.session.scalars(select(Delivery).where(Delivery.campaign_id == campaign_b.id)).one()

    generic = generic_page(auth_client)
    for response in (
        auth_client.get(old_mail["unsubscribe"]),
        auth_client.post(old_mail["unsubscribe"], data=ONE_CLICK),
        auth_client.get(old_mail["view"][0]),
        auth_client.get(old_mail["clicks"][0]),
    ):
        assert response.status_code == 404
        assert response.get_data() == generic
        assert "Location" not in response.headers
    assert_pixel(auth_client.get(old_mail["pixel"][0], headers=READER))
    settle()
    db.session.expire_all()
    assert db.session.get(Subscriber, new_reader.id).status == "active"
    assert db.session.get(Subscriber, old_reader.id).status == "active"
    nothing_written(new_delivery)


# --- v2 binding ---------------------------------------------------------------------------------------


def test_a_token_whose_campaign_or_subscriber_is_not_the_rows_answers_404_and_writes_nothing(client):
    """As if the id had been reused: the signature is good, the row is someone else's."""
    campaign = make_campaign()
    delivery = make_delivery(campaign)
    generic = generic_page(client)
    for binding in (
        {"campaign_id": campaign.id + 1, "subscriber_id": delivery.subscriber_id},
        {"campaign_id": campaign.id, "subscriber_id": delivery.subscriber_id + 1},
        {"campaign_id": campaign.id, "subscriber_id": None},
    ):
        for path in (
            f"/u/{tokens.make_token('unsubscribe', delivery.id, **binding)}",
            f"/v/{tokens.make_token('view', delivery.id, **binding)}",
            f"/c/{tokens.make_token('click', delivery.id, 0, **binding)}",
        ):
            for response in (client.get(path), client.post(path, data=ONE_CLICK)):
                if response.request.method == "POST" and not path.startswith("/u/"):
                    assert response.status_code == 405
                    continue
                assert response.status_code == 404, path
                assert response.get_data() == generic
        pixel = f"/o/{tokens.make_token('open', delivery.id, **binding)}.gif"
        assert_pixel(client.get(pixel, headers=READER))
        assert_pixel(flask_only(client.application).get(pixel, headers=READER))
    settle()
    nothing_written(delivery)
    assert db.session.scalars(select(CampaignStats)).all() == []


def test_the_right_binding_works_and_a_deleted_subscriber_does_not_break_it(client):
    delivery = make_delivery(make_campaign())
    path = f"/u/{tokens.make_token('unsubscribe', delivery.id)}"
    assert client.get(path).status_code == 200
    db.session.delete(db.session.get(Subscriber, delivery.subscriber_id))
    db.session.commit()
    # The row keeps its campaign and a NULL subscriber: still the delivery the link was sent for.
    assert client.post(path, data=ONE_CLICK).status_code == 200
    db.session.expire_all()
    assert db.session.get(Delivery, delivery.id).unsubscribed_at is not None


def test_altered_v2_tokens_are_refused(app):
    issued = tokens.TokenMinter().issue(0x1A, 0x2B, 0x3C)
    token = issued.unsubscribe
    assert tokens.read_token("unsubscribe", token).delivery_id == 0x1A
    ids, signature = token.split(".")
    other_signatures = [issued.open.split(".")[1], issued.view.split(".")[1], issued.click(0).split(".")[1]]
    altered = [
        f"1a-2c-3c.{signature}",  # another campaign
        f"1a-2b-3d.{signature}",  # another subscriber
        f"1b-2b-3c.{signature}",  # another delivery
        f"01a-2b-3c.{signature}",  # another spelling of the same ids
        f"1A-2b-3c.{signature}",
        f"1a-2b-3c-0.{signature}",  # a position on a kind that has none
        f"{ids}.{signature[:-1]}",
        f"{ids}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        f"{ids}.{signature}A",
        *(f"{ids}.{other}" for other in other_signatures),  # another kind's signature
        f"{ids}.",
        ids,
    ]
    for bad in altered:
        with pytest.raises(tokens.BadToken):
            tokens.read_token("unsubscribe", bad)
    with pytest.raises(tokens.BadToken):
        tokens.read_token("click", f"{ids}.{issued.click(0).split('.')[1]}")  # a click without position


def test_the_one_generic_page_answers_a_deleted_delivery(client):
    delivery = make_delivery(make_campaign())
    paths = [
        f"/u/{tokens.make_token('unsubscribe', delivery.id)}",
        f"/v/{tokens.make_token('view', delivery.id)}",
        f"/c/{tokens.make_token('click', delivery.id, 0)}",
    ]
    pixel = f"/o/{tokens.make_token('open', delivery.id)}.gif"
    db.session.delete(db.session.get(Delivery, delivery.id))
    db.session.commit()
    generic = generic_page(client)
    for path in paths:
        response = client.get(path)
        assert (response.status_code, response.get_data()) == (404, generic)
    assert client.post(paths[0], data=ONE_CLICK).get_data() == generic
    assert_pixel(client.get(pixel, headers=READER))
    settle()
    assert count(OpenEvent) == 0


# --- v1 links still in inboxes --------------------------------------------------------------------------


def from_before_0003(delivery: Delivery) -> Delivery:
    """What migration 0003 does for the rows that exist when it runs."""
    delivery.accepts_v1_tokens = True
    db.session.commit()
    return delivery


def test_a_v1_link_still_works_for_a_delivery_from_before_the_migration(client):
    delivery = from_before_0003(make_delivery(make_campaign(), sent_ago=timedelta(hours=2)))
    assert_pixel(client.get(f"/o/{tokens.make_v1_token('open', delivery.id)}.gif", headers=READER))
    click = client.get(f"/c/{tokens.make_v1_token('click', delivery.id, 0)}", headers=READER)
    assert (click.status_code, click.headers["Location"]) == (302, "https://example.com/offer")
    assert client.get(f"/v/{tokens.make_v1_token('view', delivery.id)}").status_code == 200
    unsubscribe = client.post(f"/u/{tokens.make_v1_token('unsubscribe', delivery.id)}", data=ONE_CLICK)
    assert unsubscribe.status_code == 200
    settle()
    db.session.expire_all()
    row = db.session.get(Delivery, delivery.id)
    assert (row.open_count, row.click_count) == (1, 1)
    assert row.unsubscribed_at is not None
    assert db.session.get(Subscriber, delivery.subscriber_id).status == "unsubscribed"


def test_a_v1_link_is_refused_for_a_delivery_created_after_the_migration(client):
    """Its id may be one SQLite handed out again: the old format names nothing but the id."""
    delivery = make_delivery(make_campaign())
    assert delivery.accepts_v1_tokens is False
    generic = generic_page(client)
    for path in (
        f"/u/{tokens.make_v1_token('unsubscribe', delivery.id)}",
        f"/v/{tokens.make_v1_token('view', delivery.id)}",
        f"/c/{tokens.make_v1_token('click', delivery.id, 0)}",
    ):
        response = client.get(path)
        assert (response.status_code, response.get_data()) == (404, generic)
    unsubscribe = client.post(f"/u/{tokens.make_v1_token('unsubscribe', delivery.id)}", data=ONE_CLICK)
    assert unsubscribe.status_code == 404
    assert_pixel(client.get(f"/o/{tokens.make_v1_token('open', delivery.id)}.gif", headers=READER))
    settle()
    nothing_written(delivery)


def test_rows_the_send_engine_inserts_refuse_v1_links(app):
    from mailapp.sending.snapshot import snapshot_recipients

    audience = SubscriberListFactory()
    SubscriberFactory(lists=[audience])
    campaign = CampaignFactory(lists=[audience])
    snapshot_recipients(campaign.id)
    db.session.commit()
    assert db.session.scalars(select(Delivery.accepts_v1_tokens)).all() == [False]


# --- HEAD ----------------------------------------------------------------------------------------------


def test_head_on_the_pixel_answers_like_get_and_records_nothing(app, client):
    delivery = make_delivery(make_campaign())
    path = f"/o/{tokens.make_token('open', delivery.id)}.gif"
    for head in (client.head(path, headers=READER), flask_only(app).head(path, headers=READER)):
        get_headers = dict(flask_only(app).get("/o/nonsense.gif").headers)
        assert head.status_code == 200
        assert dict(head.headers) == get_headers
        assert head.get_data() == b""
    settle()
    nothing_written(delivery)


def test_head_on_a_tracked_link_answers_like_get_and_records_nothing(client):
    delivery = make_delivery(make_campaign())
    path = f"/c/{tokens.make_token('click', delivery.id, 1)}"
    head = client.head(path, headers=READER)
    assert head.status_code == 302
    nothing_written(delivery)
    get = client.get(path, headers=READER)
    assert list(head.headers.items()) == list(get.headers.items())
    assert count(ClickEvent) == 1
    bad = client.head("/c/nonsense")
    assert bad.status_code == 404
    assert bad.headers["Content-Length"] == str(len(generic_page(client)))


def test_head_on_unsubscribe_and_view_changes_nothing(client):
    delivery = make_delivery(make_campaign())
    for path in (
        f"/u/{tokens.make_token('unsubscribe', delivery.id)}",
        f"/v/{tokens.make_token('view', delivery.id)}",
    ):
        head = client.head(path)
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(len(client.get(path).get_data()))
    nothing_written(delivery)


# --- the buffer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hit", "expected"),
    [
        (OpenHit(5, opens.datetime(2026, 1, 1, tzinfo=opens.UTC), "UA|x", "1.2.3.0",
                 campaign_id=7, subscriber_id=9), {"campaign_id": 7, "subscriber_id": 9, "v1_token": False}),
        (OpenHit(5, opens.datetime(2026, 1, 1, tzinfo=opens.UTC), "UA", "", v1_token=True),
         {"campaign_id": None, "subscriber_id": 0, "v1_token": True}),
        (OpenHit(5, opens.datetime(2026, 1, 1, tzinfo=opens.UTC), "UA", ""),
         {"campaign_id": None, "subscriber_id": 0, "v1_token": False}),
    ],
    ids=["v2", "v1", "no token"],
)
def test_a_buffered_open_keeps_what_its_token_binds(hit, expected):
    class Recorder:
        def append(self, payload: bytes) -> None:
            self.payload = payload

    recorder = Recorder()
    original = buffer.appender
    buffer.appender = lambda client: recorder
    try:
        buffer.push_open(
            None, hit.delivery_id, hit.at.timestamp(), hit.user_agent, hit.ip,
            campaign_id=hit.campaign_id, subscriber_id=hit.subscriber_id, v1_token=hit.v1_token,
        )
    finally:
        buffer.appender = original
    parsed = buffer.parse_entry(b"1-0", {b"e": recorder.payload})
    assert parsed == {
        "delivery_id": 5, "at": hit.at, "user_agent": hit.user_agent, "ip": hit.ip, "buffer_key": "1-0",
        **expected,
    }
    # An entry written before v2 (a bare id) was a v1 token's.
    assert buffer.parse_entry(b"2-0", {b"e": b"5|1.0|ip|UA"})["v1_token"] is True


def test_the_flush_drops_opens_whose_row_is_not_the_tokens(app):
    campaign = make_campaign()
    delivery = make_delivery(campaign)
    at = services.utcnow()
    hits = [
        OpenHit(delivery.id, at, "UA", "", buffer_key="1-1", campaign_id=campaign.id + 1,
                subscriber_id=delivery.subscriber_id),
        OpenHit(delivery.id, at, "UA", "", buffer_key="1-2", v1_token=True),
        OpenHit(delivery.id, at, "UA", "", buffer_key="1-3", campaign_id=campaign.id,
                subscriber_id=delivery.subscriber_id),
    ]
    assert opens.record_opens(hits) == 1
    db.session.commit()
    assert db.session.scalars(select(OpenEvent.buffer_key)).all() == ["1-3"]


# --- the view in browser of text that changes length with case ---------------------------------------


def test_the_view_in_browser_page_keeps_the_pixel_before_the_body_end(client):
    subscriber = SubscriberFactory(name="İbrahim", attributes={"city": "İstanbul"})
    layout = LayoutFactory(
        html="<html><body><p>Hi {% if subscriber.name %}{{ subscriber.name }}{% endif %} "
        "in {{ subscriber.attributes.city }}</p>{{ message }}</body></html>"
    )
    delivery = make_delivery(make_campaign(layout=layout), subscriber=subscriber)
    html = client.get(f"/v/{tokens.make_token('view', delivery.id)}").get_data(as_text=True)
    pixel = f'<img src="http://mailapp.test/o/{tokens.make_token("open", delivery.id)}.gif"'
    assert "Hi İbrahim in İstanbul" in html
    assert html.count("</body>") == 1
    assert html.index(pixel) < html.index("</body>")
    assert html[html.index(pixel):].split(">", 1)[1].startswith("</body>")
