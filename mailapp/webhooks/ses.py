"""Amazon SES bounce and complaint notifications, delivered by SNS: the SNS signature check, the
subscription handshake, and the SES event inside.

SNS signs the canonical string of a message's fields ("Name\\nValue\\n" for each, in the documented
order) with the key of the certificate at SigningCertURL: SignatureVersion 1 is SHA1withRSA, 2 is
SHA256withRSA (PKCS#1 v1.5). A certificate is fetched only from an https URL whose host matches
SES_SNS_CERT_HOST_PATTERN (sns.<region>.amazonaws.com by default), without following redirects, and
kept in a small process-wide cache: SNS rotates certificates by publishing them at new URLs.
https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailapp.errors import WebhookAuthenticationError, WebhookForbiddenError, WebhookPayloadError
from mailapp.models import MailEventKind
from mailapp.webhooks.events import (
    ProviderEvent,
    bracketed_message_id,
    get_list,
    get_object,
    get_text,
    iso_time,
    parse_json,
    problem,
    recipient_email,
)

PROVIDER = "ses"
DEFAULT_CERT_HOST_PATTERN = r"^sns\.[a-z0-9-]+\.amazonaws\.com$"
NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
# The fields each type signs, in the order of the canonical string. Subject is signed only when the
# message has one.
SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
    UNSUBSCRIBE_CONFIRMATION: (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
}
SIGNATURE_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
# A PEM certificate is about 2 KB; SNS's confirmation answer is smaller still.
MAX_FETCH_BYTES = 64 * 1024
FETCH_TIMEOUT_SECONDS = 5.0
CACHED_CERTIFICATES = 32


@dataclass(frozen=True)
class SnsSettings:
    topic_arns: frozenset[str]
    cert_host_pattern: str = DEFAULT_CERT_HOST_PATTERN
    # Tests only (config_from_env refuses it in production): the loopback server they sign with.
    allow_http: bool = False


@dataclass(frozen=True)
class SnsMessage:
    """A verified SNS message from a configured topic."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    subscribe_url: str


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could lead off the allowed host: answer it as the error it is for us.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects())


