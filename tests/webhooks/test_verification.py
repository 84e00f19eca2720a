"""Each provider's signature check and parser, on its documented example payloads signed with keys the
test makes: what is accepted, what is refused and why, and which events become which kind."""

from __future__ import annotations

import json
import time

import pytest

from mailapp.errors import WebhookAuthenticationError, WebhookForbiddenError, WebhookPayloadError
from mailapp.models import MailEventKind
from mailapp.webhooks import mailgun, postmark, sendgrid, ses
from tests.webhooks.fixtures import (
    MAILGUN_KEY,
    POSTMARK_PASSWORD,
    POSTMARK_USER,
    TOPIC_ARN,
    basic_auth,
    other_rsa_key,
    payload,
    sendgrid_headers,
    sendgrid_public_key,
    sign_mailgun,
    sign_sns,
    sns_notification,
)

LOOPBACK = ses.SnsSettings(
    topic_arns=frozenset({TOPIC_ARN}), cert_host_pattern=r"^127\.0\.0\.1$", allow_http=True
)


def raw(message: object) -> bytes:
    return json.dumps(message).encode()


# --- Amazon SES through SNS -----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_an_sns_notification_signed_as_aws_documents_is_verified_and_read(certificate_host, version):
    message = sign_sns(sns_notification(payload("ses_bounce.json"), certificate_host), version)
    verified = ses.verify(raw(message), LOOPBACK, ses.CertificateCache())
    assert (verified.type, verified.topic_arn) == ("Notification", TOPIC_ARN)
    [event] = ses.ses_events(verified)
    assert event.kind == MailEventKind.HARD_BOUNCE
    assert event.email == "jane@example.com"
    assert event.status_code == "5.1.1"
    assert event.diagnostic == "smtp; 550 5.1.1 <jane@example.com>... User"
    assert event.message_id == "<custom-message-ID>"
    assert event.dedupe_key == "ses:22b80b92-1:jane@example.com"
    assert event.occurred_at.isoformat() == "2016-01-27T14:59:38.237000+00:00"


def test_an_sns_notification_without_a_subject_signs_without_it(certificate_host):
    message = sns_notification(payload("ses_complaint.json"), certificate_host)
    del message["Subject"]
    verified = ses.verify(raw(sign_sns(message)), LOOPBACK, ses.CertificateCache())
    [event] = ses.ses_events(verified)
    assert (event.kind, event.email) == (MailEventKind.COMPLAINT, "richard@example.com")


def test_a_transient_ses_bounce_is_soft_and_each_recipient_is_an_event(certificate_host):
    bounce = payload("ses_bounce.json")
    bounce["bounce"]["bounceType"] = "Transient"
    bounce["bounce"]["bouncedRecipients"].append({"emailAddress": "Mary@Example.com", "status": "4.2.2"})
    message = sign_sns(sns_notification(bounce, certificate_host))
    events = list(ses.ses_events(ses.verify(raw(message), LOOPBACK, ses.CertificateCache())))
    assert [(event.kind, event.email) for event in events] == [
        (MailEventKind.SOFT_BOUNCE, "jane@example.com"),
        (MailEventKind.SOFT_BOUNCE, "mary@example.com"),
    ]


def test_ses_event_publishing_delivery_events_yield_nothing(certificate_host):
    delivery = {"eventType": "Delivery", "mail": payload("ses_bounce.json")["mail"], "delivery": {}}
    message = sign_sns(sns_notification(delivery, certificate_host))
    assert list(ses.ses_events(ses.verify(raw(message), LOOPBACK, ses.CertificateCache()))) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("Message", '{"notificationType": "Bounce"}'), ("TopicArn", "arn:aws:sns:x"), ("Type", "X")],
)
def test_an_sns_message_altered_after_signing_is_refused(certificate_host, field, value):
    message = sign_sns(sns_notification(payload("ses_bounce.json"), certificate_host))
    message[field] = value
    with pytest.raises((WebhookAuthenticationError, WebhookPayloadError)):
        ses.verify(raw(message), LOOPBACK, ses.CertificateCache())


def test_an_sns_message_signed_by_another_key_is_refused(certificate_host):
    message = sign_sns(sns_notification(payload("ses_bounce.json"), certificate_host), key=other_rsa_key())
    with pytest.raises(WebhookAuthenticationError, match="signature does not match"):
        ses.verify(raw(message), LOOPBACK, ses.CertificateCache())


