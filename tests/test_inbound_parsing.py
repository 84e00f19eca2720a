"""Reading inbound messages: real and real-shaped bounces, complaints, delays and auto-replies, and
hostile messages that must be refused quickly without a crash. No database."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailapp.inbound.parsing import HostileMessage, Limits, read_message
from mailapp.models.suppression import MailEventKind
from mailapp.sending.verp import Verp

pytestmark = pytest.mark.backend_free

SAMPLES = Path(__file__).parent / "inbound_samples"
VERP = Verp("bounce.example.com", "test-secret-key")
LIMITS = Limits(max_bytes=10 * 1024 * 1024)


def read(name: str, envelope: list[str] | None = None):
    return read_message((SAMPLES / name).read_bytes(), envelope or [], VERP, LIMITS)


def test_postfixs_own_dsn_is_a_hard_bounce_of_its_delivery() -> None:
    """postfix_dsn.eml is what the test Postfix (tests/postfix.py) wrote for an `error:5.1.1` transport."""
    reading = read("postfix_dsn.eml")
    assert [(r.kind, r.email, r.source, r.status_code) for r in reading.reports] == [
        (MailEventKind.HARD_BOUNCE, "reader@unknown.test", "dsn", "5.1.1")
    ]
    assert reading.reports[0].diagnostic == "No such user here"
    assert reading.reports[0].occurred_at is not None
    assert reading.bounce_delivery_ids == [42]  # from To: (and the returned Return-Path)
    assert [entry[:2] for entry in reading.returned_message_ids] == [(42, "example.com")]
    assert reading.message_id.startswith("<")
    assert "postfix-test" in reading.message_id


def test_the_envelope_recipient_names_the_delivery_when_no_header_does() -> None:
    raw = (SAMPLES / "qmail_bounce.eml").read_bytes()
    reading = read_message(raw, [VERP.bounce_address(7)], VERP, LIMITS)
    assert reading.bounce_delivery_ids == [7]


def test_a_gmail_dsn_is_a_hard_bounce_with_the_whole_diagnostic() -> None:
    reading = read("gmail_dsn.eml")
    (report,) = reading.reports
    assert (report.kind, report.email, report.status_code) == (
        MailEventKind.HARD_BOUNCE, "no.such.person@gmail.com", "5.1.1"
    )
    assert report.diagnostic.startswith("550-5.1.1 The email account that you tried to reach does not exist")
    assert reading.bounce_delivery_ids == [42]
    assert [entry[:2] for entry in reading.returned_message_ids] == [(42, "example.com")]


def test_an_exim_bounce_is_read_by_its_failed_recipients_header() -> None:
    reading = read("exim_bounce.eml")
    assert [(r.kind, r.email, r.source) for r in reading.reports] == [
        (MailEventKind.HARD_BOUNCE, "gone@example.net", "bounce")
    ]
    assert "mail delivery software" in reading.reports[0].diagnostic


def test_a_qmail_bounce_is_read_from_its_text() -> None:
    reading = read("qmail_bounce.eml")
    assert [(r.kind, r.email) for r in reading.reports] == [
        (MailEventKind.HARD_BOUNCE, "nosuchuser@qmail.example.org")
    ]


def test_a_yahoo_arf_report_is_a_complaint_about_its_delivery() -> None:
    reading = read("yahoo_arf.eml", ["fbl@bounce.example.com"])
    assert [(r.kind, r.email, r.source) for r in reading.reports] == [
        (MailEventKind.COMPLAINT, "complainer@yahoo.com", "arf")
    ]
    assert reading.reports[0].occurred_at is not None
    assert reading.bounce_delivery_ids == [42]  # the returned original's Return-Path


def test_an_aol_arf_report_with_the_address_redacted_names_its_delivery_by_message_id() -> None:
    reading = read("aol_arf.eml", ["fbl@bounce.example.com"])
    assert [(r.kind, r.email) for r in reading.reports] == [(MailEventKind.COMPLAINT, "")]
    assert reading.bounce_delivery_ids == []
    assert [entry[:2] for entry in reading.returned_message_ids] == [(44, "example.com")]


def test_a_delayed_dsn_is_not_a_bounce() -> None:
    reading = read("delayed_dsn.eml")
    assert reading.reports == []
    assert "no failed recipient" in reading.ignored


def test_an_out_of_office_reply_is_not_a_bounce() -> None:
    reading = read("out_of_office.eml")
    assert reading.reports == []
    assert "auto-reply" in reading.ignored


def test_a_mail_to_the_unsubscribe_address_names_its_delivery_and_reports_nothing() -> None:
    raw = b"From: reader@example.org\r\nTo: someone\r\nSubject: unsubscribe\r\n\r\n"
    reading = read_message(raw, [VERP.addresses(9).unsubscribe], VERP, LIMITS)
    assert reading.unsubscribe_delivery_ids == [9]
    assert reading.reports == []


def test_not_spam_feedback_is_not_a_complaint() -> None:
    raw = (SAMPLES / "yahoo_arf.eml").read_bytes()
    raw = raw.replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    assert read_message(raw, [], VERP, LIMITS).reports == []


def test_a_forged_token_in_a_bounce_names_no_delivery() -> None:
    token = b"aaaaaaaaaaacuiedmsfjai2pyhcxa"
    raw = (SAMPLES / "postfix_dsn.eml").read_bytes().replace(token, token[:-1] + b"b")
    reading = read_message(raw, [], VERP, LIMITS)
    assert reading.bounce_delivery_ids == []
    assert [r.email for r in reading.reports] == ["reader@unknown.test"]  # the address alone remains


def _assert_refused_quickly(raw: bytes, why: str) -> None:
    started = time.monotonic()
    with pytest.raises(HostileMessage, match=why):
        read_message(raw, [], VERP, LIMITS)
    assert time.monotonic() - started < 2


def test_ten_thousand_parts_are_refused_before_parsing() -> None:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(10_000))
    _assert_refused_quickly(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n",
                            "boundary lines")


def test_deep_nesting_is_refused_before_the_parser_recurses() -> None:
    nested = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
        for level in range(5000)
    )
    _assert_refused_quickly(nested, "multipart declarations")


def test_a_message_over_the_size_limit_is_refused() -> None:
    small = Limits(max_bytes=1000)
    with pytest.raises(HostileMessage, match="INBOUND_MAX_BYTES"):
        read_message(b"Subject: x\r\n\r\n" + b"a" * 2000, [], VERP, small)


def test_huge_headers_are_read_in_bounded_time_and_find_nothing() -> None:
    raw = (
        b"Subject: " + b"a " * 2_000_000 + b"\r\nTo: " + b"x" * 1_000_000 + b"@bounce.example.com\r\n"
        b"Auto-Submitted: " + b"b" * 1_000_000 + b"\r\n\r\nbody\r\n"
    )
    started = time.monotonic()
    reading = read_message(raw, [], VERP, LIMITS)
    assert time.monotonic() - started < 5
    assert reading.reports == []
    assert reading.bounce_delivery_ids == []


def test_a_malformed_report_finds_nothing_and_does_not_crash() -> None:
    raw = (
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=z\r\n\r\n"
        b"--z\r\nContent-Type: message/delivery-status\r\n\r\nAction failed\r\n\x00\xff garbage\r\n"
        b"--z\r\nContent-Type: message/rfc822\r\n\r\n--z--\r\n"
    )
    reading = read_message(raw, [], VERP, LIMITS)
    assert reading.reports == []
