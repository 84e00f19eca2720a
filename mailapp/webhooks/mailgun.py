"""Mailgun's webhooks: the HMAC signature check and the failed and complained events.

Mailgun puts {"timestamp", "token", "signature"} in the JSON body, where signature is the hex
HMAC-SHA256 of timestamp + token under the account's webhook signing key. A token is used once: the
caller records it (services.claim_replay_token) so that a captured request cannot be sent again, and a
timestamp outside the replay window is refused, which bounds how long tokens must be remembered.
https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks

Events (https://documentation.mailgun.com/docs/mailgun/user-manual/events/): failed with severity
permanent -> hard bounce; failed with severity temporary -> soft bounce (Mailgun retries, and each
attempt is an event of its own); complained -> complaint. Mailgun echoes our Message-ID, without the
angle brackets, in event-data.message.headers.message-id."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mailapp.errors import WebhookAuthenticationError, WebhookPayloadError
from mailapp.ids import id_from_text
from mailapp.models import MailEventKind
from mailapp.webhooks.events import (
    ProviderEvent,
    bracketed_message_id,
    get_object,
    get_text,
    parse_json,
    recipient_email,
    unix_time,
)

PROVIDER = "mailgun"
MAX_TOKEN_CHARS = 100


@dataclass(frozen=True)
class MailgunSettings:
    signing_key: str
    replay_window_seconds: int


@dataclass(frozen=True)
class SignedEvent:
    """A Mailgun request whose signature checks out: its one-time token and its event data."""

    token: str
    signed_at: int
    event_data: dict[str, Any]


def verify(raw: bytes, settings: MailgunSettings) -> SignedEvent:
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise WebhookPayloadError("The body must be a Mailgun webhook (a JSON object).")
    signature = get_object(body, "signature", "signature")
    timestamp = get_text(signature, "timestamp", "signature.timestamp")
    token = get_text(signature, "token", "signature.token")
    given = get_text(signature, "signature", "signature.signature")
    expected = hmac.new(
        settings.signing_key.encode("utf-8"), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii")):
        raise WebhookAuthenticationError(
            "The Mailgun signature does not match.", [{"field": "signature.signature"}]
        )
    try:
        signed_at = int(timestamp)
    except ValueError:
        signed_at = None
    if signed_at is None or abs(time.time() - signed_at) > settings.replay_window_seconds:
        raise WebhookAuthenticationError(
            f"signature.timestamp is more than {settings.replay_window_seconds} seconds from now.",
            [{"field": "signature.timestamp"}],
        )
    if len(token) > MAX_TOKEN_CHARS:
        raise WebhookAuthenticationError(
            f"signature.token is longer than {MAX_TOKEN_CHARS} characters.",
            [{"field": "signature.token"}],
        )
    return SignedEvent(token, signed_at, get_object(body, "event-data", "event-data"))


def events(signed: SignedEvent) -> Iterator[ProviderEvent]:
    data = signed.event_data
    name = get_text(data, "event", "event-data.event")
    if name == "failed":
        severity = get_text(data, "severity", "event-data.severity", required=False)
        kind = MailEventKind.HARD_BOUNCE if severity == "permanent" else MailEventKind.SOFT_BOUNCE
    elif name == "complained":
        kind = MailEventKind.COMPLAINT
    else:
        return
    message = data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    status = data.get("delivery-status")
    status = status if isinstance(status, dict) else {}
    variables = data.get("user-variables")
    hint = variables.get("delivery_id") if isinstance(variables, dict) else None
    diagnostic = get_text(status, "message", "event-data.delivery-status.message", required=False)
    if not diagnostic.strip():
        diagnostic = get_text(status, "description", "event-data.delivery-status", required=False)
    yield ProviderEvent(
        provider=PROVIDER,
        event_id=get_text(data, "id", "event-data.id"),
        kind=kind,
        email=recipient_email(get_text(data, "recipient", "event-data.recipient"), "event-data.recipient"),
        message_id=bracketed_message_id(
            get_text(headers, "message-id", "event-data.message.headers", required=False)
        ),
        delivery_hint=id_from_text(str(hint)) if hint is not None else None,
        status_code=get_text(status, "code", "event-data.delivery-status", required=False),
        diagnostic=diagnostic,
        occurred_at=unix_time(data["timestamp"], "event-data.timestamp") if "timestamp" in data else None,
    )
