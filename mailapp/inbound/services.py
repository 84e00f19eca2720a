"""Processing one inbound message, for the SMTP receiver and the IMAP poller alike: read it
(parsing.py), find the deliveries it is about, and record each bounce or complaint with
record_mail_event (the suppression policy lives there), or unsubscribe the recipient of a mail to a
mailto unsubscribe address exactly as the one-click POST does.

Which delivery, in order: a valid VERP token (envelope recipient, To / X-Original-To / Delivered-To,
or the returned original's Return-Path and List-Unsubscribe); our Message-ID in the returned
original, if that delivery's stored Message-ID is the same or its campaign sends from that domain;
else the failed address alone. Each event's dedupe key is the inbound message's Message-ID and the
address, so a message read twice (an IMAP poll that crashed before marking it) counts once."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from mailapp.errors import MailappError, ValidationError
from mailapp.extensions import db
from mailapp.inbound.parsing import HostileMessage, Limits, Reading, Report, read_message
from mailapp.models import Campaign, Delivery
from mailapp.sending.message import address_domain
from mailapp.sending.suppression import IncomingEvent, record_mail_event
from mailapp.sending.verp import Verp, verp_for
from mailapp.tracking.services import unsubscribe_delivery

log = logging.getLogger(__name__)

# Errors that mean the database cannot be reached or is busy, not that the message is bad: the
# message is kept for later (SMTP 451, an IMAP message left unmarked).
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)


@dataclass(frozen=True)
class InboundSettings:
    verp: Verp | None  # BOUNCE_DOMAIN and SECRET_KEY
    limits: Limits  # INBOUND_MAX_BYTES
    feedback_addresses: frozenset[str]  # INBOUND_FEEDBACK_ADDRESSES, lower case
    max_connections: int = 100  # INBOUND_MAX_CONNECTIONS: open sessions at once, the rest get 421

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> InboundSettings:
        return cls(
            verp=verp_for(config.get("BOUNCE_DOMAIN"), config["SECRET_KEY"]),
            limits=Limits(max_bytes=int(config["INBOUND_MAX_BYTES"])),
            feedback_addresses=frozenset(
                address.strip().lower() for address in config.get("INBOUND_FEEDBACK_ADDRESSES") or []
            ),
            max_connections=int(config["INBOUND_MAX_CONNECTIONS"]),
        )

    @classmethod
    def for_current_app(cls) -> InboundSettings:
        return cls.from_config(current_app.config)

    def accepts_recipient(self, address: str) -> bool:
        """Whether the receiver takes mail for this address: a valid VERP address or a feedback loop."""
        address = address.strip().strip("<>")
        if address.lower() in self.feedback_addresses:
            return True
        return self.verp is not None and self.verp.read(address) is not None


@dataclass
class Processed:
    """What one message did, for the log and the tests."""

    recorded: int = 0  # bounces and complaints recorded
    repeated: int = 0  # reports seen before (the same message read again)
    unsubscribed: int = 0
    ignored: str = ""  # why nothing happened


def process_message(
    raw: bytes, envelope_recipients: list[str], channel: str, settings: InboundSettings | None = None
) -> Processed:
    """Record what the message says. Flushes; the caller commits. A message that cannot be read is
    logged and dropped (Processed.ignored says why); database errors propagate, so the caller can
    have the message again later (SMTP 451, or an IMAP message left unmarked)."""
    settings = settings or InboundSettings.for_current_app()
    try:
        reading = read_message(raw, envelope_recipients, settings.verp, settings.limits)
    except HostileMessage as refused:
        log.warning("Inbound message via %s dropped: %s", channel, refused)
        return Processed(ignored=f"refused: {refused}")
    processed = Processed(ignored=reading.ignored)
    for delivery_id in reading.unsubscribe_delivery_ids:
        delivery = db.session.get(Delivery, delivery_id)
        if delivery is not None:
            unsubscribe_delivery(delivery)
            processed.unsubscribed += 1
    deliveries = _deliveries_named(reading)
    for report in reading.reports:
        delivery = _delivery_for(report, deliveries, len(reading.reports))
        email = delivery.email if delivery is not None else report.email
        if not email:
            log.info("Inbound %s via %s names no address and no delivery: skipped", report.source, channel)
            continue
        event = IncomingEvent(
            kind=report.kind, email=email, source=f"{report.source}:{channel}",
            delivery_id=delivery.id if delivery is not None else None, status_code=report.status_code,
            diagnostic=report.diagnostic, dedupe_key=f"{reading.message_id}|{email.lower()}",
            occurred_at=report.occurred_at,
        )
        try:
            recorded = record_mail_event(event)
        except ValidationError as error:
            log.warning("Inbound %s via %s skipped: %s", report.source, channel, error.message)
            continue
        if recorded:
            processed.recorded += 1
        else:
            processed.repeated += 1
    if not (processed.recorded or processed.repeated or processed.unsubscribed):
        log.info("Inbound message %s via %s: nothing recorded (%s)", reading.message_id[:100], channel,
                 processed.ignored or "no delivery or address found")
    return processed


def _deliveries_named(reading: Reading) -> list[Delivery]:
    """The deliveries the message's VERP tokens name, else those its returned Message-ID names (checked
    against what we sent)."""
    if reading.bounce_delivery_ids:
        return list(db.session.scalars(select(Delivery).where(Delivery.id.in_(reading.bounce_delivery_ids))))
    found = []
    for delivery_id, domain, message_id in reading.returned_message_ids:
        row = db.session.execute(
            select(Delivery, Campaign.from_email)
            .join(Campaign, Campaign.id == Delivery.campaign_id)
            .where(Delivery.id == delivery_id)
        ).first()
        if row is None:
            continue
        delivery, from_email = row
        if delivery.message_id == message_id or _domain_of(from_email) == domain:
            found.append(delivery)
    return found


def _domain_of(address: str) -> str:
    try:
        return address_domain(address).lower()
    except MailappError:
        return ""


def _delivery_for(report: Report, deliveries: list[Delivery], reports: int) -> Delivery | None:
    """The delivery a report is about: the one with its address, or the only one there is when the
    message reports on one address (a forwarding chain may have changed the address)."""
    for delivery in deliveries:
        if report.email and delivery.email.lower() == report.email.lower():
            return delivery
    if len(deliveries) == 1 and reports == 1:
        return deliveries[0]
    return None
