"""Composing a campaign's messages: the campaign's source read once from its rows, compiled into a
renderer, a MIME builder and the From domain's DKIM signer, then one message built (and signed) per
recipient. No database writes, no SMTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from mailapp.extensions import db
from mailapp.models import Campaign, Layout, SendingDomain
from mailapp.secret_box import SecretBox
from mailapp.sending.dkim import DkimKey, DkimSigner
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
from mailapp.sending.verp import Verp


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
    verp: Verp | None = None  # BOUNCE_DOMAIN set: per-delivery envelope sender and mailto unsubscribe
    signer: DkimSigner | None = None  # None: the From domain has no sending domain, mail goes unsigned

    def envelope_sender(self, delivery_id: int) -> str:
        """MAIL FROM for the delivery: its VERP bounce address, or the From address without VERP."""
        return self.verp.bounce_address(delivery_id) if self.verp is not None else self.builder.sender


def campaign_list_identity(campaign: Campaign, public_url: str) -> ListIdentity | None:
    """The list every message of the campaign names in List-Id: its target list with the lowest id.
    Not the one each recipient is on: that would cost a query per message and the header could no
    longer be built once per campaign, while someone on several target lists gets one message anyway.
    The lowest id is the oldest list, so a campaign to "news" and "news-fr" is filed under "news"."""
    if not campaign.lists:
        return None
    first = min(campaign.lists, key=lambda subscriber_list: subscriber_list.id)
    return ListIdentity(id=first.id, name=first.name, host=urlsplit(public_url).hostname or "")


def compile_campaign(
    campaign: Campaign, public_url: str, verp: Verp | None = None, *, box: SecretBox | None = None,
    test_send: bool = False,
) -> Compiled:
    """The campaign ready to build messages; its From domain's keys are read (and opened with `box`,
    the current app's by default) here, once per send run. A test send gets no Feedback-ID: Gmail's
    feedback loop is about the mail recipients get."""
    source = campaign_source(campaign)
    return compile_source(
        source, public_url, list_identity=campaign_list_identity(campaign, public_url), verp=verp,
        signer=dkim_signer_for(address_domain(source.from_email), box), test_send=test_send,
    )


def compile_source(
    source: CampaignSource, public_url: str, *, list_identity: ListIdentity | None = None,
    verp: Verp | None = None, signer: DkimSigner | None = None, test_send: bool = False,
) -> Compiled:
    """The renderer and MIME builder of a campaign's source (a send, a test send, a preview)."""
    renderer = renderer_for(source, public_url)
    domain = address_domain(source.from_email)
    builder = FastMessageBuilder(
        from_name=source.from_name, from_email=source.from_email, reply_to=source.reply_to,
        list_identity=list_identity,
        feedback="" if test_send else feedback_id(source.id, list_identity and list_identity.id, domain),
    )
    return Compiled(renderer, builder, domain, message_id_suffix(domain), verp, signer)


def sending_domain_for(from_domain: str) -> SendingDomain | None:
    """The sending domain that signs mail from this domain: the domain itself, or its nearest parent
    that is one (news.example.com signs as example.com, which DMARC's relaxed alignment accepts). A
    sending domain's own name always has two labels or more, so `com` is never asked."""
    labels = from_domain.lower().rstrip(".").split(".")
    candidates = [".".join(labels[start:]) for start in range(len(labels) - 1)]
    found = db.session.scalars(select(SendingDomain).where(SendingDomain.domain.in_(candidates))).all()
    return max(found, key=lambda row: len(row.domain)) if found else None


def dkim_signer_for(from_domain: str, box: SecretBox | None = None) -> DkimSigner | None:
    """A signer with the keys of the From domain's sending domain (sending_domain_for); None when it has
    none."""
    sending_domain = sending_domain_for(from_domain)
    if sending_domain is None:
        return None
    box = box or SecretBox.for_current_app()
    keys = [DkimKey(sending_domain.selector, "rsa-sha256", box.open(sending_domain.rsa_private_key_sealed))]
    if sending_domain.ed25519_selector and sending_domain.ed25519_private_key_sealed:
        keys.append(DkimKey(sending_domain.ed25519_selector, "ed25519-sha256",
                            box.open(sending_domain.ed25519_private_key_sealed)))
    return DkimSigner(sending_domain.domain, keys)


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
            unsubscribe_mailto=(
                "" if compiled.verp is None else compiled.verp.addresses(recipient.delivery_id).unsubscribe
            ),
        )
    )
    if compiled.signer is not None:
        raw = compiled.signer.sign(raw)
    return message_id, raw
