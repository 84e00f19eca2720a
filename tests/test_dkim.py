"""DKIM signing: every signature mailapp makes is verified by dkimpy against the TXT records the app
publishes, for RSA and Ed25519, straight from the builder, from a test send and after a campaign went
through a real worker and a real SMTP server; a changed body or signed header fails."""

from __future__ import annotations

import time

import pytest
from dkim.canonicalization import Relaxed
from hypothesis import example, given
from hypothesis import strategies as st

from mailapp.domains import services
from mailapp.domains.records import dkim_records
from mailapp.models import SendingDomain
from mailapp.sending import tasks
from mailapp.sending.compose import dkim_signer_for
from mailapp.sending.dkim import (
    DkimKey,
    DkimKeyError,
    DkimSigner,
    canonical_body,
    canonical_header,
    generate_ed25519_key,
    generate_rsa_key,
)
from mailapp.sending.message import Envelope, FastMessageBuilder, message_date
from mailapp.sending.test_sends import send_test_messages
from tests.dkim_check import signature_tags, verify_dkim
from tests.test_sending import make_campaign, wait_for_status

RSA_PRIVATE, RSA_PUBLIC = generate_rsa_key()
ED_PRIVATE, ED_PUBLIC = generate_ed25519_key()
PUBLISHED = {
    "mail._domainkey.example.com": f"v=DKIM1; k=rsa; p={RSA_PUBLIC}",
    "maile._domainkey.example.com": f"v=DKIM1; k=ed25519; p={ED_PUBLIC}",
}
DUAL = DkimSigner("example.com", [DkimKey("mail", "rsa-sha256", RSA_PRIVATE),
                                  DkimKey("maile", "ed25519-sha256", ED_PRIVATE)])


def built_message(*, subject: str = "Our news", to_name: str = "Ann", text: str | None = "Hello  there \n",
                  html: str | None = "<p>Hello</p>\n", from_name: str = "Example News",
                  reply_to: str = "replies@example.com") -> bytes:
    builder = FastMessageBuilder(from_name=from_name, from_email="news@example.com", reply_to=reply_to)
    return builder.build(Envelope(
        to_name=to_name, to_email="ann@example.org", subject=subject, text=text, html=html,
        message_id="<1.abc@example.com>", date=message_date(), unsubscribe_url="https://example.com/u/tok",
    ))


def published_for(sending_domain: SendingDomain) -> dict[str, str]:
    """The DKIM records exactly as the domain's page and API show them."""
    return {record.name: record.value for record in dkim_records(sending_domain)}


def test_a_message_signed_with_rsa_and_ed25519_verifies_with_dkimpy() -> None:
    results = verify_dkim(DUAL.sign(built_message()), PUBLISHED)
    assert [(r.algorithm, r.selector, r.domain, r.valid) for r in results] == [
        ("rsa-sha256", "mail", "example.com", True), ("ed25519-sha256", "maile", "example.com", True),
    ], results


def test_the_signature_covers_both_unsubscribe_headers_oversigns_from_and_folds_short_lines() -> None:
    signed = DUAL.sign(built_message())
    tags = signature_tags(signed)[0]
    signature_lines = signed[:signed.index(b"\r\nTo: ")].split(b"\r\n")
    assert max(len(line) for line in signature_lines) <= 78  # RFC 5322's recommended line length
    assert tags["h"].split(":") == [
        "from", "reply-to", "to", "subject", "date", "message-id", "mime-version", "content-type",
        "list-unsubscribe", "list-unsubscribe-post", "from",
    ]
    assert tags["c"] == "relaxed/relaxed"
    assert abs(int(tags["t"]) - time.time()) < 60


def test_list_id_and_feedback_id_are_signed_when_a_message_has_them() -> None:
    message = built_message(reply_to="")
    split = message.index(b"\r\n\r\n")
    message = (message[:split] + b"\r\nList-Id: News <news.example.com>\r\nFeedback-ID: 7:news:mailapp"
               + message[split:])
    signed = DUAL.sign(message)
    h_tag = signature_tags(signed)[0]["h"].split(":")
    assert {"list-id", "feedback-id"} <= set(h_tag)
    assert "reply-to" not in h_tag
    assert [result.valid for result in verify_dkim(signed, PUBLISHED)] == [True, True]
    changed = signed.replace(b"Feedback-ID: 7:news", b"Feedback-ID: 8:news")
    assert [result.valid for result in verify_dkim(changed, PUBLISHED)] == [False, False]


