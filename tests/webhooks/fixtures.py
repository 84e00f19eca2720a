"""Test keys and signers for the provider webhooks, the documented payloads of tests/data/webhooks/, and
a loopback HTTP server that plays SNS's certificate host (it serves the test's self-signed .pem and
answers SubscribeURL visits, recording every path asked for)."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

DATA = Path(__file__).resolve().parent.parent / "data" / "webhooks"
TOPIC_ARN = "arn:aws:sns:us-west-2:123456789012:MyTopic"
MAILGUN_KEY = "key-test-mailgun-signing"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "s3cret-hook"


def payload(name: str) -> Any:
    """A fresh copy of a documented example body."""
    return copy.deepcopy(_load(name))


@cache
def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


# --- Amazon SNS -----------------------------------------------------------------------------------


@cache
def sns_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def sns_certificate_pem(key_index: int = 0) -> bytes:
    """A CA-less self-signed certificate, as SNS's signing certificates are to us: a key behind a URL."""
    key = sns_key() if key_index == 0 else other_rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@cache
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
}


def sign_sns(message: dict[str, Any], version: str = "1", key: rsa.RSAPrivateKey | None = None) -> dict:
    """Sign as AWS documents: "Name\\nValue\\n" for each field of the type, in order (Subject only when
    present), SHA1withRSA for SignatureVersion 1 and SHA256withRSA for 2, base64."""
    canonical = "".join(
        f"{name}\n{message[name]}\n" for name in SNS_SIGNED_FIELDS[message["Type"]] if name in message
    )
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS's version 1
    signature = (key or sns_key()).sign(canonical.encode(), padding.PKCS1v15(), algorithm)
    return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}


@dataclass
class CertificateHost:
    """A loopback HTTP server standing in for sns.<region>.amazonaws.com."""

    port: int
    requested: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@contextmanager
def serving_certificate_host() -> Iterator[CertificateHost]:
    host = CertificateHost(port=0)
    host.files["/SimpleNotificationService-test.pem"] = sns_certificate_pem()
    host.files["/SimpleNotificationService-other.pem"] = sns_certificate_pem(1)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host.requested.append(self.path)
            path = self.path.split("?")[0]
            body = host.files.get(path, b"<ConfirmSubscriptionResponse/>" if path == "/" else None)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def sns_notification(ses_event: dict, host: CertificateHost, message_id: str = "22b80b92-1") -> dict:
    message = payload("sns_notification.json")
    message.update(
        MessageId=message_id,
        TopicArn=TOPIC_ARN,
        Message=json.dumps(ses_event),
        SigningCertURL=host.url("/SimpleNotificationService-test.pem"),
    )
    return message


# --- SendGrid -------------------------------------------------------------------------------------


@cache
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sendgrid_public_key() -> str:
    """The verification key as SendGrid's settings page shows it: base64 of the DER public key."""
    der = sendgrid_key().public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sendgrid_headers(body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = sendgrid_key().sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


# --- Mailgun --------------------------------------------------------------------------------------


def sign_mailgun(body: dict, token: str, timestamp: int | None = None, key: str = MAILGUN_KEY) -> dict:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(key.encode(), f"{stamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {**body, "signature": {"timestamp": stamp, "token": token, "signature": digest}}


# --- Postmark -------------------------------------------------------------------------------------


def basic_auth(user: str = POSTMARK_USER, password: str = POSTMARK_PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
