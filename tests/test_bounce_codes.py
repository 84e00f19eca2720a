"""bounce_codes.classify against real-world SMTP replies and DSN status codes: what each says about
the recipient's address (RFC 3463 enhanced codes, RFC 5321 plain codes)."""

from __future__ import annotations

import pytest

from mailapp.models import MailEventKind
from mailapp.sending.bounce_codes import classify, enhanced_code

pytestmark = pytest.mark.backend_free

HARD, SOFT = MailEventKind.HARD_BOUNCE, MailEventKind.SOFT_BOUNCE

REAL_REPLIES = [
    # (status code as the source gives it, reply or diagnostic text, expected)
    ("550", "5.1.1 The email account that you tried to reach does not exist. Please try double-checking "
     "the recipient's email address for typos or unnecessary spaces. https://support.google.com/mail/?p="
     "NoSuchUser", HARD),  # Gmail
    ("", "550-5.1.1 The email account that you tried to reach does not exist.", HARD),  # Gmail, one line
    ("550", "5.5.0 Requested action not taken: mailbox unavailable", HARD),  # X.5.0 is vague: 550 decides
    ("554", "5.5.1 Error: no valid recipients", None),
    ("550", "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", HARD),
    ("550", "5.7.515 Access denied, sending domain example.com doesn't meet the required authentication "
     "level.", None),  # Outlook's 2025 sender requirements
    ("550", "5.7.1 Service unavailable, Client host [192.0.2.1] blocked using Spamhaus", None),
    ("421", "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user "
     "complaints", SOFT),  # Yahoo
    ("452", "4.2.2 The email account that you tried to reach is over quota.", SOFT),  # Gmail, mailbox full
    ("552", "5.2.2 The email account that you tried to reach is over quota.", SOFT),
    ("550", "5.2.1 The email account that you tried to reach is disabled.", HARD),  # Gmail
    ("554", "5.2.1 Mailbox disabled for this recipient", HARD),  # Yahoo: the enhanced code decides
    ("550", "5.4.4 Unable to route: no such domain", HARD),
    ("554", "5.4.14 Hop count exceeded - possible mail loop", SOFT),
    ("553", "5.3.0 Mail system full", SOFT),
    ("552", "5.2.3 Message size exceeds fixed maximum message size", None),
    ("553", "5.1.7 The sender address is invalid", None),  # the sender's address, not the recipient's
    ("554", "5.7.1 Message rejected as spam by Content Filtering.", None),
    ("554", "Transaction failed: message rejected", None),
    ("550", "Requested action not taken: mailbox unavailable", HARD),  # plain 550
    ("550", "Mailbox does not exist", HARD),
    ("551", "User not local; please try <forward@example.org>", HARD),
    ("553", "sorry, that domain isn't in my list of allowed rcpthosts", HARD),
    ("550", "Blocked - see https://www.spamcop.net/bl.shtml?192.0.2.1", None),  # a blocklist, plain code
    ("550", "Rejected by header based Anti-Spoofing policy", None),
    ("552", "Requested mail action aborted: exceeded storage allocation", SOFT),
    ("451", "Temporary local problem - please try later", SOFT),
    ("550", "5.0.0 Requested action not taken: mailbox unavailable", HARD),  # X.0.0: the 550 decides
    ("554", "5.0.0 Service unavailable", None),
    ("5.1.1", "", HARD),  # a DSN's Status field alone
    ("5.1.2", "smtp; 550 5.1.2 Host unknown", HARD),
    ("4.4.7", "delivery time expired", SOFT),
    ("5.7.26", "Unauthenticated email from example.com is not accepted due to domain's DMARC policy", None),
    ("2.0.0", "OK", None),
    ("", "", None),
    ("", "smtp; 550 5.1.1 <nobody@example.com>... User unknown", HARD),  # a DSN Diagnostic-Code
    ("", "#5.1.1 SMTP; 550 Requested action not taken: mailbox unavailable", HARD),  # Exchange NDR
    ("250", "2.1.5 Ok", None),
    ("999", "nonsense", None),
    ("not a code", "nor is this", None),
]


@pytest.mark.parametrize(("status_code", "diagnostic", "expected"), REAL_REPLIES)
def test_each_real_reply_is_classified_by_what_it_says_about_the_address(
    status_code: str, diagnostic: str, expected: MailEventKind | None
) -> None:
    assert classify(status_code, diagnostic) == expected


def test_an_enhanced_code_of_another_class_than_the_reply_code_is_ignored() -> None:
    # RFC 3463 §2: the class of the enhanced code must agree with the reply's; a 5xx saying 4.x.x is
    # read by its basic code.
    assert classify("550", "4.2.2 mailbox full") == HARD


def test_the_enhanced_code_is_taken_from_the_start_of_a_reply() -> None:
    assert enhanced_code("5.1.1 No such user") == "5.1.1"
    assert enhanced_code("550-5.7.515 Access denied") == "5.7.515"
    assert enhanced_code("No such user here") == ""
