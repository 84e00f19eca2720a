"""Reading one inbound message: what it says about which recipients. No database, no Flask.

- RFC 3464 delivery status notifications (multipart/report; report-type=delivery-status): one report
  per recipient whose Action is "failed", hard or soft by its Status and Diagnostic-Code
  (bounce_codes.classify). "delayed", "delivered", "relayed" and "expanded" are not bounces.
- RFC 5965 ARF complaints (multipart/report; report-type=feedback-report): Feedback-Type abuse,
  fraud, virus or other is a complaint; not-spam and auth-failure are not.
- Anything else that is not an auto-reply: the non-standard bounce formats flufl.bounce knows (Exim's
  X-Failed-Recipients, qmail's QSBMF, Postfix, Yahoo, ...), permanent failures only: its "temporary"
  ones are delay warnings.
- Auto-replies (RFC 3834 Auto-Submitted: auto-replied, X-Autoreply, Precedence: auto_reply, ...) are
  nothing, unless they carry X-Failed-Recipients (Exim's bounces call themselves auto-replied).

What names the delivery, collected for services.py to check against the database: VERP tokens in the
envelope recipients or in To / X-Original-To / Delivered-To (and, in a returned original, its
Return-Path and List-Unsubscribe), and our Message-ID `<{delivery id}.{16 hex}@{domain}>` in the
returned original.

Every message is hostile until read: larger than max_bytes, more than MAX_MULTIPARTS multipart
declarations (which also bounds nesting: the stdlib parser recurses per level) or MAX_BOUNDARY_LINES
boundary-like lines is refused before parsing; header values are read only up to HEADER_READ_CHARS;
the heuristics only look at messages up to HEURISTICS_MAX_BYTES; and each step checks a deadline."""

from __future__ import annotations

import email
import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

from flufl.bounce import scan_message

from mailapp.models.suppression import MailEventKind
from mailapp.sending.bounce_codes import classify
from mailapp.sending.verp import Verp

# A real DSN or ARF report has 2 or 3 levels of multipart (the report, and the returned newsletter's
# multipart/alternative); 16 leaves room for forwarded reports and stays far from the stdlib parser's
# recursion limit.
MAX_MULTIPARTS = 16
# Lines starting with "--": boundaries, plus signature separators and the like. A report has a dozen.
MAX_BOUNDARY_LINES = 1000
HEADER_READ_CHARS = 2000
HEURISTICS_MAX_BYTES = 2 * 1024 * 1024
PARSE_SECONDS = 5.0
# A DSN with more recipient blocks than this is not about one of our single-recipient messages.
MAX_RECIPIENTS = 100

_OUR_MESSAGE_ID = re.compile(r"<(\d{1,19})\.[0-9a-f]{16}@([A-Za-z0-9.-]{1,253})>")
_ADDRESS_TYPE = re.compile(r"^\s*[A-Za-z0-9-]+\s*;\s*")
_COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", "other"})
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-response-suppress")


class HostileMessage(ValueError):  # reads as what the message is
    """A message refused before or while reading it: too large, too many parts, too deep, too slow."""


@dataclass(frozen=True)
class Report:
    """One recipient's bounce or complaint, as the message states it."""

    kind: MailEventKind
    email: str  # the failed or complaining address; "" when the report hides it (redacted ARF)
    source: str  # "dsn", "arf" or "bounce" (a non-standard format)
    status_code: str = ""
    diagnostic: str = ""
    occurred_at: datetime | None = None


@dataclass
class Reading:
    """What one inbound message says, and the clues to the delivery it is about."""

    message_id: str  # the inbound message's own Message-ID, or a hash of it: the dedupe key's base
    reports: list[Report] = field(default_factory=list)
    bounce_delivery_ids: list[int] = field(default_factory=list)  # from valid bounces+ tokens
    unsubscribe_delivery_ids: list[int] = field(default_factory=list)  # mail to unsubscribe+ addresses
    # (delivery id, domain) from our Message-IDs in the returned original, to check in the database.
    returned_message_ids: list[tuple[int, str, str]] = field(default_factory=list)
    ignored: str = ""  # why nothing was found, for the log


@dataclass(frozen=True)
class Limits:
    max_bytes: int  # INBOUND_MAX_BYTES
    seconds: float = PARSE_SECONDS


