"""Status badges: one macro gives every status (campaigns, subscribers, deliveries, imports) one colour,
the same on every page."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from mailapp.models.base import utcnow
from mailapp.models.campaign import CampaignStatus
from mailapp.models.delivery import DeliveryStatus
from mailapp.models.subscriber import ImportStatus, SubscriberStatus
from tests.campaign_fixtures import audience, make_delivery, make_ready_campaign  # noqa: F401
from tests.factories import SubscriberFactory

# `bounced` is a subscriber status another change adds: it has its colour here already.
EVERY_STATUS = sorted(
    {*CampaignStatus, *DeliveryStatus, *SubscriberStatus, *ImportStatus, "bounced"}, key=str
)
BADGE = re.compile(r'<span class="badge (text-bg-[a-z]+)[^"]*" data-status="([a-z]+)"')


def _badge(app, status: str) -> str:
    template = app.jinja_env.from_string(
        '{% from "_status_badge.html" import status_badge %}{{ status_badge(status) }}'
    )
    return template.render(status=status)


@pytest.mark.parametrize("status", EVERY_STATUS)
def test_every_status_has_a_colour_of_its_own_choosing(app, status):
    tone = BADGE.search(_badge(app, status)).group(1)
    assert tone != "text-bg-secondary" or status in {"draft", "queued", "pending"}, status


def test_a_status_has_the_same_badge_on_every_page(auth_client, db, audience):  # noqa: F811
    sent = make_ready_campaign(audience, status="sent", started_at=utcnow(), finished_at=utcnow())
    failed = make_ready_campaign(audience, status="failed", started_at=utcnow())
    make_ready_campaign(audience, status="cancelled")
    make_delivery(sent.id, subscriber_id=audience.active[0].id, status="sent", attempts=1)
    make_delivery(sent.id, subscriber_id=audience.active[1].id, status="failed", attempts=5)
    unsubscribed = SubscriberFactory(status="unsubscribed")
    blocklisted = SubscriberFactory(status="blocklisted")
    pages = [
        "/campaigns/",
        f"/campaigns/{sent.id}",
        f"/campaigns/{failed.id}",
        "/reports/",
        f"/reports/campaigns/{sent.id}",
        f"/reports/campaigns/{sent.id}/recipients",
        "/subscribers",
        f"/subscribers/{unsubscribed.id}",
        f"/subscribers/{blocklisted.id}",
        "/",
    ]
    tones: dict[str, set[str]] = defaultdict(set)
    for page in pages:
        response = auth_client.get(page)
        assert response.status_code == 200, page
        for tone, status in BADGE.findall(response.get_data(as_text=True)):
            tones[status].add(tone)
    assert {"sent", "failed", "cancelled", "active", "unsubscribed", "blocklisted"} <= set(tones)
    for status, seen in tones.items():
        assert seen == {BADGE.search(_badge(auth_client.application, status)).group(1)}, status