def fetch(url: str, settings: SnsSettings) -> bytes:
    """GET an SNS URL (a certificate or a SubscribeURL) after checking its scheme and host, reading at
    most MAX_FETCH_BYTES; WebhookForbiddenError for a URL off the provider's host, and a
    WebhookAuthenticationError when it cannot be read (SNS will retry)."""
    check_sns_url(url, settings)
    try:
        with _opener.open(url, timeout=FETCH_TIMEOUT_SECONDS) as response:
            if response.status != 200:
                raise WebhookAuthenticationError(f"{url} answered {response.status}.")
            body = response.read(MAX_FETCH_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise WebhookAuthenticationError(f"Could not fetch {url}: {error}") from error
    if len(body) > MAX_FETCH_BYTES:
        raise WebhookAuthenticationError(f"{url} is larger than {MAX_FETCH_BYTES} bytes.")
    return body


def check_sns_url(url: str, settings: SnsSettings) -> None:
    parts = urlsplit(url)
    schemes = {"https", "http"} if settings.allow_http else {"https"}
    try:
        host_allowed = bool(re.fullmatch(settings.cert_host_pattern, parts.hostname or ""))
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        host_allowed = False
    if parts.scheme not in schemes or not host_allowed or parts.username or parts.password:
        raise WebhookForbiddenError(
            f"{url!r} is not an SNS URL: it must be https on a host matching "
            f"{settings.cert_host_pattern!r}.",
            [{"field": "SigningCertURL"}],
        )


class CertificateCache:
    """Public keys by certificate URL, the most recently used CACHED_CERTIFICATES of them."""

    def __init__(self) -> None:
        self._keys: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()
        self._lock = threading.Lock()

    def public_key(self, url: str, settings: SnsSettings) -> rsa.RSAPublicKey:
        check_sns_url(url, settings)
        with self._lock:
            if url in self._keys:
                self._keys.move_to_end(url)
                return self._keys[url]
        key = _rsa_key_of(fetch(url, settings), url)
        with self._lock:
            self._keys[url] = key
            while len(self._keys) > CACHED_CERTIFICATES:
                self._keys.popitem(last=False)
        return key

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()


def _rsa_key_of(pem: bytes, url: str) -> rsa.RSAPublicKey:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as error:
        raise WebhookAuthenticationError(f"{url} is not a PEM certificate.") from error
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise WebhookAuthenticationError(f"The certificate at {url} is not valid now.")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookAuthenticationError(f"The certificate at {url} holds no RSA key.")
    return key


certificates = CertificateCache()


def canonical_string(message: dict[str, Any], message_type: str) -> bytes:
    lines = []
    for name in SIGNED_FIELDS[message_type]:
        if name == "Subject" and "Subject" not in message:
            continue
        lines.append(f"{name}\n{get_text(message, name, name, required=name != 'Subject')}\n")
    return "".join(lines).encode("utf-8")


def verify(raw: bytes, settings: SnsSettings, cache: CertificateCache = certificates) -> SnsMessage:
    """The SNS message in the body, once its signature is proven and its topic is one of ours."""
    message = parse_json(raw)
    if not isinstance(message, dict):
        raise WebhookPayloadError("The body must be an SNS message (a JSON object).")
    message_type = get_text(message, "Type", "Type")
    if message_type not in SIGNED_FIELDS:
        raise problem("Type", f"{message_type!r} is not an SNS message type.")
    version = get_text(message, "SignatureVersion", "SignatureVersion")
    if version not in SIGNATURE_HASHES:
        raise problem("SignatureVersion", "must be 1 or 2.")
    try:
        signature = base64.b64decode(get_text(message, "Signature", "Signature"), validate=True)
    except binascii.Error as error:
        raise problem("Signature", "is not base64.") from error
    signed = canonical_string(message, message_type)
    key = cache.public_key(get_text(message, "SigningCertURL", "SigningCertURL"), settings)
    try:
        key.verify(signature, signed, padding.PKCS1v15(), SIGNATURE_HASHES[version]())
    except InvalidSignature as error:
        raise WebhookAuthenticationError(
            "The SNS signature does not match the message.", [{"field": "Signature"}]
        ) from error
    topic_arn = get_text(message, "TopicArn", "TopicArn")
    if topic_arn not in settings.topic_arns:
        raise WebhookForbiddenError(
            f"The topic {topic_arn!r} is not one of SES_SNS_TOPIC_ARNS.", [{"field": "TopicArn"}]
        )
    return SnsMessage(
        type=message_type,
        message_id=get_text(message, "MessageId", "MessageId"),
        topic_arn=topic_arn,
        message=get_text(message, "Message", "Message"),
        subscribe_url=get_text(message, "SubscribeURL", "SubscribeURL", required=False),
    )


def confirm_subscription(message: SnsMessage, settings: SnsSettings) -> None:
    """Visiting SubscribeURL is how SNS takes a subscription's confirmation."""
    fetch(message.subscribe_url, settings)


# The part of an SES notification each kind of event is in, and the list of recipients in that part.
_EVENT_PARTS = {"Bounce": ("bounce", "bouncedRecipients"), "Complaint": ("complaint", "complainedRecipients")}


def ses_events(message: SnsMessage) -> Iterator[ProviderEvent]:
    """The bounce or complaint of an SES notification, one event per recipient. Both SES formats:
    notifications (notificationType) and event publishing (eventType). Other types (Delivery, Send,
    Open ...) yield nothing. Permanent bounces are hard; Transient and Undetermined ones soft."""
    notification = parse_json(message.message.encode("utf-8"))
    if not isinstance(notification, dict):
        raise problem("Message", "must be an SES notification (a JSON object).")
    kind_field = "eventType" if "eventType" in notification else "notificationType"
    event_type = get_text(notification, kind_field, f"Message.{kind_field}")
    if event_type not in _EVENT_PARTS:
        return
    message_id = _sent_message_id(get_object(notification, "mail", "Message.mail"))
    part_name, recipients_name = _EVENT_PARTS[event_type]
    part = get_object(notification, part_name, f"Message.{part_name}")
    if event_type == "Complaint":
        kind = MailEventKind.COMPLAINT
        feedback_type = get_text(part, "complaintFeedbackType", part_name, required=False)
    else:
        bounce_type = get_text(part, "bounceType", "Message.bounce.bounceType")
        kind = MailEventKind.HARD_BOUNCE if bounce_type == "Permanent" else MailEventKind.SOFT_BOUNCE
        feedback_type = ""
    occurred_at = _optional_time(part, f"Message.{part_name}")
    field = f"Message.{part_name}.{recipients_name}"
    for index, recipient in enumerate(get_list(part, recipients_name, field)):
        where = f"{field}[{index}]"
        yield ProviderEvent(
            provider=PROVIDER,
            event_id=message.message_id,
            kind=kind,
            email=recipient_email(get_text(recipient, "emailAddress", f"{where}.emailAddress"), where),
            message_id=message_id,
            status_code=get_text(recipient, "status", where, required=False),
            diagnostic=get_text(recipient, "diagnosticCode", where, required=False)
            or feedback_type,
            occurred_at=occurred_at,
        )


def _sent_message_id(mail: dict[str, Any]) -> str:
    """Our Message-ID header as SES saw it (mail.messageId is SES's own id, not ours)."""
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        return bracketed_message_id(common["messageId"])
    headers = mail.get("headers")
    for header in headers if isinstance(headers, list) else ():
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            return bracketed_message_id(str(header.get("value", "")))
    return ""


def _optional_time(container: dict[str, Any], field: str) -> datetime | None:
    raw = get_text(container, "timestamp", f"{field}.timestamp", required=False)
    return iso_time(raw, f"{field}.timestamp") if raw else None
