"""Postmark's bounce and spam complaint webhooks, authenticated with HTTP basic auth.

Postmark does not sign its webhooks: what it offers is credentials in the webhook URL
(https://user:password@host/webhooks/postmark, sent as an Authorization: Basic header) and its list of
sending IP addresses. https://postmarkapp.com/support/article/1073-how-to-secure-webhooks
The credentials are compared in constant time.

Bounce types (https://postmarkapp.com/developer/api/bounce-api#bounce-types): HardBounce and
BadEmailAddress are the address failing for good; SoftBounce, Transient, DnsError and Blocked are this
attempt failing; SpamComplaint (also delivered as its own RecordType) is a complaint. Auto-replies,
subscribe and unsubscribe requests, challenge-verifications and the like say nothing about the address.
Postmark does not echo the Message-ID we sent (its MessageID is its own), so a delivery is found by the
Metadata field delivery_id when the message carried one, or by the address."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass

from mailapp.errors import WebhookAuthenticationError, WebhookPayloadError
from mailapp.ids import id_from_text
from mailapp.models import MailEventKind
from mailapp.webhooks.events import (
    ProviderEvent,
    get_text,
    iso_time,
    parse_json,
    recipient_email,
)

PROVIDER = "postmark"
REALM = 'Basic realm="mailapp webhooks", charset="UTF-8"'
KINDS = {
    "HardBounce": MailEventKind.HARD_BOUNCE,
    "BadEmailAddress": MailEventKind.HARD_BOUNCE,
    "SoftBounce": MailEventKind.SOFT_BOUNCE,
    "Transient": MailEventKind.SOFT_BOUNCE,
    "DnsError": MailEventKind.SOFT_BOUNCE,
    "Blocked": MailEventKind.SOFT_BOUNCE,
    "SpamComplaint": MailEventKind.COMPLAINT,
}
RECORD_TYPES = ("Bounce", "SpamComplaint")


@dataclass(frozen=True)
class PostmarkSettings:
    user: str
    password: str


def check_credentials(authorization: str, settings: PostmarkSettings) -> None:
    """Refuse (401) unless the Authorization header carries the configured user and password."""
    scheme, _, encoded = authorization.partition(" ")
    user = password = b""
    if scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error):
            user, _, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    # Both compared whatever the first gives, so the time taken says nothing about which was wrong.
    user_ok = hmac.compare_digest(user, settings.user.encode("utf-8"))
    password_ok = hmac.compare_digest(password, settings.password.encode("utf-8"))
    if not (user_ok and password_ok):
        raise WebhookAuthenticationError(
            "The webhook's basic auth credentials are missing or wrong.", [{"field": "Authorization"}]
        )


def events(raw: bytes) -> Iterator[ProviderEvent]:
    record = parse_json(raw)
    if not isinstance(record, dict):
        raise WebhookPayloadError("The body must be a Postmark webhook record (a JSON object).")
    record_type = get_text(record, "RecordType", "RecordType")
    if record_type not in RECORD_TYPES:
        return
    kind = KINDS.get(get_text(record, "Type", "Type"))
    if kind is None:
        return
    metadata = record.get("Metadata")
    hint = metadata.get("delivery_id") if isinstance(metadata, dict) else None
    bounced_at = get_text(record, "BouncedAt", "BouncedAt", required=False)
    yield ProviderEvent(
        provider=PROVIDER,
        event_id=get_text(record, "ID", "ID"),
        kind=kind,
        email=recipient_email(get_text(record, "Email", "Email"), "Email"),
        delivery_hint=id_from_text(str(hint)) if hint is not None else None,
        diagnostic=get_text(record, "Details", "Details", required=False),
        occurred_at=iso_time(bounced_at, "BouncedAt") if bounced_at else None,
    )
