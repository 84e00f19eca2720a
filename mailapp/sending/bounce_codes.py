"""What an SMTP reply or a DSN status says about the recipient's address: a hard bounce (the address
is gone), a soft bounce (it may work later), or nothing (a refusal of this message or this sender).

Enhanced status codes are RFC 3463's class.subject.detail (registry: RFC 5248); plain reply codes are
RFC 5321's. When a reply carries both ("550-5.1.1 The email account ... does not exist"), the
enhanced code decides, unless it is a vague one (X.0.0, X.5.0). No database, no Flask."""

from __future__ import annotations

import re

from mailapp.models.suppression import MailEventKind

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_BASIC = re.compile(r"^([245])\d\d$")
# An enhanced code near the start of a reply, after an optional basic code and continuation mark:
# "5.1.1 ...", "550 5.1.1 ...", "550-5.1.1 ...", "#5.1.1", "smtp; 550 5.1.1 ..." (DSN Diagnostic-Code).
_ENHANCED_IN_TEXT = re.compile(r"(?:^|[\s;#(-])([245]\.\d{1,3}\.\d{1,3})(?=$|[\s;:,.)\]-])")
_BASIC_IN_TEXT = re.compile(r"(?:^|[\s;])([245]\d\d)(?=$|[\s-])")
# Plain 5xx replies without an enhanced code that still refuse the sender or the message rather than
# the address (blocklists, spam filters, authentication): no bounce, so no suppression.
_POLICY_WORDS = re.compile(
    r"spam|block|blacklist|denylist|policy|reputation|dmarc|dkim|\bspf\b|rbl|spamhaus|abuse|"
    r"relay(?:ing)? (?:access )?denied|not permitted|rate limit|too many",
    re.IGNORECASE,
)


def classify(status_code: str, diagnostic: str = "") -> MailEventKind | None:
    """HARD_BOUNCE, SOFT_BOUNCE or None for a reply's code ("5.1.1", "550", or empty) and its text.

    - 5.1.x (bad mailbox, bad domain, bad syntax, moved, null MX), 5.2.1 (mailbox disabled) and
      5.4.4 (no such domain) are hard. 5.1.7 and 5.1.8 are about the *sender's* address: None.
    - 4.x.x, and 5.2.x (5.2.2 mailbox full), 5.3.x (the receiving system) and 5.4.x (routing) otherwise
      are soft. 5.2.3 (message too long) is about the message: None.
    - X.0.0 and X.5.0 are vague: the plain code decides.
    - 5.5.x (protocol), 5.6.x (content) and 5.7.x (policy: spam, DKIM/DMARC, Outlook's 5.7.515, a
      blocklisted sender) say nothing about the address: None (the delivery still fails).
    - Plain codes: 550, 551, 553 hard (unless the text speaks of policy or spam); 552 and 4xx soft;
      554 and anything else None."""
    code = (status_code or "").strip()
    text = (diagnostic or "").strip()
    basic = code if _BASIC.match(code) else ""
    enhanced = code if _ENHANCED.match(code) else ""
    if not enhanced:
        found = _ENHANCED_IN_TEXT.search(text[:200])
        if found and (not basic or found.group(1)[0] == basic[0]):
            enhanced = found.group(1)
    if not basic and not enhanced:
        found = _BASIC_IN_TEXT.search(text[:200])
        basic = found.group(1) if found else ""
    if enhanced:
        kind = _classify_enhanced(enhanced)
        if kind is not _VAGUE:
            return kind
        if not basic:
            return MailEventKind.SOFT_BOUNCE if enhanced[0] == "4" else None
    return _classify_basic(basic, text)


_VAGUE = object()  # an enhanced code too vague to decide alone (see _classify_enhanced)


def _classify_enhanced(code: str) -> MailEventKind | None | object:
    klass, subject, detail = (int(part) for part in _ENHANCED.match(code).groups())  # type: ignore[union-attr]
    if klass == 2:
        return None
    if detail == 0 and subject in (0, 5):
        # "Other or undefined" (X.0.0) and "other protocol status" (X.5.0, which many servers answer
        # for an unknown user at RCPT): vague, the basic code decides.
        return _VAGUE
    if klass == 4:
        return MailEventKind.SOFT_BOUNCE
    if subject == 1:
        return None if detail in (7, 8) else MailEventKind.HARD_BOUNCE
    if subject == 2:
        if detail == 1:
            return MailEventKind.HARD_BOUNCE
        return None if detail == 3 else MailEventKind.SOFT_BOUNCE
    if subject == 3:
        return MailEventKind.SOFT_BOUNCE
    if subject == 4:
        return MailEventKind.HARD_BOUNCE if detail == 4 else MailEventKind.SOFT_BOUNCE
    return None


def _classify_basic(code: str, text: str) -> MailEventKind | None:
    if not code:
        return None
    if code[0] == "4":
        return MailEventKind.SOFT_BOUNCE
    if code in ("550", "551", "553"):
        return None if _POLICY_WORDS.search(text) else MailEventKind.HARD_BOUNCE
    if code == "552":
        return MailEventKind.SOFT_BOUNCE
    return None


def enhanced_code(reply: str) -> str:
    """The enhanced status code a reply text starts with ("5.1.1"), or ""."""
    found = _ENHANCED_IN_TEXT.search((reply or "")[:200])
    return found.group(1) if found else ""
