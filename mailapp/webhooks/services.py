"""What the webhook routes share once a provider's request is verified and parsed: each provider's
settings (NotFoundError while it is off), one-time tokens, and handing the events to the suppression
core matched to our deliveries.

A request with up to WEBHOOK_INLINE_EVENTS events is recorded while the provider waits: nothing here
commits, the route commits once, so the request is taken whole or not at all. A larger one (a
SendGrid batch holds thousands) is staged as one WebhookBatch row, committed before the answer, and
recorded by a task in chunks (record_batch); recording an event twice changes nothing (its dedupe
key), so a batch cut short by a crash is simply recorded again by beat's sweep."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from mailapp.errors import NotFoundError, WebhookAuthenticationError
from mailapp.extensions import db
from mailapp.ids import MAX_ID
from mailapp.models import Delivery, MailEventKind, WebhookBatch, WebhookReplayToken
from mailapp.sending.suppression import IncomingEvent, record_mail_event
from mailapp.webhooks import sendgrid
from mailapp.webhooks.events import ProviderEvent
from mailapp.webhooks.mailgun import MailgunSettings
from mailapp.webhooks.postmark import PostmarkSettings
from mailapp.webhooks.sendgrid import SendGridSettings
from mailapp.webhooks.ses import SnsSettings

# Our Message-IDs (mailapp/sending/message.py): <delivery id>.<16 hex digits>@<sending domain>.
_OUR_MESSAGE_ID = re.compile(r"<([0-9]{1,19})\.[0-9a-f]{16}@[^<>@\s]+>")


def check_settings(config: Mapping[str, Any]) -> None:
    """Refuse (RuntimeError) settings that would fail every request of a provider that is on."""
    try:
        re.compile(config["SES_SNS_CERT_HOST_PATTERN"])
    except re.error as error:
        raise RuntimeError(f"SES_SNS_CERT_HOST_PATTERN is not a regular expression: {error}") from error
    if config["SENDGRID_WEBHOOK_PUBLIC_KEY"]:
        sendgrid.public_key(config["SENDGRID_WEBHOOK_PUBLIC_KEY"])


def _off(provider: str) -> NotFoundError:
    return NotFoundError(f"The {provider} webhook is not configured on this installation.")


def sns_settings(config: Mapping[str, Any]) -> SnsSettings:
    topics = frozenset(arn.strip() for arn in config["SES_SNS_TOPIC_ARNS"].split(",") if arn.strip())
    if not topics:
        raise _off("Amazon SES")
    return SnsSettings(
        topic_arns=topics,
        cert_host_pattern=config["SES_SNS_CERT_HOST_PATTERN"],
        allow_http=bool(config["SES_SNS_CERT_ALLOW_HTTP"]),
    )


def sendgrid_settings(config: Mapping[str, Any]) -> SendGridSettings:
    if not config["SENDGRID_WEBHOOK_PUBLIC_KEY"]:
        raise _off("SendGrid")
    return SendGridSettings(
        public_key=config["SENDGRID_WEBHOOK_PUBLIC_KEY"],
        replay_window_seconds=int(config["WEBHOOK_REPLAY_WINDOW_SECONDS"]),
    )


def postmark_settings(config: Mapping[str, Any]) -> PostmarkSettings:
    if not (config["POSTMARK_WEBHOOK_USER"] and config["POSTMARK_WEBHOOK_PASSWORD"]):
        raise _off("Postmark")
    return PostmarkSettings(config["POSTMARK_WEBHOOK_USER"], config["POSTMARK_WEBHOOK_PASSWORD"])


def mailgun_settings(config: Mapping[str, Any]) -> MailgunSettings:
    if not config["MAILGUN_WEBHOOK_SIGNING_KEY"]:
        raise _off("Mailgun")
    return MailgunSettings(
        signing_key=config["MAILGUN_WEBHOOK_SIGNING_KEY"],
        replay_window_seconds=int(config["WEBHOOK_REPLAY_WINDOW_SECONDS"]),
    )


def claim_replay_token(provider: str, token: str, signed_at: int, window_seconds: int) -> None:
    """Remember a request's one-time token until its timestamp leaves the replay window; refuse (401)
    a token already claimed. Two copies of one request racing each other: the second one's INSERT
    waits for the first to commit, then fails."""
    now = datetime.now(UTC)
    db.session.execute(delete(WebhookReplayToken).where(WebhookReplayToken.expires_at < now))
    expires_at = datetime.fromtimestamp(signed_at, UTC) + timedelta(seconds=window_seconds)
    try:
        with db.session.begin_nested():
            db.session.add(WebhookReplayToken(provider=provider, token=token, expires_at=expires_at))
    except IntegrityError as error:
        raise WebhookAuthenticationError(
            "This request was already received: its token has been used.",
            [{"field": "signature.token"}],
        ) from error


def record(events: Iterable[ProviderEvent]) -> int:
    """Hand each event to the suppression core, with the delivery it is about when we can tell; the
    number recorded (a provider's retry of an event already recorded counts none)."""
    recorded = 0
    for event in events:
        incoming = IncomingEvent(
            kind=event.kind,
            email=event.email,
            source=f"webhook:{event.provider}",
            delivery_id=matching_delivery_id(event),
            status_code=event.status_code,
            diagnostic=event.diagnostic,
            dedupe_key=event.dedupe_key,
            occurred_at=event.occurred_at,
        )
        recorded += record_mail_event(incoming)
    return recorded


def matching_delivery_id(event: ProviderEvent) -> int | None:
    """The delivery named by the Message-ID the provider echoed (or by its metadata), if that
    delivery went to this address under that Message-ID: an id that does not match is ignored, and
    the event is then matched by its address alone."""
    candidate = event.delivery_hint
    if candidate is None and (match := _OUR_MESSAGE_ID.fullmatch(event.message_id)):
        candidate = int(match.group(1))
    if candidate is None or candidate > MAX_ID:
        return None
    delivery = db.session.get(Delivery, candidate)
    if delivery is None or delivery.email.lower() != event.email:
        return None
    if event.message_id and delivery.message_id != event.message_id:
        return None
    return delivery.id


# Events recorded per transaction of a staged batch: short enough that the SQLite write lock is never
# held for long, however large the batch.
BATCH_CHUNK_EVENTS = 200
# A staged batch whose task has not finished it after this long is recorded again by the sweep.
STALE_BATCH_SECONDS = 60


def stage(provider: str, events: list[ProviderEvent]) -> int:
    """Keep the events as one batch for a task to record; its id. Flushes, the caller commits (then
    queues mailapp.webhooks.tasks.record_webhook_batch)."""
    batch = WebhookBatch(provider=provider, events=[_event_json(event) for event in events])
    db.session.add(batch)
    db.session.flush()
    return batch.id


def record_batch(batch_id: int) -> int:
    """Record a staged batch, committing every BATCH_CHUNK_EVENTS events, then delete it; the number
    recorded (0 for a batch already done)."""
    batch = db.session.get(WebhookBatch, batch_id)
    if batch is None:
        return 0
    events = [_event_from_json(data) for data in batch.events]
    db.session.commit()
    recorded = 0
    for start in range(0, len(events), BATCH_CHUNK_EVENTS):
        recorded += record(events[start : start + BATCH_CHUNK_EVENTS])
        db.session.commit()
    # A statement, not session.delete: the sweep may have finished the same batch first.
    db.session.execute(delete(WebhookBatch).where(WebhookBatch.id == batch_id))
    db.session.commit()
    return recorded


def record_stale_batches(now: datetime | None = None) -> int:
    """Record every batch staged more than STALE_BATCH_SECONDS ago (its task lost or cut short); the
    number of events recorded."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=STALE_BATCH_SECONDS)
    batch_ids = list(
        db.session.scalars(
            select(WebhookBatch.id).where(WebhookBatch.received_at < cutoff).order_by(WebhookBatch.id)
        )
    )
    return sum(record_batch(batch_id) for batch_id in batch_ids)


def _event_json(event: ProviderEvent) -> dict[str, Any]:
    # Field by field: dataclasses.asdict deep-copies every value, 1 ms an event.
    data = {field.name: getattr(event, field.name) for field in dataclasses.fields(event)}
    data["kind"] = str(event.kind)
    data["occurred_at"] = event.occurred_at.isoformat() if event.occurred_at else None
    return data


def _event_from_json(data: dict[str, Any]) -> ProviderEvent:
    occurred_at = data.get("occurred_at")
    return ProviderEvent(
        **{
            **data,
            "kind": MailEventKind(data["kind"]),
            "occurred_at": datetime.fromisoformat(occurred_at) if occurred_at else None,
        }
    )
