"""Tracking end to end: campaigns sent by the real worker through the real SMTP server; the pixel, link,
view and unsubscribe URLs are taken out of the received messages and fetched through the app, and the
report follows."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import select

from mailapp.extensions import db
from mailapp.models import Campaign, ClickEvent, Delivery, OpenEvent, Subscriber
from tests.factories import CampaignFactory, LayoutFactory, SubscriberFactory, SubscriberListFactory
from tests.tracking_fixtures import READER_UA, empty_open_buffer, settle

__all__ = ["empty_open_buffer"]

pytestmark = pytest.mark.e2e

PUBLIC = "http://mailapp.test"
LAYOUT = (
    "<html><body><h1>Hello {{ subscriber.name }}</h1>{{ message }}"
    '<p><a href="https://example.com/offer">Offer</a> <a href="https://example.com/blog">Blog</a></p>'
    '<p><a href="{{ view_in_browser_url }}">View in browser</a> '
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)
APPLE_MPP = "Mozilla/5.0"


def path_of(url: str) -> str:
    assert url.startswith(PUBLIC), url
    return url[len(PUBLIC) :]


def links_in(message) -> dict[str, object]:
    html = message.html()
    return {
        "pixel": [path_of(url) for url in re.findall(r'src="(http://mailapp\.test/o/[^"]+\.gif)"', html)],
        "clicks": [path_of(url) for url in re.findall(r'href="(http://mailapp\.test/c/[^"]+)"', html)],
        "view": [path_of(url) for url in re.findall(r'href="(http://mailapp\.test/v/[^"]+)"', html)],
        "unsubscribe": path_of(message.message["List-Unsubscribe"].strip("<>")),
    }


def send_and_wait(auth_client, smtp_server, campaign_id: int, expected: int) -> dict[str, object]:
    response = auth_client.post_form(f"/campaigns/{campaign_id}/send", token_page=f"/campaigns/{campaign_id}")
    assert response.status_code == 302
    deadline = time.monotonic() + 120  # generous: the embedded SQLite broker is slow on a busy machine
    while True:
        status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
        statuses = db.session.scalars(
            select(Delivery.status).where(Delivery.campaign_id == campaign_id)
        ).all()
        # End the read transaction before waiting: on SQLite it holds the write lock the worker needs.
        db.session.rollback()
        if status == "sent":
            break
        assert time.monotonic() < deadline, f"the campaign is still {status}: deliveries {statuses}"
        time.sleep(0.1)
    received = smtp_server.wait_for(expected)
    time.sleep(0.3)  # nothing more may arrive
    assert len(smtp_server.messages) == expected
    return {message.to: message for message in received}


def test_opens_clicks_and_unsubscribes_from_real_messages_reach_the_report(
    app,
    auth_client,
    api,
    smtp_server,
    celery_worker,
    monkeypatch,
):
    audience = SubscriberListFactory()
    alice, bob, carol = (SubscriberFactory(name=name, lists=[audience]) for name in ("Alice", "Bob", "Carol"))
    campaign = CampaignFactory(layout=LayoutFactory(html=LAYOUT), lists=[audience], name="E2E news")
    inbox = send_and_wait(auth_client, smtp_server, campaign.id, 3)
    mail = {person.name: links_in(inbox[person.email]) for person in (alice, bob, carol)}
    for person in mail.values():
        assert len(person["pixel"]) == 1
        assert len(person["clicks"]) == 2
    reader = {"User-Agent": READER_UA}
    # The early-fetch rule would flag every fetch this soon after sending as a machine's; this test
    # checks the user-agent rules, and the next one the early rule.
    monkeypatch.setitem(app.config, "TRACKING_EARLY_SECONDS", 0)

    # Alice opens twice as a person and clicks the offer.
    for _ in range(2):
        assert auth_client.get(mail["Alice"]["pixel"][0], headers=reader).mimetype == "image/gif"
    offer = auth_client.get(mail["Alice"]["clicks"][0], headers=reader)
    assert (offer.status_code, offer.headers["Location"]) == (302, "https://example.com/offer")
    # Bob's Apple Mail fetches the image through Privacy Protection; later he clicks the blog link.
    auth_client.get(mail["Bob"]["pixel"][0], headers={"User-Agent": APPLE_MPP})
    blog = auth_client.get(mail["Bob"]["clicks"][1], headers=reader)
    assert blog.headers["Location"] == "https://example.com/blog"
    # Forged and altered tokens record nothing and redirect nowhere.
    pixel = mail["Carol"]["pixel"][0]
    assert auth_client.get(pixel.replace(".gif", "x.gif"), headers=reader).mimetype == "image/gif"
    altered = mail["Carol"]["clicks"][0][:-2] + "zz"
    assert auth_client.get(altered, headers=reader).status_code == 404
    assert auth_client.get(f"{mail['Carol']['clicks'][0]}?url=https://evil.example").headers["Location"] == (
        "https://example.com/offer"
    )
    db.session.rollback()
    clicks = db.session.scalars(select(ClickEvent)).all()
    assert len(clicks) == 3  # Alice, Bob, and Carol's real token followed with a ?url= added
    # Carol's mail scanner follows the unsubscribe link with a GET: nothing happens.
    confirm = auth_client.get(mail["Carol"]["unsubscribe"])
    assert confirm.status_code == 200
    db.session.rollback()
    assert db.session.get(Subscriber, carol.id).status == "active"
    # Her mail app's one-click unsubscribe: a POST with no cookie and no CSRF token.
    one_click = app.test_client(use_cookies=False).post(
        mail["Carol"]["unsubscribe"], data={"List-Unsubscribe": "One-Click"}
    )
    assert one_click.status_code == 200
    assert "Location" not in one_click.headers
    view = auth_client.get(mail["Alice"]["view"][0])
    assert "Hello Alice" in view.get_data(as_text=True)

    settle()
    report = api.get(f"/api/v1/campaigns/{campaign.id}/report").get_json()
    assert (report["recipients"], report["sent"], report["failed"]) == (3, 3, 0)
    assert report["opens"] == 3
    assert report["machine_opens"] == 1
    # Alice opened; Bob's only open was a machine's, but he clicked, and a click implies an open.
    # Carol's followed link (the test above) was a human click too.
    assert report["unique_opens"] == 3
    assert report["unique_clicks"] == 3
    assert report["clicks"] == 3
    assert report["unsubscribes"] == 1
    assert report["open_rate"] == 1.0
    assert {link["url"]: link["clicks"] for link in report["top_links"]} == {
        "https://example.com/offer": 2,
        "https://example.com/blog": 1,
    }
    page = auth_client.get(f"/reports/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'data-testid="machine-opens">1<' in page
    assert 'data-testid="unsubscribes">1<' in page

    # The next campaign to the same list reaches Alice and Bob only.
    smtp_server.reset()
    second = CampaignFactory(layout=LayoutFactory(html=LAYOUT), lists=[audience], name="E2E follow-up")
    inbox = send_and_wait(auth_client, smtp_server, second.id, 2)
    assert set(inbox) == {alice.email, bob.email}


def test_early_fetches_are_machine_opens_and_tracking_can_be_switched_off(
    app,
    auth_client,
    api,
    smtp_server,
    celery_worker,
    monkeypatch,
):
    audience = SubscriberListFactory()
    reader = SubscriberFactory(name="Dana", lists=[audience])
    tracked = CampaignFactory(layout=LayoutFactory(html=LAYOUT), lists=[audience])
    # A generous window stands in for "seconds after delivery", whatever the machine's speed.
    monkeypatch.setitem(app.config, "TRACKING_EARLY_SECONDS", 3600)
    links = links_in(send_and_wait(auth_client, smtp_server, tracked.id, 1)[reader.email])
    auth_client.get(links["pixel"][0], headers={"User-Agent": READER_UA})
    auth_client.get(links["clicks"][0], headers={"User-Agent": READER_UA})
    settle()
    report = api.get(f"/api/v1/campaigns/{tracked.id}/report").get_json()
    assert (report["opens"], report["machine_opens"], report["unique_opens"]) == (1, 1, 0)
    assert (report["clicks"], report["unique_clicks"]) == (0, 0)
    assert db.session.scalars(select(OpenEvent.is_machine)).all() == [True]

    smtp_server.reset()
    private = CampaignFactory(
        layout=LayoutFactory(html=LAYOUT), lists=[audience], track_opens=False, track_clicks=False
    )
    message = send_and_wait(auth_client, smtp_server, private.id, 1)[reader.email]
    private_links = links_in(message)
    assert private_links["pixel"] == []
    assert private_links["clicks"] == []
    assert 'href="https://example.com/offer"' in message.html()
