"""MIME messages for campaigns: a fast builder that assembles each recipient's bytes from parts built
once per campaign, and the stdlib reference builder the tests prove it against.

Both produce multipart/alternative (text first, then HTML), quoted-printable bodies (no line over 76
bytes), RFC 2047 encoded words for non-ASCII header text, and refuse CR or LF in any header value."""

from __future__ import annotations

import binascii
import operator
import re
import secrets
from base64 import b64encode
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from mailapp.errors import MailappError


class SendError(MailappError):
    """A message that cannot be built or sent: a bad address, a header injection attempt, an SMTP
    failure on a test send."""

    status_code = 422
    code = "send_error"


class HeaderInjectionError(SendError):
    """CR or LF in a value headed for a header: refused rather than cleaned, so nothing is sent that the
    marketer did not write."""


# RFC 5322 atext plus space: a display name made only of these needs no quoting.
_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
# An encoded word's base64 text stays under 75 characters with the "=?utf-8?b?" wrapper.
_ENCODED_WORD_BYTES = 45
# Plain ASCII header values longer than this are sent as (folded) encoded words instead.
_PLAIN_HEADER_MAX = 900


def refuse_line_breaks(field: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(f"The {field} contains a line break, which is not allowed in a header.")
    return value


def encode_header_text(value: str) -> str:
    """Header text as is when it is plain printable ASCII, else as folded RFC 2047 encoded words."""
    if (
        _PRINTABLE_ASCII.fullmatch(value)
        and "=?" not in value
        and len(value) <= _PLAIN_HEADER_MAX
        and value == value.strip()
        and "  " not in value
    ):
        return value
    return _encoded_words(value)


def _encoded_words(value: str) -> str:
    raw = value.encode("utf-8")
    if len(raw) <= _ENCODED_WORD_BYTES:
        return f"=?utf-8?b?{b64encode(raw).decode('ascii')}?="
    words: list[str] = []
    chunk = bytearray()
    for character in value:
        encoded = character.encode("utf-8")
        if len(chunk) + len(encoded) > _ENCODED_WORD_BYTES:
            words.append(f"=?utf-8?b?{b64encode(bytes(chunk)).decode('ascii')}?=")
            chunk.clear()
        chunk += encoded
    if chunk:
        words.append(f"=?utf-8?b?{b64encode(bytes(chunk)).decode('ascii')}?=")
    return "\r\n ".join(words)


def ascii_address(field: str, address: str) -> str:
    """The address with an IDNA domain; a non-ASCII local part would need SMTPUTF8, which we do not
    use, so it is refused."""
    refuse_line_breaks(field, address)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise SendError(f"The {field} {address!r} is not an email address.")
    if not local.isascii() or any(c in local for c in ' <>()[],;:\\"'):
        raise SendError(f"The {field} {address!r} cannot be sent without SMTPUTF8.")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as error:
            raise SendError(f"The {field} {address!r} has an invalid domain.") from error
    return f"{local}@{domain}"


def format_address(field: str, name: str, address: str) -> str:
    """A From/To/Reply-To value: `Name <addr>`, quoted or encoded as the name needs."""
    refuse_line_breaks(field, name)
    address = ascii_address(field, address)
    name = name.strip()
    if not name:
        return address
    if len(name) > _PLAIN_HEADER_MAX or "=?" in name:
        return f"{_encoded_words(name)} <{address}>"
    if _ATOM_PHRASE.fullmatch(name) and "  " not in name:
        return f"{name} <{address}>"
    if _PRINTABLE_ASCII.fullmatch(name) and "=?" not in name and "  " not in name:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{address}>'
    return f"{_encoded_words(name)} <{address}>"


def message_id_suffix(domain: str) -> str:
    """What follows the delivery id in a Message-ID: a random tag, drawn once per send run, and the
    sending domain (not the worker's host name). Message-IDs are unique by the delivery id within a
    run and by the tag across runs (a retried delivery gets a new one), and the database rebuilds
    each one from the id alone when it marks a group of deliveries sent."""
    return f".{secrets.token_hex(8)}@{domain}>"


def make_message_id(delivery_id: int, suffix: str) -> str:
    return f"<{delivery_id}{suffix}"


def address_domain(address: str) -> str:
    return ascii_address("from address", address).rpartition("@")[2]


_date_cache: tuple[int, str] = (0, "")


def message_date(now: datetime | None = None) -> str:
    """The Date header, formatted once per second."""
    global _date_cache  # a one-entry cache shared by the builders of this process
    now = now or datetime.now(UTC)
    second = int(now.timestamp())
    if _date_cache[0] != second:
        _date_cache = (second, format_datetime(now.replace(microsecond=0)))
    return _date_cache[1]


def normalize_body(text: str) -> str:
    """LF line endings and a final newline, as the stdlib does for text parts."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


# Printable ASCII without "=" or white space, 2 to 75 characters long, comes out of quoted-printable
# as it went in (a lone "." would not, nor would a line past 76). Most per-recipient values are like
# that (tracking tokens), and skipping the encoder for them saves a quarter of a message's render.
_QP_UNCHANGED = re.compile(r"[!-<>-~]{2,75}")


def quoted_printable(text: str) -> bytes:
    """Text with LF line endings as quoted-printable with CRLF line endings (binascii, in C)."""
    if _QP_UNCHANGED.fullmatch(text):
        return text.encode("ascii")
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", b"\r\n")


class PrecodedBody:
    """A body made of literal text and per-recipient values, with the literal text quoted-printable
    encoded once. The pieces are joined with soft line breaks ("=" CRLF), which decoding removes, so
    each piece is encoded on its own and the decoded body is exactly literal + value + literal...

    `pieces` alternates literal text and value indexes, as re.split with one group returns them. It
    requires LF line endings and a body that ends with a literal newline."""

    def __init__(self, pieces: list[str | int]) -> None:
        literals = [quoted_printable(piece).replace(b"%", b"%%") for piece in pieces[0::2]]  # type: ignore[arg-type]
        slots: list[int] = pieces[1::2]  # type: ignore[assignment]
        # One bytes %-format for the whole body and an itemgetter to order the values: both run in C,
        # which matters with a few hundred tracked links in a layout.
        self._format = b"=\r\n%s=\r\n".join(literals)
        self._order = operator.itemgetter(*slots) if len(slots) > 1 else None
        self._slots = slots

    def encode(self, values: list[str]) -> bytes:
        encoded = [quoted_printable(value) for value in values]
        if self._order is not None:
            return self._format % self._order(encoded)
        return self._format % tuple(encoded[slot] for slot in self._slots)


@dataclass(frozen=True)
class Envelope:
    """What one recipient's message needs beyond the campaign's invariant parts. The bodies come as
    text, or already quoted-printable encoded (text_qp/html_qp, from a PrecodedBody)."""

    to_name: str
    to_email: str
    subject: str
    text: str | None
    html: str | None
    message_id: str
    date: str
    unsubscribe_url: str
    text_qp: bytes | None = None
    html_qp: bytes | None = None
    # With BOUNCE_DOMAIN: the recipient's unsubscribe+<token>@ address (sending/verp.py), offered after
    # the https URL for clients that only mail (RFC 2369; the URL stays first, RFC 8058).
    unsubscribe_mailto: str = ""


def _list_unsubscribe(envelope: Envelope) -> str:
    """The List-Unsubscribe value: the one-click URL, then the mailto address if there is one, on a
    folded line of its own."""
    refuse_line_breaks("unsubscribe URL", envelope.unsubscribe_url)
    if not envelope.unsubscribe_mailto:
        return f"<{envelope.unsubscribe_url}>"
    refuse_line_breaks("unsubscribe address", envelope.unsubscribe_mailto)
    return f"<{envelope.unsubscribe_url}>,\r\n <mailto:{envelope.unsubscribe_mailto}?subject=unsubscribe>"


class FastMessageBuilder:
    """Builds the campaign's invariant header block and part headers once; per recipient it only
    encodes the varying headers and quoted-printable encodes the two bodies (binascii, in C)."""

    def __init__(self, *, from_name: str, from_email: str, reply_to: str = "") -> None:
        self.sender = ascii_address("from address", from_email)
        lines = [f"From: {format_address('from name', from_name, from_email)}"]
        if reply_to:
            lines.append(f"Reply-To: {format_address('reply-to address', '', reply_to)}")
        lines += ["List-Unsubscribe-Post: List-Unsubscribe=One-Click", "MIME-Version: 1.0"]
        boundary = f"=_mailapp_{secrets.token_hex(12)}"
        lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        self._invariant = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        part = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        self._text_head = f"--{boundary}\r\n{part.format('plain')}".encode("ascii")
        self._html_head = f"\r\n--{boundary}\r\n{part.format('html')}".encode("ascii")
        self._tail = f"\r\n--{boundary}--\r\n".encode("ascii")

    def build(self, envelope: Envelope) -> bytes:
        refuse_line_breaks("subject", envelope.subject)
        headers = (
            f"To: {format_address('recipient name', envelope.to_name, envelope.to_email)}\r\n"
            f"Subject: {encode_header_text(envelope.subject)}\r\n"
            f"Date: {envelope.date}\r\n"
            f"Message-ID: {envelope.message_id}\r\n"
            f"List-Unsubscribe: {_list_unsubscribe(envelope)}\r\n"
        ).encode("ascii")
        text = envelope.text_qp or quoted_printable(normalize_body(envelope.text or ""))
        html = envelope.html_qp or quoted_printable(normalize_body(envelope.html or ""))
        # The text part ends with CRLF already; the HTML head starts with one more, as the boundary
        # delimiter's own line break (RFC 2046), so the decoded body keeps exactly one final newline.
        return b"".join(
            (headers, self._invariant, self._text_head, text, self._html_head, html, self._tail)
        )


def build_reference(
    *, from_name: str, from_email: str, reply_to: str, envelope: Envelope
) -> bytes:
    """The same message through the stdlib's EmailMessage: slow, and the yardstick for the fast one."""
    for field, value in (
        ("from name", from_name), ("subject", envelope.subject), ("recipient name", envelope.to_name),
        ("unsubscribe URL", envelope.unsubscribe_url), ("unsubscribe address", envelope.unsubscribe_mailto),
    ):
        refuse_line_breaks(field, value)
    message = EmailMessage(policy=SMTP)
    message["From"] = Address(display_name=from_name.strip(), addr_spec=ascii_address("from", from_email))
    if reply_to:
        message["Reply-To"] = Address(addr_spec=ascii_address("reply-to", reply_to))
    message["To"] = Address(
        display_name=envelope.to_name.strip(), addr_spec=ascii_address("to", envelope.to_email)
    )
    message["Subject"] = envelope.subject
    message["Date"] = envelope.date
    message["Message-ID"] = envelope.message_id
    mailto = envelope.unsubscribe_mailto
    message["List-Unsubscribe"] = f"<{envelope.unsubscribe_url}>" + (
        f", <mailto:{mailto}?subject=unsubscribe>" if mailto else ""
    )
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(normalize_body(envelope.text or ""), subtype="plain", cte="quoted-printable")
    message.add_alternative(normalize_body(envelope.html or ""), subtype="html", cte="quoted-printable")
    return message.as_bytes(policy=SMTP)