def test_a_topic_that_is_not_configured_is_forbidden(certificate_host):
    message = sns_notification(payload("ses_bounce.json"), certificate_host)
    message["TopicArn"] = "arn:aws:sns:us-west-2:123456789012:SomeoneElses"
    with pytest.raises(WebhookForbiddenError, match="SomeoneElses"):
        ses.verify(raw(sign_sns(message)), LOOPBACK, ses.CertificateCache())


def test_a_certificate_on_a_host_that_does_not_match_is_never_fetched(certificate_host):
    message = sns_notification(payload("ses_bounce.json"), certificate_host)
    message["SigningCertURL"] = certificate_host.url("/SimpleNotificationService-test.pem", "localhost")
    with pytest.raises(WebhookForbiddenError, match="not an SNS URL"):
        ses.verify(raw(sign_sns(message)), LOOPBACK, ses.CertificateCache())
    assert certificate_host.requested == []


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://user@sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:x/cert.pem",
        "https://s3.amazonaws.com/cert.pem",
        "file:///etc/passwd",
    ],
)
def test_certificate_urls_must_be_https_on_sns_itself_by_default(url):
    with pytest.raises(WebhookForbiddenError):
        ses.check_sns_url(url, ses.SnsSettings(topic_arns=frozenset({TOPIC_ARN})))


def test_the_default_host_pattern_takes_every_region():
    settings = ses.SnsSettings(topic_arns=frozenset({TOPIC_ARN}))
    for url in (
        "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        "https://sns.eu-central-1.amazonaws.com/x.pem",
    ):
        ses.check_sns_url(url, settings)


def test_certificates_are_fetched_once_and_cached(certificate_host):
    cache = ses.CertificateCache()
    for number in range(3):
        message = sign_sns(sns_notification(payload("ses_bounce.json"), certificate_host, f"id-{number}"))
        ses.verify(raw(message), LOOPBACK, cache)
    assert certificate_host.requested == ["/SimpleNotificationService-test.pem"]


def test_a_certificate_url_that_does_not_answer_a_certificate_is_refused(certificate_host):
    message = sns_notification(payload("ses_bounce.json"), certificate_host)
    message["SigningCertURL"] = certificate_host.url("/missing.pem")
    with pytest.raises(WebhookAuthenticationError, match="Could not fetch"):
        ses.verify(raw(sign_sns(message)), LOOPBACK, ses.CertificateCache())


def test_a_subscription_confirmation_is_confirmed_by_visiting_subscribe_url(certificate_host):
    message = payload("sns_subscription_confirmation.json")
    message["SigningCertURL"] = certificate_host.url("/SimpleNotificationService-test.pem")
    message["SubscribeURL"] = certificate_host.url(f"/?Action=ConfirmSubscription&TopicArn={TOPIC_ARN}")
    verified = ses.verify(raw(sign_sns(message, "2")), LOOPBACK, ses.CertificateCache())
    ses.confirm_subscription(verified, LOOPBACK)
    assert certificate_host.requested[-1] == f"/?Action=ConfirmSubscription&TopicArn={TOPIC_ARN}"


def test_a_subscribe_url_off_the_sns_host_is_never_visited(certificate_host):
    message = payload("sns_subscription_confirmation.json")
    message["SigningCertURL"] = certificate_host.url("/SimpleNotificationService-test.pem")
    message["SubscribeURL"] = certificate_host.url("/?Action=ConfirmSubscription", "localhost")
    verified = ses.verify(raw(sign_sns(message)), LOOPBACK, ses.CertificateCache())
    with pytest.raises(WebhookForbiddenError):
        ses.confirm_subscription(verified, LOOPBACK)
    assert certificate_host.requested == ["/SimpleNotificationService-test.pem"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", None),
        (b"[1]", None),
        (b"{}", "Type"),
        (b'{"Type": "Notification"}', "SignatureVersion"),
        (b'{"Type": "Notification", "SignatureVersion": "3"}', "SignatureVersion"),
        (b'{"Type": "Notification", "SignatureVersion": "1", "Signature": "%%%"}', "Signature"),
        (b"[" * 100_000, None),
    ],
)
def test_malformed_sns_bodies_are_payload_errors_naming_the_field(body, field):
    with pytest.raises(WebhookPayloadError) as raised:
        ses.verify(body, LOOPBACK, ses.CertificateCache())
    assert raised.value.status_code == 400
    assert [problem["field"] for problem in raised.value.details] == ([field] if field else [])


