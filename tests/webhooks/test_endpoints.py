"""The webhook endpoints end to end: a provider's documented payload, signed with a key the test makes,
posted to /webhooks/<provider>, ends with the address suppressed and left out of a later campaign's
snapshot; forged, old, replayed and malformed requests are refused with the API's error shape and
change nothing."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailapp.extensions import db as database
from mailapp.models import Campaign, Delivery, MailEvent, Subscriber, Suppression, WebhookBatch
from mailapp.sending.message import make_message_id, message_id_suffix
from mailapp.sending.snapshot import snapshot_recipients
from mailapp.webhooks import sendgrid, services
from tests.factories import CampaignFactory, SubscriberFactory, SubscriberListFactory
from tests.test_security import snapshot
from tests.webhooks.fixtures import (
    basic_auth,
    other_rsa_key,
    payload,
    sendgrid_headers,
    sign_mailgun,
    sign_sns,
    sns_notification,
)


@dataclass
class Sent:
    """A subscriber on a list, and the delivery of an earlier campaign that reached them."""

    subscriber: Subscriber
    delivery: Delivery
    list_id: int


def sent_to(email: str) -> Sent:
    mailing_list = SubscriberListFactory()
    subscriber = SubscriberFactory(email=email, lists=[mailing_list])
    SubscriberFactory(lists=[mailing_list])  # someone else, who keeps getting mail
    campaign = CampaignFactory(lists=[mailing_list], status="sent")
    delivery = Delivery(campaign_id=campaign.id, subscriber_id=subscriber.id, email=email, status="sent")
    database.session.add(delivery)
    database.session.flush()
    delivery.message_id = make_message_id(delivery.id, message_id_suffix("news.example.com"))
    database.session.commit()
    return Sent(subscriber, delivery, mailing_list.id)


def later_campaign_recipients(sent: Sent) -> set[str]:
    mailing_list = database.session.get(Campaign, sent.delivery.campaign_id).lists
    campaign = CampaignFactory(lists=mailing_list, status="sending")
    snapshot_recipients(campaign.id)
    database.session.commit()
    return set(database.session.scalars(select(Delivery.email).where(Delivery.campaign_id == campaign.id)))


def assert_suppressed(sent: Sent, kind: str, source: str, *, matched_delivery: bool = True) -> MailEvent:
    email = sent.subscriber.email
    event = database.session.scalars(select(MailEvent).where(MailEvent.email == email)).one()
    assert (event.kind, event.source) == (kind, source)
    if matched_delivery:
        assert (event.delivery_id, event.campaign_id) == (sent.delivery.id, sent.delivery.campaign_id)
    assert database.session.scalars(select(Suppression.email)).all() == [email]
    recipients = later_campaign_recipients(sent)
    assert email not in recipients
    assert len(recipients) == 1
    return event


def mail_event_count() -> int:
    return database.session.scalar(select(func.count()).select_from(MailEvent))


def post_json(client, url: str, body: object, headers: dict[str, str] | None = None):
    return client.post(url, data=json.dumps(body), content_type="application/json", headers=headers or {})


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert all({"field", "message"} <= set(problem) for problem in error["details"])


# --- Amazon SES through SNS -----------------------------------------------------------------------


def ses_bounce_for(sent: Sent) -> dict:
    bounce = payload("ses_bounce.json")
    bounce["bounce"]["bouncedRecipients"][0]["emailAddress"] = sent.subscriber.email
    bounce["mail"]["commonHeaders"]["messageId"] = sent.delivery.message_id
    return bounce


def test_an_ses_hard_bounce_suppresses_the_address_once_however_often_sns_retries(
    client, db, providers_on, certificate_host
):
    sent = sent_to("jane@example.com")
    message = sign_sns(sns_notification(ses_bounce_for(sent), certificate_host), "2")
    response = post_json(client, "/webhooks/ses", message)
    assert response.status_code == 200
    assert response.get_json() == {"received": 1, "recorded": 1}
    event = assert_suppressed(sent, "hard_bounce", "webhook:ses")
    assert (event.status_code, event.dedupe_key) == ("5.1.1", "ses:22b80b92-1:jane@example.com")
    assert database.session.get(Subscriber, sent.subscriber.id).status == "bounced"
    again = post_json(client, "/webhooks/ses", message)
    assert again.get_json() == {"received": 1, "recorded": 0}
    assert mail_event_count() == 1


def test_an_ses_complaint_unsubscribes_and_suppresses(client, db, providers_on, certificate_host):
    sent = sent_to("richard@example.com")
    complaint = payload("ses_complaint.json")
    complaint["mail"]["commonHeaders"]["messageId"] = sent.delivery.message_id
    response = post_json(client, "/webhooks/ses", sign_sns(sns_notification(complaint, certificate_host)))
    assert response.get_json() == {"received": 1, "recorded": 1}
    assert_suppressed(sent, "complaint", "webhook:ses")
    assert database.session.get(Subscriber, sent.subscriber.id).status == "unsubscribed"


def test_a_message_id_that_is_not_this_deliverys_matches_by_address_only(
    client, db, providers_on, certificate_host
):
    sent = sent_to("jane@example.com")
    bounce = ses_bounce_for(sent)
    # The right delivery id, another run's tag: not the message we sent to this address.
    bounce["mail"]["commonHeaders"]["messageId"] = f"<{sent.delivery.id}.0123456789abcdef@news.example.com>"
    post_json(client, "/webhooks/ses", sign_sns(sns_notification(bounce, certificate_host)))
    event = assert_suppressed(sent, "hard_bounce", "webhook:ses", matched_delivery=False)
    assert event.delivery_id is None


def test_an_sns_subscription_is_confirmed_and_records_nothing(client, db, providers_on, certificate_host):
    message = payload("sns_subscription_confirmation.json")
    message["SigningCertURL"] = certificate_host.url("/SimpleNotificationService-test.pem")
    message["SubscribeURL"] = certificate_host.url("/?Action=ConfirmSubscription&Token=abc")
    response = post_json(client, "/webhooks/ses", sign_sns(message))
    assert response.get_json() == {"received": 0, "recorded": 0}
    assert "/?Action=ConfirmSubscription&Token=abc" in certificate_host.requested


@pytest.mark.parametrize(
    ("forge", "status", "code"),
    [
        (lambda message, host: sign_sns(message, key=other_rsa_key()), 401, "invalid_signature"),
        (lambda message, host: {**sign_sns(message), "Message": "{}"}, 401, "invalid_signature"),
        (lambda message, host: sign_sns({**message, "TopicArn": "arn:aws:sns:x:1:T"}), 403, "forbidden"),
        (
            lambda message, host: sign_sns(
                {**message, "SigningCertURL": host.url("/SimpleNotificationService-test.pem", "localhost")}
            ),
            403,
            "forbidden",
        ),
        (lambda message, host: {**sign_sns(message), "SignatureVersion": "9"}, 400, "invalid_payload"),
    ],
    ids=["other-key", "altered", "wrong-topic", "cert-host", "bad-version"],
)
def test_forged_or_foreign_sns_messages_are_refused_and_change_nothing(
    client, db, providers_on, certificate_host, forge, status, code
):
    sent = sent_to("jane@example.com")
    before = snapshot(db)
    message = forge(sns_notification(ses_bounce_for(sent), certificate_host), certificate_host)
    assert_error(post_json(client, "/webhooks/ses", message), status, code)
    assert snapshot(db) == before
    assert "/SimpleNotificationService-other.pem" not in certificate_host.requested


def test_certificates_over_plain_http_are_refused_unless_the_test_setting_allows_them(
    app, client, db, providers_on, certificate_host, monkeypatch
):
    monkeypatch.setitem(app.config, "SES_SNS_CERT_ALLOW_HTTP", False)
    sent = sent_to("jane@example.com")
    message = sign_sns(sns_notification(ses_bounce_for(sent), certificate_host))
    assert_error(post_json(client, "/webhooks/ses", message), 403, "forbidden")
    assert certificate_host.requested == []
    assert mail_event_count() == 0


def test_production_refuses_to_start_with_plain_http_certificates(monkeypatch, tmp_path):
    from config import config_from_env

    monkeypatch.setenv("MAILAPP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    monkeypatch.setenv("SES_SNS_CERT_ALLOW_HTTP", "true")
    with pytest.raises(RuntimeError, match="SES_SNS_CERT_ALLOW_HTTP"):
        config_from_env(tmp_path)


# --- SendGrid -------------------------------------------------------------------------------------


def test_a_signed_sendgrid_batch_suppresses_its_addresses(client, db, providers_on):
    sent = sent_to("example@test.com")
    batch = payload("sendgrid_events.json")
    for event in batch:
        event["smtp-id"] = sent.delivery.message_id
    body = json.dumps(batch).encode()
    response = client.post("/webhooks/sendgrid", data=body, content_type="application/json",
                           headers=sendgrid_headers(body))
    assert response.get_json() == {"received": 4, "recorded": 4}
    kinds = database.session.scalars(select(MailEvent.kind).order_by(MailEvent.id)).all()
    assert kinds == ["hard_bounce", "soft_bounce", "hard_bounce", "complaint"]
    assert {row.delivery_id for row in database.session.scalars(select(MailEvent))} == {sent.delivery.id}
    assert database.session.scalars(select(Suppression.email)).all() == [sent.subscriber.email]
    assert sent.subscriber.email not in later_campaign_recipients(sent)
    # SendGrid retries a batch it got no 2xx for; within the window that changes nothing.
    again = client.post("/webhooks/sendgrid", data=body, content_type="application/json",
                        headers=sendgrid_headers(body))
    assert again.get_json() == {"received": 4, "recorded": 0}
    assert mail_event_count() == 4


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, headers: (body.replace(b"5.0.0", b"2.0.0"), headers),
        lambda body, headers: (body, sendgrid_headers(body, int(time.time()) - 601)),
        lambda body, headers: (body, {}),
    ],
    ids=["altered", "old", "unsigned"],
)
def test_forged_old_or_unsigned_sendgrid_batches_change_nothing(client, db, providers_on, tamper):
    sent_to("example@test.com")
    before = snapshot(db)
    body = json.dumps(payload("sendgrid_events.json")).encode()
    body, headers = tamper(body, sendgrid_headers(body))
    response = client.post("/webhooks/sendgrid", data=body, content_type="application/json", headers=headers)
    assert_error(response, 401, "invalid_signature")
    assert snapshot(db) == before


def test_a_sendgrid_batch_with_one_malformed_event_records_none_of_it(client, db, providers_on):
    batch = payload("sendgrid_events.json")
    batch.append({"event": "bounce", "sg_event_id": "x", "email": "not an address"})
    body = json.dumps(batch).encode()
    response = client.post("/webhooks/sendgrid", data=body, content_type="application/json",
                           headers=sendgrid_headers(body))
    assert_error(response, 400, "invalid_payload")
    assert response.get_json()["error"]["details"][0]["field"] == "[6].email"
    assert mail_event_count() == 0


def test_a_body_over_webhook_max_bytes_is_refused_before_it_is_read(app, client, providers_on, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_MAX_BYTES", 1000)
    body = json.dumps([payload("sendgrid_events.json")[0]] * 10).encode()
    response = client.post("/webhooks/sendgrid", data=body, content_type="application/json",
                           headers=sendgrid_headers(body))
    assert_error(response, 413, "request_entity_too_large")


@pytest.mark.e2e
def test_a_large_sendgrid_batch_is_answered_at_once_and_recorded_by_a_worker(
    app, client, db, providers_on, celery_worker, monkeypatch
):
    monkeypatch.setitem(app.config, "WEBHOOK_INLINE_EVENTS", 2)
    sent = sent_to("example@test.com")
    body = json.dumps(payload("sendgrid_events.json")).encode()
    response = client.post("/webhooks/sendgrid", data=body, content_type="application/json",
                           headers=sendgrid_headers(body))
    assert response.status_code == 202
    assert response.get_json() == {"received": 4, "queued": True}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (mail_event_count() < 4 or staged_batches()):
        database.session.rollback()
        time.sleep(0.2)
    assert mail_event_count() == 4
    assert staged_batches() == 0
    assert sent.subscriber.email in database.session.scalars(select(Suppression.email)).all()


def staged_batches() -> int:
    return database.session.scalar(select(func.count()).select_from(WebhookBatch))


def test_a_staged_batch_whose_task_was_lost_is_recorded_by_the_sweep(db, providers_on):
    sent_to("example@test.com")
    # What the endpoint commits before its 202; the task message it then queues is lost here.
    events = list(sendgrid.events(json.dumps(payload("sendgrid_events.json")).encode()))
    services.stage(sendgrid.PROVIDER, events)
    database.session.commit()
    assert services.record_stale_batches() == 0  # too recent: its own task may still be at work
    batch = database.session.scalars(select(WebhookBatch)).one()
    batch.received_at -= timedelta(minutes=2)
    database.session.commit()
    assert services.record_stale_batches() == 4
    assert (mail_event_count(), staged_batches()) == (4, 0)
    assert services.record_stale_batches() == 0


# --- Postmark -------------------------------------------------------------------------------------


def test_a_postmark_hard_bounce_with_basic_auth_suppresses_by_address(client, db, providers_on):
    sent = sent_to("john@example.com")
    response = post_json(client, "/webhooks/postmark", payload("postmark_bounce.json"), basic_auth())
    assert response.get_json() == {"received": 1, "recorded": 1}
    event = assert_suppressed(sent, "hard_bounce", "webhook:postmark", matched_delivery=False)
    assert event.dedupe_key == "postmark:4323372036854775807:john@example.com"
    assert event.subscriber_id == sent.subscriber.id
    again = post_json(client, "/webhooks/postmark", payload("postmark_bounce.json"), basic_auth())
    assert again.get_json() == {"received": 1, "recorded": 0}


def test_a_postmark_spam_complaint_names_its_delivery_through_metadata(client, db, providers_on):
    sent = sent_to("john@example.com")
    complaint = payload("postmark_spam_complaint.json")
    complaint["Metadata"]["delivery_id"] = str(sent.delivery.id)
    assert post_json(client, "/webhooks/postmark", complaint, basic_auth()).status_code == 200
    assert_suppressed(sent, "complaint", "webhook:postmark")


@pytest.mark.parametrize("headers", [{}, basic_auth(password="guess"), basic_auth(user="admin")])
def test_postmark_without_the_right_credentials_is_refused_with_a_challenge(
    client, db, providers_on, headers
):
    sent_to("john@example.com")
    before = snapshot(db)
    response = post_json(client, "/webhooks/postmark", payload("postmark_bounce.json"), headers)
    assert_error(response, 401, "invalid_signature")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert snapshot(db) == before


# --- Mailgun --------------------------------------------------------------------------------------


def mailgun_failure_for(sent: Sent) -> dict:
    body = payload("mailgun_failed_permanent.json")
    body["event-data"]["recipient"] = sent.subscriber.email
    body["event-data"]["message"]["headers"]["message-id"] = sent.delivery.message_id.strip("<>")
    return body


def test_a_signed_mailgun_failure_suppresses_and_its_token_cannot_be_replayed(client, db, providers_on):
    sent = sent_to("alice@example.com")
    signed = sign_mailgun(mailgun_failure_for(sent), "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0")
    response = post_json(client, "/webhooks/mailgun", signed)
    assert response.get_json() == {"received": 1, "recorded": 1}
    assert_suppressed(sent, "hard_bounce", "webhook:mailgun")
    before = snapshot(db)
    assert_error(post_json(client, "/webhooks/mailgun", signed), 401, "invalid_signature")
    assert snapshot(db) == before


def test_mailgun_retries_with_a_fresh_token_are_recorded_once(client, db, providers_on):
    sent = sent_to("alice@example.com")
    body = mailgun_failure_for(sent)
    for token in ("first-token", "second-token"):
        assert post_json(client, "/webhooks/mailgun", sign_mailgun(body, token)).status_code == 200
    assert mail_event_count() == 1


@pytest.mark.parametrize(
    "sign",
    [
        lambda body: sign_mailgun(body, "t1", key="not-our-key"),
        lambda body: sign_mailgun(body, "t2", timestamp=int(time.time()) - 3600),
        lambda body: body,  # the documentation's own signature
    ],
    ids=["other-key", "old", "example-signature"],
)
def test_forged_or_old_mailgun_requests_change_nothing(client, db, providers_on, sign):
    sent = sent_to("alice@example.com")
    before = snapshot(db)
    assert_error(post_json(client, "/webhooks/mailgun", sign(mailgun_failure_for(sent))), 401,
                 "invalid_signature")
    assert snapshot(db) == before


# --- Every provider -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["ses", "sendgrid", "postmark", "mailgun"])
def test_a_provider_is_off_until_configured(client, db, provider):
    assert_error(client.post(f"/webhooks/{provider}", data=b"{}"), 404, "not_found")


@pytest.mark.parametrize("provider", ["ses", "sendgrid", "postmark", "mailgun"])
@pytest.mark.parametrize("body", [b"", b"\xff\xfe", b"{" * 50, b"null", b'{"a": NaN}'])
def test_garbage_is_a_client_error_never_a_server_error(client, db, providers_on, provider, body):
    headers = basic_auth() if provider == "postmark" else {}
    if provider == "sendgrid":
        headers = sendgrid_headers(body)
    response = client.post(f"/webhooks/{provider}", data=body, content_type="application/json",
                           headers=headers)
    assert response.status_code in (400, 401), response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] in ("invalid_payload", "invalid_signature")
    assert mail_event_count() == 0
