"""See the campaign before it goes: the campaign page and the API show the message as a chosen subscriber
(by default the first active recipient) will receive it, built by the send's own code; a real send to
that subscriber matches it, tracking tokens aside."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import select

from mailapp.extensions import db
from mailapp.models import Campaign
from mailapp.sending.preview import preheader_of
from mailapp.wording import with_placeholders
from tests.factories import CampaignFactory, LayoutFactory, SubscriberFactory, SubscriberListFactory

LAYOUT = (
    "<html><head><title>Ignored</title><style>p { color: #333; }</style></head><body>"
    "<p>Hello {{ subscriber.name }} from {{ subscriber.attributes.city or 'afar' }}!</p>{{ message }}"
    '<p><a href="https://example.com/offer">Offer</a></p>'
    '<p><a href="{{ view_in_browser_url }}">View in browser</a> '
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
    "</body></html>"
)
# Tracking tokens differ between any two messages (each names its delivery): compared as placeholders.
TOKEN_URL = re.compile(r"http://mailapp\.test/([ocuv])/[A-Za-z0-9_\-.]+")


def without_tokens(html: str) -> str:
    return TOKEN_URL.sub(lambda match: f"http://mailapp.test/{match.group(1)}/TOKEN", html)


@pytest.fixture
def campaign(db) -> Campaign:
    audience = SubscriberListFactory()
    SubscriberFactory(status="unsubscribed", lists=[audience], name="Gone")
    SubscriberFactory(name="Zoé Martin", attributes={"city": "Lyon"}, lists=[audience])
    SubscriberFactory(name="Bob", lists=[audience])
    return CampaignFactory(
        layout=LayoutFactory(html=LAYOUT), lists=[audience], name="Spring",
        subject="Spring is here, {{ subscriber.name }}", from_name="Acme Shop",
        from_email="news@acme.example", message="Our catalogue is out.",
    )


def test_the_preheader_is_the_first_visible_text_of_the_body():
    assert preheader_of("<html><head><title>T</title><style>p{}</style></head><body><p>Hi  there</p>"
                        "<p>second</p></body></html>") == "Hi there second"
    long = preheader_of("<p>" + "word " * 100 + "</p>", length=20)
    assert long == "word word word word…"


def test_subjects_in_lists_name_their_variables_instead_of_showing_template_syntax():
    subject = "Hi {{ subscriber.name }}{% if x %}!{% endif %}{# note #}"
    assert with_placeholders(subject) == "Hi ‹subscriber.name›!"


def test_the_campaign_page_previews_the_message_for_the_first_active_recipient(auth_client, campaign):
    html = auth_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    preview = html.split('data-testid="campaign-preview"', 1)[1]
    assert "Spring is here, Zoé Martin" in preview
    assert "Acme Shop &lt;news@acme.example&gt;" in preview
    assert "Hello Zoé Martin from Lyon! Our catalogue is out." in preview  # the preheader
    assert 'sandbox=""' in preview
    assert "width: 600px" in preview
    # The header of the page names the subject's variable instead of showing {{ ... }}.
    assert "Spring is here, ‹subscriber.name›" in html
    assert "{{ subscriber.name }}" not in html.split("<main", 1)[1].split('data-testid="campaign-preview"')[0]


def test_the_preview_picks_a_subscriber_by_email_and_shows_a_phone_width(auth_client, campaign):
    bob = next(s for s in campaign.lists[0].subscribers if s.name == "Bob")
    page = f"/campaigns/{campaign.id}?preview_as={bob.email.upper()}&device=phone"
    preview = auth_client.get(page).get_data(as_text=True).split('data-testid="campaign-preview"', 1)[1]
    assert "Spring is here, Bob" in preview
    assert "Hello Bob from afar!" in preview
    assert "width: 375px" in preview
    assert f"/campaigns/{campaign.id}/preview.html?subscriber={bob.id}" in preview


def test_an_unknown_preview_subscriber_is_a_clear_error_on_the_page(auth_client, campaign):
    html = auth_client.get(f"/campaigns/{campaign.id}?preview_as=nobody@example.com").get_data(as_text=True)
    assert "No subscriber has the address &#39;nobody@example.com&#39;." in html


def test_the_preview_frame_is_sandboxed_and_holds_the_body(auth_client, campaign):
    response = auth_client.get(f"/campaigns/{campaign.id}/preview.html")
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert "Hello Zoé Martin from Lyon!" in response.get_data(as_text=True)


def test_the_api_previews_for_a_given_subscriber_and_refuses_an_unknown_one(api, campaign):
    bob = next(s for s in campaign.lists[0].subscribers if s.name == "Bob")
    body = api.get(f"/api/v1/campaigns/{campaign.id}/preview?subscriber_id={bob.id}").get_json()
    assert (body["subscriber_id"], body["to"], body["subject"]) == (bob.id, bob.email, "Spring is here, Bob")
    assert body["from"] == "Acme Shop <news@acme.example>"
    assert body["preheader"].startswith("Hello Bob from afar!")
    assert "Our catalogue is out." in body["text"]
    missing = api.get(f"/api/v1/campaigns/{campaign.id}/preview?subscriber_id=999999")
    assert missing.status_code == 422
    assert api.get("/api/v1/campaigns/999999/preview").status_code == 404


def test_a_campaign_without_active_recipients_previews_for_the_sample_person(api, db):
    campaign = CampaignFactory(layout=LayoutFactory(html=LAYOUT), lists=[SubscriberListFactory()])
    body = api.get(f"/api/v1/campaigns/{campaign.id}/preview").get_json()
    assert (body["subscriber_id"], body["subject"]) == (None, "Hello Jane Doe")


@pytest.mark.e2e
def test_the_preview_matches_the_message_the_subscriber_receives(api, smtp_server, celery_worker):
    audience = SubscriberListFactory()
    zoe = SubscriberFactory(name="Zoé Martin", attributes={"city": "Lyon"}, lists=[audience])
    campaign = CampaignFactory(
        layout=LayoutFactory(html=LAYOUT), lists=[audience], subject="Spring is here, {{ subscriber.name }}",
        from_name="Acme Shop", from_email="news@acme.example", message="Our catalogue is out.",
    )
    preview = api.get(f"/api/v1/campaigns/{campaign.id}/preview?subscriber_id={zoe.id}").get_json()
    smtp_server.reset()
    assert api.post(f"/api/v1/campaigns/{campaign.id}/send").status_code == 202
    deadline = time.monotonic() + 120
    while db.session.scalar(select(Campaign.status).where(Campaign.id == campaign.id)) != "sent":
        db.session.rollback()  # on SQLite a read transaction holds the lock the worker needs
        assert time.monotonic() < deadline
        time.sleep(0.1)
    db.session.rollback()
    [received] = smtp_server.wait_for(1)
    assert received.to == zoe.email
    assert received.message["Subject"] == preview["subject"]
    assert str(received.message["From"]) == preview["from"]
    assert without_tokens(received.html()) == without_tokens(preview["html"])
    assert TOKEN_URL.search(preview["html"])  # the comparison did have tracking links to set aside
