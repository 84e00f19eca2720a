"""Recording clicks and unsubscribes against deliveries, and showing a delivery in the browser.

The writes follow the steps in counters.py, in one transaction; opens are recorded by opens.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app
from markupsafe import Markup
from sqlalchemy import and_, case, select, update

from mailapp.errors import NotFoundError
from mailapp.extensions import db
from mailapp.models import (
    Campaign,
    ClickEvent,
    Delivery,
    Link,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from mailapp.sending import tokens
from mailapp.tracking import machine
from mailapp.tracking.counters import _bump_campaign_stats, _lock_campaign_stats
from mailapp.tracking.opens import early_seconds

# Every token that names no delivery gets the same page: it tells nobody whether an id exists.
INVALID_LINK = "This link is not valid. Please use the link from your email."


# --- clicks ----------------------------------------------------------------------------------------


def click_target(token: str) -> Any | None:
    """The delivery and stored link a click token names (id, campaign_id, sent_at, link_id, url), or
    None for a bad token, a delivery that is gone or is not the one the token was issued for, or a
    link that is not this campaign's or not http(s). Reads only."""
    try:
        claims = tokens.read_token("click", token)
    except tokens.BadToken:
        return None
    found = db.session.execute(
        select(
            Delivery.id, Delivery.campaign_id, Delivery.subscriber_id, Delivery.accepts_v1_tokens,
            Delivery.sent_at, Link.id.label("link_id"), Link.url,
        )
        .join(Link, and_(Link.campaign_id == Delivery.campaign_id, Link.position == claims.position))
        .where(Delivery.id == claims.delivery_id)
    ).first()
    if found is None or not claims.names(found.campaign_id, found.subscriber_id, found.accepts_v1_tokens):
        return None
    if not found.url.lower().startswith(("http://", "https://")):
        return None
    return found


def record_click(token: str, user_agent: str | None, remote_addr: str | None) -> str | None:
    """The URL to redirect to, after recording the click; None when `click_target` finds nothing
    (nothing is written then). The caller commits."""
    found = click_target(token)
    if found is None:
        return None
    delivery_id = found.id
    at = utcnow()
    agent = (user_agent or "")[:500]
    is_machine = machine.is_machine_user_agent(agent) or machine.is_early(at, found.sent_at, early_seconds())
    _lock_campaign_stats([found.campaign_id])
    if is_machine:
        _bump_campaign_stats(found.campaign_id, scanner_clicks=1)
    else:
        # Set by the event tables' triggers; read after the campaign's lock, like _engaged_deliveries.
        clicked_at, engaged_at = db.session.execute(
            select(Delivery.human_clicked_at, Delivery.engaged_at).where(Delivery.id == delivery_id)
        ).one()
        clicked_before, engaged_before = clicked_at is not None, engaged_at is not None
        _bump_campaign_stats(
            found.campaign_id,
            clicks=1,
            unique_clicks=0 if clicked_before else 1,
            unique_opens=0 if engaged_before else 1,
        )
    db.session.add(
        ClickEvent(
            delivery_id=delivery_id,
            campaign_id=found.campaign_id,
            link_id=found.link_id,
            at=at,
            user_agent=agent,
            ip=machine.truncate_ip(remote_addr),
            is_machine=is_machine,
        )
    )
    table = Delivery.__table__
    db.session.execute(
        update(table)
        .where(table.c.id == delivery_id)
        .values(
            click_count=table.c.click_count + 1,
            first_clicked_at=case(
                (table.c.first_clicked_at.is_(None), at), else_=table.c.first_clicked_at
            ),
        )
    )
    return found.url


# --- unsubscribe and view in browser ---------------------------------------------------------------


@dataclass(frozen=True)
class UnsubscribeTarget:
    delivery: Delivery
    subscriber: Subscriber | None
    campaign: Campaign | None

    @property
    def email(self) -> str:
        return self.subscriber.email if self.subscriber is not None else self.delivery.email

    @property
    def is_unsubscribed(self) -> bool:
        if self.subscriber is not None:
            return self.subscriber.status != SubscriberStatus.ACTIVE
        return self.delivery.unsubscribed_at is not None


