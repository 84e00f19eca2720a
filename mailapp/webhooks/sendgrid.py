"""SendGrid's signed Event Webhook: the ECDSA signature check and the bounce, dropped and spam report
events of a batch.

SendGrid signs the timestamp header's value followed by the raw body with ECDSA P-256 / SHA-256; the
signature header is the base64 DER signature, and the verification key the account shows is a base64
DER SubjectPublicKeyInfo.
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features

Which events count (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event):
- bounce with type "bounce": the receiving server refused the address for good -> hard bounce.
- bounce with type "blocked": the server refused this message for now (reputation, content); SendGrid
  does not suppress the address -> soft bounce.
- dropped: SendGrid did not send, because of its own suppression lists. "Bounced Address" and
  "Invalid" mean the address does not take mail -> hard; "Spam Reporting Address" -> complaint; the
  other reasons (unsubscribed, message too large ...) say nothing about the address's health.
- spamreport -> complaint.
- deferred: a temporary failure SendGrid keeps retrying for up to 72 hours, ending in a delivered or a
  bounce event of its own: counting it too would count one failure several times, so it records
  nothing."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailapp.errors import WebhookAuthenticationError, WebhookPayloadError
from mailapp.models import MailEventKind
from mailapp.webhooks.events import (
    ProviderEvent,
    bracketed_message_id,
    get_text,
    parse_json,
    problem,
    recipient_email,
    unix_time,
)

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
HARD_DROP_REASONS = ("bounced address", "invalid")
COMPLAINT_DROP_REASONS = ("spam reporting address",)


@dataclass(frozen=True)
class SendGridSettings:
    public_key: str  # base64 DER, as SendGrid shows it
    replay_window_seconds: int


@lru_cache(maxsize=4)
def public_key(encoded: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_der_public_key(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as error:
        raise RuntimeError("SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER public key") from error
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise RuntimeError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA key")
    return key


def verify(raw: bytes, signature: str, timestamp: str, settings: SendGridSettings) -> None:
    """Refuse the request (401) unless SendGrid signed this body with this timestamp, recently."""
    if not signature or not timestamp:
        raise WebhookAuthenticationError(
            f"{SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are required.", [{"field": SIGNATURE_HEADER}]
        )
    try:
        signed_at = int(timestamp)
    except ValueError as error:
        raise WebhookAuthenticationError(
            f"{TIMESTAMP_HEADER} is not a Unix time.", [{"field": TIMESTAMP_HEADER}]
        ) from error
    if abs(time.time() - signed_at) > settings.replay_window_seconds:
        raise WebhookAuthenticationError(
            f"{TIMESTAMP_HEADER} is more than {settings.replay_window_seconds} seconds from now.",
            [{"field": TIMESTAMP_HEADER}],
        )
    try:
        der_signature = base64.b64decode(signature, validate=True)
        public_key(settings.public_key).verify(
            der_signature, timestamp.encode("ascii") + raw, ec.ECDSA(hashes.SHA256())
        )
    except (binascii.Error, ValueError, InvalidSignature) as error:
        raise WebhookAuthenticationError(
            "The SendGrid signature does not match the body.", [{"field": SIGNATURE_HEADER}]
        ) from error


def events(raw: bytes) -> Iterator[ProviderEvent]:
    batch = parse_json(raw)
    if not isinstance(batch, list):
        raise WebhookPayloadError("The body must be a JSON array of SendGrid events.")
    for index, item in enumerate(batch):
        where = f"[{index}]"
        if not isinstance(item, dict):
            raise problem(where, "must be an object.")
        name = get_text(item, "event", f"{where}.event")
        kind = _kind(name, item, where)
        if kind is None:
            continue
        yield ProviderEvent(
            provider=PROVIDER,
            event_id=get_text(item, "sg_event_id", f"{where}.sg_event_id"),
            kind=kind,
            email=recipient_email(get_text(item, "email", f"{where}.email"), f"{where}.email"),
            message_id=bracketed_message_id(get_text(item, "smtp-id", where, required=False)),
            status_code=get_text(item, "status", where, required=False),
            diagnostic=get_text(item, "reason", where, required=False),
            occurred_at=unix_time(item["timestamp"], f"{where}.timestamp") if "timestamp" in item else None,
        )


def _kind(name: str, item: dict, where: str) -> MailEventKind | None:
    if name == "bounce":
        bounce_type = get_text(item, "type", f"{where}.type", required=False)
        return MailEventKind.SOFT_BOUNCE if bounce_type == "blocked" else MailEventKind.HARD_BOUNCE
    if name == "spamreport":
        return MailEventKind.COMPLAINT
    if name == "dropped":
        reason = get_text(item, "reason", f"{where}.reason", required=False).lower()
        if reason.startswith(HARD_DROP_REASONS):
            return MailEventKind.HARD_BOUNCE
        if reason.startswith(COMPLAINT_DROP_REASONS):
            return MailEventKind.COMPLAINT
    return None
