"""Composing a campaign's messages: the campaign's source read once from its rows, compiled into a
renderer and a MIME builder, then one message built per recipient. No database writes, no SMTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mailapp.models import Campaign, Layout
from mailapp.sending.message import (
    Envelope,
    FastMessageBuilder,
    ListIdentity,
    address_domain,
    feedback_id,
    make_message_id,
    message_date,
    message_id_suffix,
)
from mailapp.sending.render import CampaignRenderer, CampaignSource, Recipient, renderer_for


def campaign_source(campaign: Campaign) -> CampaignSource:
    layout: Layout | None = campaign.layout
    return CampaignSource(
        id=campaign.id, name=campaign.name, subject=campaign.subject, from_name=campaign.from_name,
        from_email=campaign.from_email, reply_to=campaign.reply_to or "",
        layout_html=layout.html if layout is not None else "", message=campaign.message or "",
        track_opens=campaign.track_opens, track_clicks=campaign.track_clicks,
        updated_at=campaign.updated_at, layout_updated_at=getattr(layout, "updated_at", None),
    )


@dataclass
class Compiled:
    renderer: CampaignRenderer
    builder: FastMessageBuilder
    domain: str
    message_id_suffix: str  # see message_id_suffix(): one per send run


def campaign_list_identity(campaign: Campaign, public_url: str) -> ListIdentity | None:
    """The list every message of the campaign names in List-Id: its target list with the lowest id.
    Not the one each recipient is on: that would cost a query per message and the header could no
    longer be built once per campaign, while someone on several target lists gets one message anyway.
    The lowest id is the oldest list, so a campaign to "news" and "news-fr" is filed under "news"."""
    if not campaign.lists:
        return None
    first = min(campaign.lists, key=lambda subscriber_list: subscriber_list.id)
    return ListIdentity(id=first.id, name=first.name, host=urlsplit(public_url).hostname or "")


def compile_campaign(campaign: Campaign, public_url: str, *, test_send: bool = False) -> Compiled:
    """A test send gets no Feedback-ID: Gmail's feedback loop is about the mail recipients get."""
    source = campaign_source(campaign)
    renderer = renderer_for(source, public_url)
    domain = address_domain(source.from_email)
    list_identity = campaign_list_identity(campaign, public_url)
    builder = FastMessageBuilder(
        from_name=source.from_name, from_email=source.from_email, reply_to=source.reply_to,
        list_identity=list_identity,
        feedback="" if test_send else feedback_id(source.id, list_identity and list_identity.id, domain),
    )
    return Compiled(renderer, builder, domain, message_id_suffix(domain))


def delivery_recipient(delivery_id: int, email: str, subscriber: Any | None) -> Recipient:
    if subscriber is None:
        return Recipient(delivery_id=delivery_id, email=email)
    return Recipient(
        delivery_id=delivery_id, email=email, name=subscriber.name or "",
        subscriber_id=subscriber.id, attributes=subscriber.attributes or {},
    )


def build_message(compiled: Compiled, recipient: Recipient, *, subject_prefix: str = "") -> tuple[str, bytes]:
    rendered = compiled.renderer.render(recipient)
    message_id = make_message_id(recipient.delivery_id, compiled.message_id_suffix)
    raw = compiled.builder.build(
        Envelope(
            to_name=recipient.name, to_email=recipient.email, subject=subject_prefix + rendered.subject,
            text=rendered.text, html=rendered.html, message_id=message_id, date=message_date(),
            unsubscribe_url=rendered.unsubscribe_url, text_qp=rendered.text_qp, html_qp=rendered.html_qp,
        )
    )
    return message_id, raw