def test_an_ses_notification_missing_its_recipients_names_the_field(certificate_host):
    bounce = payload("ses_bounce.json")
    del bounce["bounce"]["bouncedRecipients"]
    message = sign_sns(sns_notification(bounce, certificate_host))
    verified = ses.verify(raw(message), LOOPBACK, ses.CertificateCache())
    with pytest.raises(WebhookPayloadError, match="bouncedRecipients"):
        list(ses.ses_events(verified))


# --- SendGrid -------------------------------------------------------------------------------------


def sendgrid_settings(window: int = 600) -> sendgrid.SendGridSettings:
    return sendgrid.SendGridSettings(public_key=sendgrid_public_key(), replay_window_seconds=window)


def test_a_signed_sendgrid_batch_maps_each_event_by_sendgrids_documentation():
    body = raw(payload("sendgrid_events.json"))
    headers = sendgrid_headers(body)
    sendgrid.verify(body, headers[sendgrid.SIGNATURE_HEADER], headers[sendgrid.TIMESTAMP_HEADER],
                    sendgrid_settings())
    events = list(sendgrid.events(body))
    assert [(event.kind, event.event_id) for event in events] == [
        (MailEventKind.HARD_BOUNCE, "6g4ZI7SA-xmRDv57GoPIPw=="),  # bounce
        (MailEventKind.SOFT_BOUNCE, "M4nHgePDLBy9ER8cOWp1BQ=="),  # blocked
        (MailEventKind.HARD_BOUNCE, "zmzJhfJgAfUSOW80yEbPyw=="),  # dropped: Bounced Address
        (MailEventKind.COMPLAINT, "37nvH5QBz858KGVYCM4uOA=="),  # spamreport
    ]  # deferred and delivered: nothing
    assert events[0].message_id == "<14c5d75ce93.dfd.64b469@ismtpd-555>"
    assert (events[0].status_code, events[0].diagnostic) == ("5.0.0", "500 unknown recipient")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, headers: (body + b" ", headers),
        lambda body, headers: (body, {**headers, sendgrid.TIMESTAMP_HEADER: str(int(time.time()) + 1)}),
        lambda body, headers: (body, {**headers, sendgrid.SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl"}),
        lambda body, headers: (body, {**headers, sendgrid.SIGNATURE_HEADER: "%%%"}),
        lambda body, headers: (body, {**headers, sendgrid.SIGNATURE_HEADER: ""}),
        lambda body, headers: (body, {**headers, sendgrid.TIMESTAMP_HEADER: "yesterday"}),
    ],
)
def test_a_sendgrid_body_or_header_altered_after_signing_is_refused(tamper):
    body = raw(payload("sendgrid_events.json"))
    body, headers = tamper(body, sendgrid_headers(body))
    with pytest.raises(WebhookAuthenticationError):
        sendgrid.verify(body, headers.get(sendgrid.SIGNATURE_HEADER, ""),
                        headers.get(sendgrid.TIMESTAMP_HEADER, ""), sendgrid_settings())


def test_a_sendgrid_request_signed_outside_the_replay_window_is_refused():
    body = raw(payload("sendgrid_events.json"))
    headers = sendgrid_headers(body, timestamp=int(time.time()) - 601)
    with pytest.raises(WebhookAuthenticationError, match="600 seconds"):
        sendgrid.verify(body, headers[sendgrid.SIGNATURE_HEADER], headers[sendgrid.TIMESTAMP_HEADER],
                        sendgrid_settings())


def test_a_sendgrid_event_without_its_id_names_the_field():
    batch = payload("sendgrid_events.json")
    del batch[3]["sg_event_id"]
    with pytest.raises(WebhookPayloadError) as raised:
        list(sendgrid.events(raw(batch)))
    assert raised.value.details[0]["field"] == "[3].sg_event_id"


# --- Postmark -------------------------------------------------------------------------------------

POSTMARK = postmark.PostmarkSettings(POSTMARK_USER, POSTMARK_PASSWORD)


def test_postmark_credentials_are_checked():
    postmark.check_credentials(basic_auth()["Authorization"], POSTMARK)
    for header in (
        "",
        basic_auth(password="wrong")["Authorization"],
        basic_auth(user="other")["Authorization"],
        "Basic %%%",
        "Bearer " + POSTMARK_PASSWORD,
    ):
        with pytest.raises(WebhookAuthenticationError):
            postmark.check_credentials(header, POSTMARK)


