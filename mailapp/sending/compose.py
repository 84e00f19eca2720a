"""Composing a campaign's messages: the campaign's source read once from its rows, compiled into a
renderer and a MIME builder, then one message built per recipient. No database writes, no SMTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailapp.models import Campaign, Layout
from mailapp.sending.message import (
    Envelope,
    FastMessageBuilder,
    address_domain,
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


def compile_campaign(campaign: Campaign, public_url: str) -> Compiled:
    return compile_source(campaign_source(campaign), public_url)


def compile_source(source: CampaignSource, public_url: str) -> Compiled:
    """The renderer and MIME builder of a campaign's source (a send, a test send, a preview)."""
    renderer = renderer_for(source, public_url)
    builder = FastMessageBuilder(
        from_name=source.from_name, from_email=source.from_email, reply_to=source.reply_to
    )
    domain = address_domain(source.from_email)
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