def read_message(
    raw: bytes, envelope_recipients: list[str], verp: Verp | None, limits: Limits
) -> Reading:
    """What the message says. HostileMessage when it is refused (the caller logs and drops it)."""
    deadline = time.monotonic() + limits.seconds
    _check_shape(raw, limits.max_bytes)
    message = email.message_from_bytes(raw, policy=compat32)
    _check_time(deadline)
    reading = Reading(message_id=_own_message_id(message, raw))
    addressed_to = list(envelope_recipients) + _header_addresses(
        message, ("to", "x-original-to", "delivered-to")
    )
    if verp is not None:
        for address in addressed_to:
            found = verp.read(address)
            if found is None:
                continue
            kind, delivery_id = found
            ids = reading.bounce_delivery_ids if kind == "bounces" else reading.unsubscribe_delivery_ids
            if delivery_id not in ids:
                ids.append(delivery_id)
    if reading.unsubscribe_delivery_ids and not reading.bounce_delivery_ids:
        return reading  # a mail to the mailto unsubscribe address: whatever it says, it unsubscribes
    report_type = _report_type(message)
    if report_type == "delivery-status":
        reading.reports = _dsn_reports(message, deadline)
    elif report_type == "feedback-report":
        reading.reports = _arf_reports(message)
    elif _is_auto_reply(message):
        reading.ignored = "an auto-reply (out of office or similar), not a bounce"
        return reading
    elif len(raw) > HEURISTICS_MAX_BYTES:
        reading.ignored = f"not a report, and too large ({len(raw):,} bytes) for the bounce heuristics"
        return reading
    else:
        reading.reports = _heuristic_reports(message)
    _check_time(deadline)
    original = _returned_original(message)
    if original is not None:
        _read_original(original, verp, reading)
    if not reading.reports and not reading.ignored:
        reading.ignored = (
            f"a {report_type} report with no failed recipient" if report_type else "no bounce found"
        )
    return reading


# --- bounds --------------------------------------------------------------------------------------------


def _check_shape(raw: bytes, max_bytes: int) -> None:
    if len(raw) > max_bytes:
        raise HostileMessage(f"{len(raw):,} bytes, over INBOUND_MAX_BYTES ({max_bytes:,})")
    multiparts = raw.lower().count(b"multipart/")
    if multiparts > MAX_MULTIPARTS:
        raise HostileMessage(f"{multiparts:,} multipart declarations (at most {MAX_MULTIPARTS})")
    boundary_lines = raw.count(b"\n--") + raw.startswith(b"--")
    if boundary_lines > MAX_BOUNDARY_LINES:
        raise HostileMessage(f"{boundary_lines:,} MIME boundary lines (at most {MAX_BOUNDARY_LINES})")


