"""Fixtures for the inbound tests: BOUNCE_DOMAIN and a feedback-loop address configured
(`inbound_config`), the inbound SMTP receiver running on a free port (`receiver`), and a campaign over
chosen addresses. Import the *_fixture functions into a test module to use them."""

from __future__ import annotations

import itertools
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from mailapp.extensions import db
from mailapp.models import Campaign, Delivery, MailEvent, Subscriber, Suppression
from mailapp.sending import snapshot
from mailapp.sending.verp import Verp
from tests.factories import CampaignFactory, LayoutFactory, SubscriberFactory, SubscriberListFactory
from tests.postfix import free_port

BOUNCE_DOMAIN = "bounce.example.com"
FEEDBACK_ADDRESS = "fbl@bounce.example.com"
SAMPLES = Path(__file__).parent / "inbound_samples"
# The token of delivery 42 in the samples (SECRET_KEY "test-secret-key").
SAMPLE_TOKEN = b"aaaaaaaaaaacuiedmsfjai2pyhcxa"
_campaign_ids = itertools.count(20_000)


@pytest.fixture(name="inbound_config")
def inbound_config_fixture(app, monkeypatch) -> Verp:
    monkeypatch.setitem(app.config, "BOUNCE_DOMAIN", BOUNCE_DOMAIN)
    monkeypatch.setitem(app.config, "INBOUND_FEEDBACK_ADDRESSES", [FEEDBACK_ADDRESS])
    return Verp(BOUNCE_DOMAIN, app.config["SECRET_KEY"])


@dataclass
class Receiver:
    port: int

    def send(self, recipients: list[str], raw: bytes, mail_from: str = "") -> dict:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            return client.sendmail(mail_from, recipients, raw)


@pytest.fixture(name="receiver")
def receiver_fixture(app, inbound_config) -> Iterator[Receiver]:
    from mailapp.inbound.receiver import start_receiver

    port = free_port()
    controller = start_receiver(app, "127.0.0.1", port)
    yield Receiver(port)
    controller.stop()


def make_sending_campaign(emails: list[str]) -> tuple[Campaign, dict[str, Delivery]]:
    """A campaign in status sending to these addresses (one list), its snapshot committed."""
    members = SubscriberListFactory()
    for email in emails:
        SubscriberFactory(email=email, lists=[members])
    campaign = CampaignFactory(
        layout=LayoutFactory(), lists=[members], status="sending", id=next(_campaign_ids)
    )
    snapshot.snapshot_recipients(campaign.id)
    db.session.commit()
    return campaign, {row.email: row for row in deliveries_of(campaign.id)}


def deliveries_of(campaign_id: int) -> list[Delivery]:
    rows = list(db.session.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id)))
    for row in rows:
        db.session.expunge(row)
    db.session.rollback()
    return rows


def subscriber_status(email: str) -> str:
    status = db.session.scalar(select(Subscriber.status).where(Subscriber.email == email))
    db.session.rollback()
    return status


def suppression_of(email: str) -> tuple[str, str] | None:
    row = db.session.execute(
        select(Suppression.reason, Suppression.source).where(Suppression.email == email)
    ).first()
    db.session.rollback()
    return tuple(row) if row is not None else None


def mail_events() -> list[tuple[str, str, int | None, str]]:
    rows = db.session.execute(
        select(MailEvent.kind, MailEvent.email, MailEvent.delivery_id, MailEvent.source)
        .order_by(MailEvent.id)
    ).all()
    db.session.rollback()
    return [tuple(row) for row in rows]


def sample(name: str, delivery_id: int, verp: Verp, **replacements: str) -> bytes:
    """A sample message made about this delivery: its VERP token and Message-ID put in."""
    raw = (SAMPLES / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    token = verp.bounce_address(delivery_id).partition("+")[2].partition("@")[0]
    raw = raw.replace(SAMPLE_TOKEN, token.encode()).replace(b"<42.", f"<{delivery_id}.".encode())
    for old, new in replacements.items():
        raw = raw.replace(old.encode(), new.encode())
    return raw
