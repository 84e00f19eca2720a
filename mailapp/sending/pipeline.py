"""SMTP submission of single-recipient messages over one open connection, pipelined (ESMTP PIPELINING,
RFC 2920) when the server offers it, several messages in flight at once when it offers CHUNKING too
(RFC 3030).

smtplib's sendmail() waits for a reply after each of MAIL FROM, RCPT TO, DATA and the message: four
round trips a message, plus address parsing and a regex pass over every message. Here, with
PIPELINING, the next message's envelope (MAIL FROM, RCPT TO, DATA) goes out in the same write as the
current message's content, so a message costs one round trip. Without PIPELINING each command waits
for its reply, as RFC 5321 requires.

DATA needs its 354 before the content may follow, so it allows one message in flight. BDAT does not:
with PIPELINING and CHUNKING each message is RSET, MAIL FROM, RCPT TO, `BDAT <size> LAST` and the
content as it is (no dot-stuffing), written without waiting, up to `window` messages ahead of their
replies; on a relay 20 ms away a connection then carries up to `window` messages per round trip
instead of one. The cost: when the connection breaks, every message of the window whose content went
out may have been taken (ConnectionLost.in_doubt). A window of 1 keeps DATA, whose envelope already
rides along with the previous content.

The connection itself (connect, EHLO, STARTTLS, AUTH) stays Flask-Mail's smtplib.SMTP: this module
only writes to its socket and reads replies through its getreply()."""

from __future__ import annotations

import contextlib
import smtplib
import socket
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

_CRLF = b"\r\n"
_DATA_END = b".\r\n"


@dataclass(frozen=True)
class Outgoing:
    """One message: `key` is the caller's handle for it; the addresses are ASCII and already checked
    (ascii_address); `data` has CRLF line endings."""

    key: Any
    mail_from: str
    rcpt_to: str
    data: bytes


@dataclass(frozen=True)
class Submitted:
    """The server's last word on a message: 250 (or any 2xx) after the data when it took it; otherwise
    the first refusal, from MAIL FROM, RCPT TO, DATA or the data."""

    message: Outgoing
    code: int
    reply: str

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300


@dataclass
class ConnectionLost(Exception):  # reads as the condition it reports
    """The connection broke. `in_doubt`: the messages whose content was sent whole with no reply, which
    the server may or may not have taken: at most one with DATA, at most the window with BDAT.
    `unsent`: messages whose content never went out whole (built, or past their envelope only)."""

    reason: str
    in_doubt: list[Outgoing] = field(default_factory=list)
    unsent: list[Outgoing] = field(default_factory=list)

    def __str__(self) -> str:
        return self.reason


def submit(
    host: smtplib.SMTP | None, messages: Iterable[Outgoing], *, window: int = 1, chunking: bool = True,
    finish_on: tuple[type[BaseException], ...] = (),
) -> Iterator[Submitted]:
    """Send each message and yield the server's answer to it, in order; ConnectionLost when the
    connection breaks. Pulls the next message before it has the current one's answer (that is what
    lets the envelope ride along, or the next messages go out), so the caller's iterator decides
    whether there is a next message before the current one's outcome is known. With `chunking` and a
    server that offers CHUNKING and PIPELINING, up to `window` messages are sent ahead of their
    answers (window 1: DATA, one message in flight, one round trip each). `host` None
    (MAIL_SUPPRESS_SEND) accepts everything without sending.

    An error raised by `messages` (the caller's iterator) while a message is under way: one of
    `finish_on` (a time limit, whose caller can still record outcomes) waits until what is under way is
    sent and answered; any other (the caller could not write its outcomes: its database went away)
    abandons the message whose content has not gone out, closing the connection (the only way to end a
    DATA transaction without delivering it), because a message taken but never recorded would be sent
    again."""
    if host is None:
        for message in messages:
            yield Submitted(message, 250, "not sent: MAIL_SUPPRESS_SEND is on")
        return
    try:
        host.ehlo_or_helo_if_needed()  # Flask-Mail greets only when it has to (STARTTLS, AUTH)
    except OSError as error:
        raise ConnectionLost(_describe(error)) from error  # nothing was taken from `messages` yet
    with contextlib.suppress(OSError):
        # A write's last segment is short (an envelope, the end of a message or a chunk), and Nagle's
        # algorithm would hold it until everything before it is acknowledged: a round trip's stall per
        # message on a far relay. The pipelined paths write a message whole (with the next envelope,
        # for DATA) in one call, so sending at once costs no extra segments.
        host.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not host.has_extn("pipelining"):
        yield from _lockstep(host, iter(messages))
    elif chunking and window > 1 and host.has_extn("chunking"):
        yield from _chunked(host, iter(messages), window, finish_on)
    else:
        yield from _pipelined(host, iter(messages), finish_on)