def test_a_changed_body_fails_verification() -> None:
    signed = DUAL.sign(built_message())
    tampered = signed.replace(b"<p>Hello</p>", b"<p>Hellp</p>")
    assert tampered != signed
    assert [result.valid for result in verify_dkim(tampered, PUBLISHED)] == [False, False]


@pytest.mark.parametrize(("old", "new"), [
    (b"Subject: Our news", b"Subject: Our newz"),
    (b"List-Unsubscribe: <https://example.com/u/tok>", b"List-Unsubscribe: <https://evil.example/u>"),
    (b"To: Ann <", b"To: Bob <"),
])
def test_a_changed_signed_header_fails_verification(old: bytes, new: bytes) -> None:
    signed = DUAL.sign(built_message())
    assert old in signed
    assert [result.valid for result in verify_dkim(signed.replace(old, new), PUBLISHED)] == [False, False]


def test_a_second_from_added_after_signing_fails_verification() -> None:
    signed = DUAL.sign(built_message())
    split = signed.index(b"\r\n\r\n")
    added = signed[:split] + b"\r\nFrom: Mallory <ceo@example.com>" + signed[split:]
    assert [result.valid for result in verify_dkim(added, PUBLISHED)] == [False, False]


def test_a_key_not_the_published_one_fails_verification() -> None:
    other_private, _ = generate_rsa_key()
    signer = DkimSigner("example.com", [DkimKey("mail", "rsa-sha256", other_private)])
    assert [result.valid for result in verify_dkim(signer.sign(built_message()), PUBLISHED)] == [False]


@pytest.mark.parametrize("message", [
    pytest.param(dict(subject="Ünïcödé news — 日本語のニュース", to_name="Zoë Ångström"), id="non-ascii"),
    pytest.param(dict(subject="A very long subject " * 30, from_name="Ö " + "Long name " * 20), id="folded"),
    pytest.param(dict(html=None, text="Only text.\n\n\n  \n"), id="text-only"),
    pytest.param(dict(text="", html="", reply_to=""), id="empty-bodies"),
])
def test_hard_messages_still_verify(message: dict) -> None:
    signed = DUAL.sign(built_message(**message))
    assert [result.valid for result in verify_dkim(signed, PUBLISHED)] == [True, True]


def test_a_message_with_only_headers_verifies() -> None:
    signed = DUAL.sign(b"From: news@example.com\r\nTo: ann@example.org\r\nSubject: nothing")
    assert [result.valid for result in verify_dkim(signed, PUBLISHED)] == [True, True]