def test_postmark_bounces_and_complaints_are_read_from_its_examples():
    [bounce] = postmark.events(raw(payload("postmark_bounce.json")))
    assert (bounce.kind, bounce.email, bounce.event_id) == (
        MailEventKind.HARD_BOUNCE, "john@example.com", "4323372036854775807"
    )
    assert bounce.diagnostic == "Test bounce details"
    assert bounce.occurred_at.isoformat() == "2019-11-05T16:33:54.907025+00:00"
    [complaint] = postmark.events(raw(payload("postmark_spam_complaint.json")))
    assert complaint.kind == MailEventKind.COMPLAINT


@pytest.mark.parametrize(
    ("bounce_type", "kind"),
    [("SoftBounce", MailEventKind.SOFT_BOUNCE), ("BadEmailAddress", MailEventKind.HARD_BOUNCE),
     ("AutoResponder", None), ("Unsubscribe", None)],
)
def test_postmark_bounce_types_map_to_kinds(bounce_type, kind):
    record = payload("postmark_bounce.json")
    record["Type"] = bounce_type
    assert [event.kind for event in postmark.events(raw(record))] == ([kind] if kind else [])


def test_a_postmark_delivery_id_in_metadata_is_a_hint():
    record = payload("postmark_bounce.json")
    record["Metadata"]["delivery_id"] = "42"
    [event] = postmark.events(raw(record))
    assert event.delivery_hint == 42


# --- Mailgun --------------------------------------------------------------------------------------

MAILGUN = mailgun.MailgunSettings(signing_key=MAILGUN_KEY, replay_window_seconds=600)


def test_a_signed_mailgun_permanent_failure_is_a_hard_bounce_with_its_message_id():
    signed = mailgun.verify(raw(sign_mailgun(payload("mailgun_failed_permanent.json"), "t" * 50)), MAILGUN)
    assert signed.token == "t" * 50
    [event] = mailgun.events(signed)
    assert (event.kind, event.email, event.event_id) == (
        MailEventKind.HARD_BOUNCE, "alice@example.com", "G9Bn5sl1TC6WuW4DhWNR-w"
    )
    assert event.message_id == "<20130503192659.13651.20287@sandbox.mailgun.org>"
    assert (event.status_code, event.diagnostic) == ("605", "Not delivering to previously bounced address")


def test_mailgun_temporary_failures_are_soft_and_complaints_are_complaints():
    failed = payload("mailgun_failed_permanent.json")
    failed["event-data"]["severity"] = "temporary"
    [soft] = mailgun.events(mailgun.verify(raw(sign_mailgun(failed, "a" * 50)), MAILGUN))
    assert soft.kind == MailEventKind.SOFT_BOUNCE
    complained = raw(sign_mailgun(payload("mailgun_complained.json"), "b" * 50))
    [complaint] = mailgun.events(mailgun.verify(complained, MAILGUN))
    assert (complaint.kind, complaint.email) == (MailEventKind.COMPLAINT, "alice@example.com")


def test_the_documented_mailgun_example_signature_is_refused_with_our_key():
    with pytest.raises(WebhookAuthenticationError, match="signature does not match"):
        mailgun.verify(raw(payload("mailgun_failed_permanent.json")), MAILGUN)


def test_a_mailgun_request_signed_with_another_key_or_long_ago_is_refused():
    body = payload("mailgun_failed_permanent.json")
    with pytest.raises(WebhookAuthenticationError, match="signature does not match"):
        mailgun.verify(raw(sign_mailgun(body, "c" * 50, key="another-key")), MAILGUN)
    with pytest.raises(WebhookAuthenticationError, match="600 seconds"):
        mailgun.verify(raw(sign_mailgun(body, "c" * 50, timestamp=int(time.time()) - 700)), MAILGUN)


def test_a_mailgun_event_without_a_recipient_names_the_field():
    body = payload("mailgun_complained.json")
    del body["event-data"]["recipient"]
    signed = mailgun.verify(raw(sign_mailgun(body, "d" * 50)), MAILGUN)
    with pytest.raises(WebhookPayloadError) as raised:
        list(mailgun.events(signed))
    assert raised.value.details[0]["field"] == "event-data.recipient"


# --- Settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SENDGRID_WEBHOOK_PUBLIC_KEY", "not base64!", "not a base64 DER public key"),
        ("SENDGRID_WEBHOOK_PUBLIC_KEY", "c2hvcnQ=", "not a base64 DER public key"),
        ("SES_SNS_CERT_HOST_PATTERN", "^sns.(", "not a regular expression"),
    ],
)
def test_settings_that_cannot_work_stop_the_app_at_start(app, name, value, message):
    from mailapp.webhooks.services import check_settings

    with pytest.raises(RuntimeError, match=message):
        check_settings({**app.config, name: value})
    check_settings(app.config)