def _check_time(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise HostileMessage(f"reading it took longer than {PARSE_SECONDS:g} s")


# --- headers -------------------------------------------------------------------------------------------


def _header(message: Message, name: str) -> str:
    """A header's text, bounded, unfolded, as str whatever bytes it held."""
    value = message.get(name)
    if value is None:
        return ""
    text = str(value)[:HEADER_READ_CHARS]
    return " ".join(text.split())


def _header_addresses(message: Message, names: tuple[str, ...]) -> list[str]:
    values = [
        str(value)[:HEADER_READ_CHARS] for name in names for value in (message.get_all(name) or [])[:20]
    ]
    return [address for _, address in getaddresses(values) if address]


def _own_message_id(message: Message, raw: bytes) -> str:
    message_id = _header(message, "message-id")[:300]
    return message_id or "sha256:" + hashlib.sha256(raw).hexdigest()


def _report_type(message: Message) -> str:
    if message.get_content_type() != "multipart/report":
        return ""
    return str(message.get_param("report-type", "") or "")[:40].strip().lower()


def _is_auto_reply(message: Message) -> bool:
    if message.get("x-failed-recipients") is not None:
        return False
    auto_submitted = _header(message, "auto-submitted").lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return True
    if _header(message, "precedence").lower() in {"auto_reply", "auto-reply"}:
        return True
    return any(message.get(name) is not None for name in _AUTO_REPLY_HEADERS)


def _parts(message: Message) -> list[Message]:
    """The report's top-level parts (not recursive: the report's own parts are all we read)."""
    payload = message.get_payload()
    return [part for part in payload if isinstance(part, Message)] if isinstance(payload, list) else []


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else None


def _typed_address(value: str) -> str:
    """`rfc822; user@example.com` -> user@example.com; other address types -> ""."""
    match = _ADDRESS_TYPE.match(value)
    if match is None:
        return value.strip().strip("<>") if "@" in value else ""
    if not match.group(0).strip().lower().startswith("rfc822"):
        return ""
    return value[match.end():].strip().strip("<>")


# --- DSN (RFC 3464) --------------------------------------------------------------------------------------


def _dsn_reports(message: Message, deadline: float) -> list[Report]:
    status_part = next(
        (part for part in _parts(message) if part.get_content_type() == "message/delivery-status"), None
    )
    if status_part is None:
        return []
    blocks = status_part.get_payload()
    if not isinstance(blocks, list) or not blocks:
        return []
    per_message, recipients = blocks[0], blocks[1 : 1 + MAX_RECIPIENTS]
    arrived = _date(_header(per_message, "arrival-date"))
    reports = []
    for block in recipients:
        _check_time(deadline)
        if not isinstance(block, Message) or _header(block, "action").lower() != "failed":
            continue
        address = _typed_address(_header(block, "original-recipient")) or _typed_address(
            _header(block, "final-recipient")
        )
        status = _header(block, "status").split(" ")[0][:20]
        diagnostic = _typed_diagnostic(_header(block, "diagnostic-code"))
        kind = classify(status, diagnostic)
        if kind is None or not address:
            continue
        occurred = _date(_header(block, "last-attempt-date")) or arrived
        reports.append(Report(kind, address, "dsn", status, diagnostic, occurred))
    return reports


def _typed_diagnostic(value: str) -> str:
    """`smtp; 550 5.1.1 ...` -> `550 5.1.1 ...`."""
    kind, semicolon, text = value.partition(";")
    return text.strip() if semicolon and " " not in kind.strip() else value


# --- ARF (RFC 5965) --------------------------------------------------------------------------------------


def _arf_reports(message: Message) -> list[Report]:
    feedback = next(
        (part for part in _parts(message) if part.get_content_type() == "message/feedback-report"), None
    )
    if feedback is None:
        return []
    fields = _feedback_fields(feedback)
    feedback_type = _header(fields, "feedback-type").lower()
    if feedback_type not in _COMPLAINT_TYPES:
        return []
    original = _returned_original(message)
    addresses = _header_addresses(fields, ("original-rcpt-to",))
    if not addresses and original is not None:
        addresses = _header_addresses(original, ("to",))[:1]
    # Providers that hide the complainer (AOL) put this placeholder where the address was.
    redacted = {address.lower() for address in _header_addresses(fields, ("redacted-address",))}
    addresses = [address for address in addresses if address.lower() not in redacted]
    occurred = _date(_header(fields, "arrival-date")) or _date(_header(fields, "received-date"))
    return [
        Report(MailEventKind.COMPLAINT, address, "arf", "", f"ARF {feedback_type}", occurred)
        for address in (addresses or [""])[:MAX_RECIPIENTS]
    ]


def _feedback_fields(part: Message) -> Message:
    """The feedback report's fields as a header block: the stdlib parses message/* parts as a message
    (the fields its headers), or leaves the text when the part is not well formed."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return email.message_from_string(str(payload or "")[:65536], policy=compat32)


# --- non-standard bounces ----------------------------------------------------------------------------------


def _heuristic_reports(message: Message) -> list[Report]:
    try:
        failed = scan_message(message)
    except Exception:  # a third-party heuristic on hostile input: a bug there is no bounce here
        return []
    diagnostic = _first_text(message)
    return [
        Report(MailEventKind.HARD_BOUNCE, address.decode("ascii", "replace"), "bounce", "", diagnostic)
        for address in sorted(failed)[:MAX_RECIPIENTS]
    ]


def _first_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True) or b""
            return " ".join(payload[:1000].decode("utf-8", "replace").split())[:500]
    return ""


# --- the returned original ---------------------------------------------------------------------------------


def _returned_original(message: Message) -> Message | None:
    """The message the report is about: a message/rfc822 part, or text/rfc822-headers (headers only)."""
    for part in _parts(message)[1:]:
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if content_type == "text/rfc822-headers":
            text = part.get_payload(decode=True) or b""
            return email.message_from_bytes(text[:262144], policy=compat32)
    return None


def _read_original(original: Message, verp: Verp | None, reading: Reading) -> None:
    match = _OUR_MESSAGE_ID.search(_header(original, "message-id"))
    if match is not None:
        reading.returned_message_ids.append((int(match.group(1)), match.group(2).lower(), match.group(0)))
    if verp is None or reading.bounce_delivery_ids:
        return
    clues = _header_addresses(original, ("return-path",)) + [
        address.removeprefix("mailto:").partition("?")[0]
        for address in re.findall(r"<([^>]{1,400})>", _header(original, "list-unsubscribe"))
    ]
    for address in clues:
        found = verp.read(address)
        if found is not None and found[1] not in reading.bounce_delivery_ids:
            reading.bounce_delivery_ids.append(found[1])
