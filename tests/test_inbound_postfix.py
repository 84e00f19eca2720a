"""Bounces end to end through a real Postfix (tests/postfix.py): a campaign sent by a real worker
through Postfix to an address Postfix cannot deliver; Postfix writes the DSN itself and delivers it to
the VERP address at our receiver; the address ends suppressed and its subscriber bounced, and the next
campaign leaves it out."""

from __future__ import annotations

import time

import pytest

from mailapp.models import Campaign
from mailapp.sending import snapshot, tasks
from tests.factories import CampaignFactory, LayoutFactory
from tests.inbound_fixtures import (
    BOUNCE_DOMAIN,
    deliveries_of,
    inbound_config_fixture,
    mail_events,
    make_sending_campaign,
    receiver_fixture,
    subscriber_status,
    suppression_of,
)
from tests.postfix import PostfixInstance
from tests.test_sending import wait_for_status

__all__ = ["inbound_config_fixture", "receiver_fixture"]


@pytest.fixture
def postfix(app, receiver, smtp_server, monkeypatch):
    """Postfix as the campaign's relay: unknown.test bounces after acceptance, the bounce domain goes
    to our receiver, everything else on to the capturing SMTP server."""
    transports = {
        "unknown.test": "error:5.1.1 No such user here",
        BOUNCE_DOMAIN: f"smtp:[127.0.0.1]:{receiver.port}",
    }
    relayhost = f"[127.0.0.1]:{smtp_server.port}"
    with PostfixInstance(transports, relayhost=relayhost) as instance:
        # Flask-Mail keeps the relay's address from init_app: the worker's relay is its state's.
        monkeypatch.setattr(app.extensions["mail"], "port", instance.port)
        yield instance


def wait_for_subscriber(email: str, status: str, postfix: PostfixInstance, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while subscriber_status(email) != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"{email} is {subscriber_status(email)}, not {status}\n{postfix.log()}")
        time.sleep(0.2)


def test_a_bounce_written_by_postfix_suppresses_the_address_and_the_next_campaign_skips_it(
    db, postfix, smtp_server, celery_worker, inbound_config
) -> None:
    campaign, rows = make_sending_campaign(["gone@unknown.test", "reader@example.com"])
    tasks.enqueue_sending(campaign.id)
    wait_for_status(campaign.id, "sent")
    # The deliverable one went on through Postfix, from its VERP address.
    (relayed,) = smtp_server.wait_for(1, timeout=60)
    assert relayed.rcpt_tos == ["reader@example.com"]
    assert "(Postfix)" in relayed.message["Received"]
    assert inbound_config.read(relayed.mail_from) == ("bounces", rows["reader@example.com"].id)
    # The other bounced inside Postfix, and its DSN reached the receiver.
    postfix.wait_for_log(r"to=<gone@unknown\.test>.*status=bounced")
    wait_for_subscriber("gone@unknown.test", "bounced", postfix)
    assert suppression_of("gone@unknown.test") == ("hard_bounce", "dsn:smtp")
    assert mail_events() == [("hard_bounce", "gone@unknown.test", rows["gone@unknown.test"].id, "dsn:smtp")]
    assert subscriber_status("reader@example.com") == "active"

    first = db.session.get(Campaign, campaign.id)
    later = CampaignFactory(layout=LayoutFactory(), lists=list(first.lists), status="sending")
    snapshot.snapshot_recipients(later.id)
    db.session.commit()
    assert [row.email for row in deliveries_of(later.id)] == ["reader@example.com"]

