"""What every provider's parser shares: the event it hands on (ProviderEvent), and the checked readers
of an untrusted JSON payload that turn anything missing or mistyped into a WebhookPayloadError (400)
naming the field, never a KeyError (500)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mailapp.errors import ValidationError, WebhookPayloadError
from mailapp.json_nesting import MAX_JSON_DEPTH, nesting_exceeds
from mailapp.models import MailEventKind
from mailapp.sending.suppression import normalize_address

_ISO_FRACTION = re.compile(r"(\.\d{1,6})\d*")


@dataclass(frozen=True)
class ProviderEvent:
    """One bounce or complaint for one recipient, as a provider reported it, before it is matched to
    a delivery. message_id is the Message-ID header we sent (angle brackets included) when the
    provider echoes it; delivery_hint a delivery id the provider carried in its own metadata."""

    provider: str
    event_id: str
    kind: MailEventKind
    email: str
    message_id: str = ""
    delivery_hint: int | None = None
    status_code: str = ""
    diagnostic: str = ""
    occurred_at: datetime | None = None

    @property
    def dedupe_key(self) -> str:
        """The provider, its own id for the event and the recipient: a provider that retries an event
        sends the same three, so it is recorded once (the core hashes a key too long to store)."""
        return f"{self.provider}:{self.event_id}:{self.email}"


def parse_json(raw: bytes) -> Any:
    """The body as JSON, refused with a 400 when it is not UTF-8 JSON or nests too deep."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise WebhookPayloadError(f"The body is not UTF-8 (byte {error.start}).") from error
    if nesting_exceeds(text):
        raise WebhookPayloadError(f"The body nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise WebhookPayloadError("The body is not valid JSON.") from error


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def problem(field: str, message: str) -> WebhookPayloadError:
    return WebhookPayloadError(f"{field}: {message}", [{"field": field}])


def get_object(container: Any, key: str, field: str) -> dict[str, Any]:
    value = container.get(key) if isinstance(container, dict) else None
    if not isinstance(value, dict):
        raise problem(field, "must be an object.")
    return value


def get_list(container: dict[str, Any], key: str, field: str) -> list[Any]:
    value = container.get(key)
    if not isinstance(value, list):
        raise problem(field, "must be an array.")
    return value


def get_text(container: Any, key: str, field: str, *, required: bool = True) -> str:
    """A string field (numbers are taken as their text: providers are not consistent about ids)."""
    value = container.get(key) if isinstance(container, dict) else None
    if isinstance(value, bool):
        value = None
    if isinstance(value, int | float):
        value = str(value)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise problem(field, "must be a non-empty string.")
    return value


def recipient_email(raw: str, field: str) -> str:
    """The address as the suppression core stores it. Not held to a subscriber's input rules: a
    bounce for an odd address is still a bounce, but it must look like an address."""
    try:
        return normalize_address(raw)
    except ValidationError as error:
        raise problem(field, error.message) from error


def bracketed_message_id(raw: str) -> str:
    """A Message-ID as we wrote it, <...>: some providers echo it without the brackets."""
    value = raw.strip()
    if not value:
        return ""
    return value if value.startswith("<") else f"<{value}>"


def iso_time(raw: str, field: str) -> datetime:
    """An ISO 8601 time from a provider (Z or an offset; Postmark writes seven fractional digits)."""
    text = _ISO_FRACTION.sub(r"\1", raw.strip().replace("Z", "+00:00").replace("z", "+00:00"), count=1)
    try:
        value = datetime.fromisoformat(text)
    except ValueError as error:
        raise problem(field, "must be an ISO 8601 time.") from error
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def unix_time(raw: Any, field: str) -> datetime:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise problem(field, "must be a Unix time.")
    try:
        return datetime.fromtimestamp(float(raw), UTC)
    except (ValueError, OverflowError, OSError) as error:
        raise problem(field, "must be a Unix time.") from error
