"""MIME messages for campaigns: a fast builder that assembles each recipient's bytes from parts built
once per campaign, and the stdlib reference builder the tests prove it against.

Both produce multipart/alternative (text first, then HTML), quoted-printable bodies (no line over 76
bytes), RFC 2047 encoded words for non-ASCII header text, and refuse CR or LF in any header value.

Header lines stay within 78 characters (RFC 5322 section 2.1.1's SHOULD): plain text is folded at its
spaces, and text that cannot be (non-ASCII, double spaces, a word too long to fit) becomes encoded
words of at most 75 characters, one per line, so that a line holding one stays within RFC 2047's 76.
Only a value that cannot be folded at all (a long URL or address) makes a longer line.

Bulk mail carries the headers inbox providers ask for: List-Id (RFC 2919) names the list the message
was sent to, Feedback-ID (Gmail's feedback loop) the campaign, list and sender, and `Precedence: bulk`
keeps vacation responders quiet."""

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
# 39 bytes are 52 base64 characters, a 64-character encoded word with the "=?utf-8?b?" wrapper: after
# the longest header name that carries one ("Subject: ", "List-Id: ") the line is 73 characters, within
# RFC 2047's 76 for lines with encoded words.
_ENCODED_WORD_BYTES = 39
# Plain ASCII header values longer than this are sent as (folded) encoded words instead.
_PLAIN_HEADER_MAX = 900
_LINE_MAX = 78  # RFC 5322 section 2.1.1
_ENCODED_LINE_MAX = 76  # RFC 2047 section 2


def refuse_line_breaks(field: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(f"The {field} contains a line break, which is not allowed in a header.")
    return value


def fold_at_spaces(line: str) -> str | None:
    """A header line ("Name: value") folded before spaces so that no line is over 78 characters, or
    None when some run without a space is too long. Unfolding (removing each CRLF) gives the line back;
    the space right after the colon is never a fold point."""
    if len(line) <= _LINE_MAX:
        return line
    name, colon, value = line.partition(": ")
    words = value.split(" ")
    lines: list[str] = []
    current = name + colon + words[0]
    for word in words[1:]:
        if len(current) + 1 + len(word) <= _LINE_MAX:
            current += " " + word
        else:
            lines.append(current)
            current = " " + word
    lines.append(current)
    if any(len(folded) > _LINE_MAX for folded in lines):
        return None
    return "\r\n".join(lines)


def _is_plain_text(value: str) -> bool:
    return bool(
        _PRINTABLE_ASCII.fullmatch(value)
        and "=?" not in value
        and len(value) <= _PLAIN_HEADER_MAX
        and value == value.strip()
        and "  " not in value
    )


def header_line(name: str, value: str) -> str:
    """`Name: value` for unstructured text (Subject): plain printable ASCII folded at its spaces, else
    RFC 2047 encoded words, one per line."""
    if _is_plain_text(value):
        folded = fold_at_spaces(f"{name}: {value}")
        if folded is not None:
            return folded
    return f"{name}: {_encoded_words(value)}"


def _encoded_words(value: str) -> str:
    """The value as base64 encoded words of at most 64 characters, joined by folds."""
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


def _plain_phrase(name: str) -> str | None:
    """The display name as an atom phrase or a quoted string, or None when it needs encoding."""
    if len(name) > _PLAIN_HEADER_MAX or "=?" in name or "  " in name:
        return None
    if _ATOM_PHRASE.fullmatch(name):
        return name
    if _PRINTABLE_ASCII.fullmatch(name):
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}"'
    return None


def named_header_line(field: str, header: str, name: str, angle_text: str) -> str:
    """`Header: Name <angle_text>` (an address, or a List-Id's identifier), folded: a plain name at its
    spaces (FWS may stand between the words of a phrase and inside a quoted string), an encoded one
    word per line, with `<...>` on a line of its own when it does not fit after the name."""
    refuse_line_breaks(field, name)
    name = name.strip()
    if not name:
        return f"{header}: <{angle_text}>" if header == "List-Id" else f"{header}: {angle_text}"
    phrase = _plain_phrase(name)
    if phrase is not None:
        folded = fold_at_spaces(f"{header}: {phrase} <{angle_text}>")
        if folded is not None:
            return folded
    words = _encoded_words(name)
    last_line = words.rpartition("\r\n")[2] if "\r\n" in words else f"{header}: {words}"
    separator = " " if len(last_line) + 2 + len(angle_text) + 1 <= _ENCODED_LINE_MAX else "\r\n "
    return f"{header}: {words}{separator}<{angle_text}>"


_DNS_NAME = re.compile(r"(?=.*[a-z])[a-z0-9-]+(\.[a-z0-9-]+)*", re.ASCII)