def dot_stuffed(data: bytes) -> bytes:
    """The message as DATA content: a leading dot doubled on every line (RFC 5321 4.5.2), ending in
    CRLF, then the end-of-data line. bytes.replace runs in C, unlike smtplib's regex."""
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(_CRLF):
        stuffed += _CRLF
    return stuffed + _DATA_END


def _envelope(message: Outgoing | None) -> bytes:
    if message is None:
        return b""
    return f"MAIL FROM:<{message.mail_from}>\r\nRCPT TO:<{message.rcpt_to}>\r\nDATA\r\n".encode("ascii")


def _reply(host: smtplib.SMTP) -> tuple[int, str]:
    code, text = host.getreply()
    return code, text.decode("utf-8", "replace")


def _positive(reply: tuple[int, str]) -> bool:
    return 200 <= reply[0] < 300


def _pipelined(
    host: smtplib.SMTP, messages: Iterator[Outgoing], finish_on: tuple[type[BaseException], ...]
) -> Iterator[Submitted]:
    """One round trip a message: the next message is pulled from `messages` (built) before the current
    one's content goes out, and its envelope rides in the same write, ahead of the content's answer."""
    sock = host.sock
    current = next(messages, None)
    to_send = _envelope(current)
    reset_sent = False
    while current is not None:
        try:
            sock.sendall(to_send)
            if reset_sent:
                _reply(host)
            mail, rcpt, data = _reply(host), _reply(host), _reply(host)
        except OSError as error:
            raise ConnectionLost(_describe(error), unsent=[current]) from error
        refusal = next((reply for reply in (mail, rcpt) if not _positive(reply)), None)
        if refusal is not None or data[0] != 354:
            if data[0] == 354:
                # A server that answered DATA after refusing the sender or recipient waits for content:
                # end it at once, empty (there is no accepted recipient to deliver it to).
                try:
                    sock.sendall(_DATA_END)
                    _reply(host)
                except OSError as error:
                    raise ConnectionLost(_describe(error), unsent=[current]) from error
            yield Submitted(current, *(refusal or data))
            # RSET closes the transaction that an accepted MAIL FROM may have left open.
            current = next(messages, None)
            to_send, reset_sent = b"RSET\r\n" + _envelope(current), True
            continue
        stopped: BaseException | None = None
        try:
            following = next(messages, None)
        except finish_on as error:
            # A time limit, say, while building: re-raised once the content's answer is read, so the
            # caller records whether the server took it instead of handing it back to be sent again.
            following, stopped = None, error
        except BaseException:
            # The server waits for the current message's content: closing is the only way out that
            # does not deliver it (see submit).
            host.close()
            raise
        try:
            # The content and the next envelope in one write: one segment into a relay on this machine,
            # and (with TCP_NODELAY) nothing held back for an acknowledgement from a far one.
            sock.sendall(dot_stuffed(current.data) + _envelope(following))
            answer = _reply(host)
        except OSError as error:
            raise ConnectionLost(_describe(error), in_doubt=[current], unsent=_present(following)) from error
        yield Submitted(current, *answer)
        if stopped is not None:
            raise stopped
        current, to_send, reset_sent = following, b"", False