def delivery_for_token(kind: str, token: str) -> Delivery:
    """The delivery a valid token names; NotFoundError, with the one generic message, for a bad token,
    a deleted delivery, or a row that is not the one the token was issued for (a reused id)."""
    try:
        claims = tokens.read_token(kind, token)
    except tokens.BadToken as error:
        raise NotFoundError(INVALID_LINK) from error
    delivery = db.session.get(Delivery, claims.delivery_id)
    if delivery is None or not claims.names(
        delivery.campaign_id, delivery.subscriber_id, delivery.accepts_v1_tokens
    ):
        raise NotFoundError(INVALID_LINK)
    return delivery


def unsubscribe_target(token: str) -> UnsubscribeTarget:
    """What the confirmation page shows. Reads only: mail scanners prefetch GET links."""
    return _target_of(delivery_for_token("unsubscribe", token))


def _target_of(delivery: Delivery) -> UnsubscribeTarget:
    subscriber = db.session.get(Subscriber, delivery.subscriber_id) if delivery.subscriber_id else None
    return UnsubscribeTarget(delivery, subscriber, db.session.get(Campaign, delivery.campaign_id))


def unsubscribe(token: str) -> UnsubscribeTarget:
    """Unsubscribe the recipient of the delivery the token names. Idempotent: a second call changes
    nothing, and an earlier unsubscribe (its time and campaign) is kept. The caller commits."""
    return unsubscribe_delivery(delivery_for_token("unsubscribe", token))


def unsubscribe_delivery(delivery: Delivery) -> UnsubscribeTarget:
    """Unsubscribe the delivery's recipient, as the one-click POST does; also for a mail to the
    delivery's mailto unsubscribe address (mailapp/inbound). Idempotent. The caller commits."""
    target = _target_of(delivery)
    now = utcnow()
    subscriber = target.subscriber
    if delivery.unsubscribed_at is None:
        _lock_campaign_stats([delivery.campaign_id])
        delivery.unsubscribed_at = now
        _bump_campaign_stats(delivery.campaign_id, unsubscribes=1)
    if subscriber is not None and subscriber.status == SubscriberStatus.ACTIVE:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.unsubscribed_at = now
        subscriber.unsubscribed_campaign_id = delivery.campaign_id
    db.session.flush()
    return target


def render_for_browser(token: str) -> Markup:
    """The message of a delivery as its recipient got it (the send engine's reference renderer: same
    layout, personalisation, tracked links and pixel), for the view-in-browser link."""
    from mailapp.sending.render import CampaignSource, Recipient, renderer_for

    delivery = delivery_for_token("view", token)
    campaign = db.session.get(Campaign, delivery.campaign_id)
    if campaign is None:
        raise NotFoundError(INVALID_LINK)
    subscriber = db.session.get(Subscriber, delivery.subscriber_id) if delivery.subscriber_id else None
    layout = campaign.layout
    source = CampaignSource(
        id=campaign.id,
        name=campaign.name,
        subject=campaign.subject,
        from_name=campaign.from_name,
        from_email=campaign.from_email,
        reply_to=campaign.reply_to or "",
        layout_html=layout.html if layout is not None else "",
        message=campaign.message or "",
        track_opens=campaign.track_opens,
        track_clicks=campaign.track_clicks,
        updated_at=campaign.updated_at,
        layout_updated_at=getattr(layout, "updated_at", None),
    )
    recipient = Recipient(
        delivery_id=delivery.id,
        email=subscriber.email if subscriber else delivery.email,
        name=subscriber.name or "" if subscriber else "",
        subscriber_id=subscriber.id if subscriber else None,
        attributes=dict(subscriber.attributes or {}) if subscriber else {},
    )
    rendered = renderer_for(source, current_app.config["PUBLIC_URL"]).render(recipient, fast=False)
    return Markup(rendered.html)  # noqa: S704 - rendered in the sandbox with autoescape