@dataclass(frozen=True)
class ListIdentity:
    """The list a campaign's messages name in List-Id and Feedback-ID (see compose.py for which one).

    RFC 2919 wants an identifier that stays the same for the list's whole life, whoever sends to it,
    so its namespace is the installation's host (PUBLIC_URL) rather than the campaign's From domain;
    an IP address or a name that is not a DNS name gets RFC 2919's "localhost" namespace."""

    id: int
    name: str
    host: str

    @property
    def identifier(self) -> str:
        host = self.host.lower().rstrip(".")
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                host = "localhost"
        if not _DNS_NAME.fullmatch(host):
            host = "localhost"
        return f"list-{self.id}.{host}"


def feedback_id(campaign_id: int, list_id: int | None, sender_domain: str) -> str:
    """Gmail's Feedback-ID: up to four colon-separated identifiers, the last one the sender's. Gmail
    reports complaint rates per value of each field, so these are the campaign, the list (0 when the
    campaign has none) and the From domain (one installation can send for several)."""
    return f"{campaign_id}:{list_id or 0}:{sender_domain}:mailapp"


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


def bulk_header_lines(list_identity: ListIdentity | None, feedback: str) -> list[str]:
    """List-Id, Precedence and Feedback-ID: the same for every message of a campaign."""
    lines = []
    if list_identity is not None:
        lines.append(named_header_line("list name", "List-Id", list_identity.name, list_identity.identifier))
    # Not a standard field (RFC 2076 calls it non-standard), but vacation responders (RFC 3834
    # mentions it) and filters still go by it.
    lines.append("Precedence: bulk")
    if feedback:
        lines.append(f"Feedback-ID: {refuse_line_breaks('feedback ID', feedback)}")
    return lines


class FastMessageBuilder:
    """Builds the campaign's invariant header block and part headers once; per recipient it only
    encodes the varying headers and quoted-printable encodes the two bodies (binascii, in C)."""

    def __init__(
        self, *, from_name: str, from_email: str, reply_to: str = "",
        list_identity: ListIdentity | None = None, feedback: str = "",
    ) -> None:
        self.sender = ascii_address("from address", from_email)
        lines = [named_header_line("from name", "From", from_name, self.sender)]
        if reply_to:
            lines.append(f"Reply-To: {ascii_address('reply-to address', reply_to)}")
        lines += bulk_header_lines(list_identity, feedback)
        lines += ["List-Unsubscribe-Post: List-Unsubscribe=One-Click", "MIME-Version: 1.0"]
        boundary = f"=_mailapp_{secrets.token_hex(12)}"
        lines.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"')
        self._invariant = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        part = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        self._text_head = f"--{boundary}\r\n{part.format('plain')}".encode("ascii")
        self._html_head = f"\r\n--{boundary}\r\n{part.format('html')}".encode("ascii")
        self._tail = f"\r\n--{boundary}--\r\n".encode("ascii")

    def build(self, envelope: Envelope) -> bytes:
        refuse_line_breaks("subject", envelope.subject)
        to = ascii_address("recipient address", envelope.to_email)
        headers = (
            f"{named_header_line('recipient name', 'To', envelope.to_name, to)}\r\n"
            f"{header_line('Subject', envelope.subject)}\r\n"
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
    *, from_name: str, from_email: str, reply_to: str, envelope: Envelope,
    list_identity: ListIdentity | None = None, feedback: str = "",
) -> bytes:
    """The same message through the stdlib's EmailMessage: slow, and the yardstick for the fast one."""
    for field, value in (
        ("from name", from_name), ("subject", envelope.subject), ("recipient name", envelope.to_name),
        ("unsubscribe URL", envelope.unsubscribe_url), ("unsubscribe address", envelope.unsubscribe_mailto),
        ("feedback ID", feedback), ("list name", list_identity.name if list_identity else ""),
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
    message["Precedence"] = "bulk"
    if feedback:
        message["Feedback-ID"] = feedback
    message.set_content(normalize_body(envelope.text or ""), subtype="plain", cte="quoted-printable")
    message.add_alternative(normalize_body(envelope.html or ""), subtype="html", cte="quoted-printable")
    raw = message.as_bytes(policy=SMTP)
    if list_identity is None:
        return raw
    # The stdlib has no List-Id type, and refolding it as unstructured text breaks encoded words (it
    # writes "d'=?utf-8?...", which is no encoded word). The phrase follows a display name's rules, so
    # the line is the stdlib's own folding of the name as an address's, spliced into the header block.
    name, identifier = list_identity.name.strip(), list_identity.identifier
    listed = f"List-Id: <{identifier}>\r\n"
    if name:
        named = EmailMessage(policy=SMTP)
        named["To"] = Address(display_name=name, username="list", domain=identifier)
        listed = "List-Id:" + named["To"].fold(policy=SMTP).partition(":")[2].replace(
            f"<list@{identifier}>", f"<{identifier}>"
        )
    head, _, body = raw.partition(b"\r\n\r\n")
    return head + b"\r\n" + listed.encode("ascii") + b"\r\n" + body
