"""Fixtures of the webhook tests: the loopback SNS certificate host, and every provider switched on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailapp.webhooks import ses
from tests.webhooks.fixtures import (
    MAILGUN_KEY,
    POSTMARK_PASSWORD,
    POSTMARK_USER,
    TOPIC_ARN,
    CertificateHost,
    sendgrid_public_key,
    serving_certificate_host,
)


@pytest.fixture
def certificate_host() -> Iterator[CertificateHost]:
    with serving_certificate_host() as host:
        yield host


@pytest.fixture
def providers_on(app, monkeypatch) -> Iterator[None]:
    """Every provider configured; SNS certificates from the loopback host over plain HTTP."""
    for name, value in {
        "SES_SNS_TOPIC_ARNS": f"arn:aws:sns:eu-west-1:1:Other, {TOPIC_ARN}",
        "SES_SNS_CERT_HOST_PATTERN": r"^127\.0\.0\.1$",
        "SES_SNS_CERT_ALLOW_HTTP": True,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": sendgrid_public_key(),
        "POSTMARK_WEBHOOK_USER": POSTMARK_USER,
        "POSTMARK_WEBHOOK_PASSWORD": POSTMARK_PASSWORD,
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
    }.items():
        monkeypatch.setitem(app.config, name, value)
    ses.certificates.clear()
    yield
    ses.certificates.clear()