def _present(*messages: Outgoing | None) -> list[Outgoing]:
    return [message for message in messages if message is not None]


def _bdat_transaction(message: Outgoing) -> bytes:
    """One message as BDAT commands and content. RSET first: after a refused BDAT the state is
    indeterminate and RSET MUST come before further commands (RFC 3030 section 2), and the previous
    message's answer is not known yet when this one is written; after a completed transaction RSET
    changes nothing (RFC 5321 4.1.1.5). Postfix forgives such RSETs (its junk-command count starts
    again with every message it takes)."""
    content = message.data if message.data.endswith(_CRLF) else message.data + _CRLF  # as DATA sends it
    return (
        f"RSET\r\nMAIL FROM:<{message.mail_from}>\r\nRCPT TO:<{message.rcpt_to}>\r\n"
        f"BDAT {len(content)} LAST\r\n"
    ).encode("ascii") + content


def _chunked(
    host: smtplib.SMTP, messages: Iterator[Outgoing], window: int, finish_on: tuple[type[BaseException], ...]
) -> Iterator[Submitted]:
    """Up to `window` messages written ahead of their answers, and the next message built while the
    server answers. A message whose MAIL FROM or RCPT TO is refused gets that refusal; the server
    then refuses its BDAT too and discards the content (RFC 3030 section 2; Postfix: 554 5.5.1 no valid
    recipients), and the next message's RSET leaves no transaction open."""
    sock = host.sock
    in_flight: deque[Outgoing] = deque()  # written whole, answers not read yet
    built: Outgoing | None = None  # pulled from `messages`, not written yet
    exhausted = False
    stopped: BaseException | None = None
    while True:
        if built is None and not exhausted and stopped is None:
            try:
                built = next(messages, None)
            except finish_on as error:
                # A time limit, say, while building: re-raised once the answers to what is in flight
                # are read, so the caller records what the server took instead of sending it again.
                stopped = error
            exhausted = built is None
        if built is not None and len(in_flight) < window:
            try:
                sock.sendall(_bdat_transaction(built))
            except OSError as error:
                raise ConnectionLost(_describe(error), in_doubt=list(in_flight), unsent=[built]) from error
            in_flight.append(built)
            built = None
            continue
        if not in_flight:
            break
        current = in_flight.popleft()
        try:
            replies = [_reply(host) for _ in range(4)]  # RSET, MAIL FROM, RCPT TO, BDAT
        except OSError as error:
            raise ConnectionLost(
                _describe(error), in_doubt=[current, *in_flight], unsent=_present(built)
            ) from error
        refusal = next((reply for reply in replies[:3] if not _positive(reply)), None)
        yield Submitted(current, *(refusal or replies[3]))
    if stopped is not None:
        raise stopped


def _lockstep(host: smtplib.SMTP, messages: Iterator[Outgoing]) -> Iterator[Submitted]:
    sock = host.sock
    for message in messages:
        answer: tuple[int, str] | None = None
        try:
            for command in _envelope(message).split(b"\r\n")[:3]:
                sock.sendall(command + _CRLF)
                reply = _reply(host)
                refused = reply[0] != 354 if command == b"DATA" else not _positive(reply)
                if refused:
                    answer = reply
                    break
            if answer is not None:
                if not command.startswith(b"MAIL"):  # MAIL FROM was accepted: close its transaction
                    sock.sendall(b"RSET\r\n")
                    _reply(host)
                yield Submitted(message, *answer)
                continue
        except OSError as error:
            raise ConnectionLost(_describe(error), unsent=[message]) from error
        try:
            sock.sendall(dot_stuffed(message.data))
            answer = _reply(host)
        except OSError as error:
            raise ConnectionLost(_describe(error), in_doubt=[message]) from error
        yield Submitted(message, *answer)


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
