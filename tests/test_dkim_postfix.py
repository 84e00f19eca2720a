"""DKIM through a real MTA: a campaign sent by a real worker through a private Postfix instance
(tests/postfix.py) to the capturing SMTP server arrives with signatures that dkimpy verifies against
the records the sending domain's page publishes. Postfix adds its Received header and may rewrite
what it relays; the signature must survive that."""

from __future__ import annotations

import pytest

from mailapp.domains import services
from mailapp.sending import tasks
from tests.dkim_check import verify_dkim
from tests.postfix import PostfixInstance
from tests.test_dkim import published_for
from tests.test_sending import make_campaign, wait_for_status


@pytest.fixture
def postfix_relay(app, smtp_server, monkeypatch):
    """Postfix as the campaign's relay, relaying everything on to the capturing SMTP server."""
    with PostfixInstance({}, relayhost=f"[127.0.0.1]:{smtp_server.port}") as instance:
        # Flask-Mail keeps the relay's address from init_app: the worker's relay is its state's.
        monkeypatch.setattr(app.extensions["mail"], "port", instance.port)
        yield instance


def test_a_campaign_relayed_through_postfix_arrives_dkim_signed_and_verifies(
    db, postfix_relay, smtp_server, celery_worker
) -> None:
    sending_domain = services.create_domain("example.com", ed25519=True)
    db.session.commit()
    published = published_for(sending_domain)
    campaign, _ = make_campaign(count=3, from_email="news@example.com",
                                subject="Nouvelles pour {{ subscriber.name }} — été")
    tasks.enqueue_sending(campaign.id)
    wait_for_status(campaign.id, "sent")
    received = smtp_server.wait_for(3, timeout=60)
    assert len(received) == 3
    for message in received:
        assert "(Postfix)" in message.message["Received"]  # it really came through Postfix
        results = verify_dkim(message.raw, published)
        assert [(r.domain, r.algorithm, r.valid) for r in results] == [
            ("example.com", "rsa-sha256", True), ("example.com", "ed25519-sha256", True)], results
