"""Test sends: a campaign sent now to a few given addresses, rendered for one subscriber (or the sample
one), over the relay it is handed. No delivery rows, no tracking state, nothing committed."""

from __future__ import annotations

import dataclasses
import smtplib
from typing import Any

from mailapp.addresses import normalize_email
from mailapp.errors import NotFoundError, ValidationError
from mailapp.extensions import db
from mailapp.models import Campaign, Subscriber
from mailapp.sending import templating
from mailapp.sending.compose import build_message, compile_campaign
from mailapp.sending.message import SendError, ascii_address, message_id_suffix
from mailapp.sending.relay import Relay, describe
from mailapp.sending.render import Recipient
from mailapp.sending.settings import SendSettings
from mailapp.sending.verp import verp_for


def send_test_messages(
    campaign_id: int, emails: list[str], subscriber_id: int | None, *,
    relay: Relay | None = None, public_url: str | None = None,
) -> None:
    """Send the campaign now to these addresses, rendered for the subscriber (or the sample one), with
    "[Test] " before the subject. No delivery rows. SendError on SMTP failure. Without a relay or a
    public URL, the current app's are used."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"Campaign {campaign_id} not found.")
    if not emails:
        raise ValidationError("Give at least one address to send the test to.", [{"field": "emails"}])
    addresses = [normalize_email(address) for address in emails]
    subscriber: Any
    if subscriber_id is not None:
        subscriber = db.session.get(Subscriber, subscriber_id)
        if subscriber is None:
            raise NotFoundError(f"Subscriber {subscriber_id} not found.")
    else:
        subscriber = type("SampleSubscriber", (), dict(templating.SAMPLE_SUBSCRIBER))()
    relay = relay or Relay.for_current_app()
    settings = SendSettings.for_current_app()
    compiled = compile_campaign(
        campaign, public_url or settings.public_url, verp_for(settings.bounce_domain, settings.secret_key),
        test_send=True,
    )
    with relay.smtp_connection() as host:
        for address in addresses:
            recipient = Recipient(
                delivery_id=0, email=address, name=subscriber.name or "",
                subscriber_id=subscriber.id, attributes=subscriber.attributes or {},
            )
            # Each test message its own Message-ID: they all stand for delivery 0.
            compiled = dataclasses.replace(compiled, message_id_suffix=message_id_suffix(compiled.domain))
            _, raw = build_message(compiled, recipient, subject_prefix="[Test] ")
            if host is None:
                continue
            try:
                # Delivery 0's VERP address: a bounce of a test send names no delivery, only the address.
                host.sendmail(compiled.envelope_sender(0), [ascii_address("address", address)], raw)
            except smtplib.SMTPRecipientsRefused as error:
                code, reply = next(iter(error.recipients.values()))
                raise SendError(f"The server refused {address}: {code} {_text(reply)}") from error
            except (OSError, smtplib.SMTPException) as error:
                raise SendError(f"Sending the test to {address} failed: {describe(error)}") from error


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