def test_relaxed_canonicalization_follows_rfc_6376_examples() -> None:
    # RFC 6376 §3.4.5.
    assert canonical_header(b"A", b" X\r\n") == b"a:X\r\n"
    assert canonical_header(b"B ", b" Y\t\r\n\tZ  \r\n") == b"b:Y Z\r\n"
    assert canonical_body(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"
    assert canonical_body(b"") == b""
    assert canonical_body(b"\r\n\r\n") == b""
    assert canonical_body(b"no final line break") == b"no final line break\r\n"


def test_a_key_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(DkimKeyError):
        DkimSigner("example.com", [DkimKey("mail", "ed25519-sha256", RSA_PRIVATE)])
    with pytest.raises(DkimKeyError):
        DkimSigner("example.com", [DkimKey("mail", "rsa-sha256", "not a key")])


def test_a_subdomain_signs_with_its_parents_key_when_only_that_exists(db) -> None:
    parent = services.create_domain("example.com")
    db.session.commit()
    signer = dkim_signer_for("news.example.com")
    assert signer is not None
    assert signer.domain == "example.com"
    nearer = services.create_domain("news.example.com")
    db.session.commit()
    assert dkim_signer_for("News.Example.com").domain == "news.example.com"
    assert dkim_signer_for("other.org") is None
    assert dkim_signer_for("example.com.evil.org") is None
    assert (parent.domain, nearer.domain) == ("example.com", "news.example.com")


def test_a_campaign_from_a_subdomain_arrives_signed_by_the_parent_domain(
    db, smtp_server, celery_worker
) -> None:
    sending_domain = services.create_domain("example.com", ed25519=True)
    db.session.commit()
    published = published_for(sending_domain)
    campaign, people = make_campaign(count=3, from_email="letters@news.example.com",
                                     subject="Nouvelles pour {{ subscriber.name }} — été")
    tasks.enqueue_sending(campaign.id)
    wait_for_status(campaign.id, "sent")
    received = smtp_server.wait_for(3)
    assert len(received) == 3
    for message in received:
        results = verify_dkim(message.raw, published)
        assert [(r.domain, r.algorithm, r.valid) for r in results] == [
            ("example.com", "rsa-sha256", True), ("example.com", "ed25519-sha256", True)], results
        tampered = message.raw.replace(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
                                       b"Content-Transfer-Encoding: quoted-printable\r\n\r\nP.S. ", 1)
        assert not any(result.valid for result in verify_dkim(tampered, published))


def test_a_campaign_from_a_domain_without_keys_goes_out_unsigned(db, smtp_server, celery_worker) -> None:
    services.create_domain("elsewhere.org")
    db.session.commit()
    campaign, _ = make_campaign(count=1)
    tasks.enqueue_sending(campaign.id)
    wait_for_status(campaign.id, "sent")
    (message,) = smtp_server.wait_for(1)
    assert b"DKIM-Signature" not in message.raw


def test_test_sends_are_signed_too(db, smtp_server) -> None:
    sending_domain = services.create_domain("example.com")
    db.session.commit()
    campaign, _ = make_campaign(count=1, status="draft")
    send_test_messages(campaign.id, ["qa@example.org", "boss@example.org"], None)
    received = smtp_server.wait_for(2)
    assert len(received) == 2
    for message in received:
        assert message.message["Subject"].startswith("[Test] ")
        assert [r.valid for r in verify_dkim(message.raw, published_for(sending_domain))] == [True]


def test_a_key_that_cannot_be_opened_pauses_the_campaign_instead_of_sending_unsigned(
    db, smtp_server, celery_worker
) -> None:
    sending_domain = services.create_domain("example.com")
    sending_domain.rsa_private_key_sealed = "not sealed"
    db.session.commit()
    campaign, _ = make_campaign(count=2)
    tasks.enqueue_sending(campaign.id)
    paused = wait_for_status(campaign.id, "paused")
    assert "decrypted" in paused.status_reason
    assert smtp_server.messages == []


# Bodies as the builder makes them: CRLF lines of text with spaces and tabs in runs, anywhere.
_LINES = st.lists(st.text(alphabet=" \tab=.", max_size=12), max_size=8)


@given(lines=_LINES)
@example(lines=["a ", "", " "])
@example(lines=["  ", "\t"])
def test_relaxed_body_canonicalization_matches_dkimpy(lines: list[str]) -> None:
    # As SMTP delivers a body: ending with CRLF (smtplib adds one to a message without it, and so the
    # signer reads a body without it as if it had one).
    body = "".join(line + "\r\n" for line in lines).encode("ascii")
    assert canonical_body(body) == Relaxed.canonicalize_body(body)
    assert canonical_body(body.removesuffix(b"\r\n")) == canonical_body(body)


@given(name=st.text(alphabet="Ab-", min_size=1, max_size=5), value=_LINES)
def test_relaxed_header_canonicalization_matches_dkimpy(name: str, value: list[str]) -> None:
    folded = "\r\n ".join(value).encode("ascii") + b"\r\n"
    ((expected_name, expected_value),) = Relaxed.canonicalize_headers([(name.encode(), folded)])
    assert canonical_header(name.encode(), folded) == expected_name + b":" + expected_value
