"""A real SMTP server for tests (aiosmtpd) that parses and keeps every message it accepts.

Faults are injected the way a real relay produces them: by answering a recipient with a 4xx or 5xx
reply, or by refusing connections while stopped. ChunkingSMTPTestServer also offers CHUNKING (RFC 3030
BDAT), which aiosmtpd does not implement."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage

    @property
    def to(self) -> str:
        return self.rcpt_tos[0]

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""


@dataclass
class CapturingHandler:
    messages: list[ReceivedMessage] = field(default_factory=list)
    # recipient address -> list of SMTP replies to give, one per attempt, e.g. ["451 4.3.0 try later"].
    # When the list runs out the recipient is accepted.
    scripted_replies: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Seconds to wait before accepting each message: a slow relay.
    delay_seconds: float = 0.0
    # Offer ESMTP PIPELINING (RFC 2920), as Postfix and most relays do. aiosmtpd reads commands in
    # order from its stream, so it serves pipelined clients; it just does not say so by itself.
    pipelining: bool = True
    # Addresses whose next message the server reads whole and then hangs up on without an answer, as a
    # relay that crashes mid-transaction does. The message is not kept.
    hang_up_on: set[str] = field(default_factory=set)
    # Offer CHUNKING (RFC 3030); only a ChunkingSMTP server can keep that promise.
    chunking: bool = False

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname  # this hook's duty (aiosmtpd docs)
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        if self.chunking:
            responses.insert(-1, "250-CHUNKING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            replies = self.scripted_replies.get(address.lower())
            if replies:
                return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        with self.lock:
            hang_up = [address for address in envelope.rcpt_tos if address.lower() in self.hang_up_on]
            self.hang_up_on.difference_update(address.lower() for address in hang_up)
        if hang_up:
            server.transport.abort()
            return "421 4.3.0 never seen: the connection is gone"
        raw = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        with self.lock:
            self.messages.append(
                ReceivedMessage(envelope.mail_from, list(envelope.rcpt_tos), raw, parsed)
            )
        return "250 Message accepted for delivery"


class ChunkingSMTP(SMTP):
    """aiosmtpd's server plus BDAT (RFC 3030 section 2): each chunk is read by its size, nothing
    unstuffed, and on BDAT LAST the message goes to the handler's handle_DATA as DATA's would. Like
    Postfix, a BDAT without a sender or an accepted recipient is refused after its chunk is read and
    discarded, and the transaction is reset."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.chunks: list[bytes] = []  # the transaction's chunks so far

    def _set_post_data_state(self) -> None:
        super()._set_post_data_state()
        self.chunks = []

    async def smtp_BDAT(self, arg: str) -> None:
        size, _, last = (arg or "").partition(" ")
        if not size.isdigit() or last.strip().upper() not in ("", "LAST"):
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            return
        chunk = await self._reader.readexactly(int(size))
        if self.envelope.mail_from is None or not self.envelope.rcpt_tos:
            self._set_post_data_state()
            await self.push("554 5.5.1 Error: no valid recipients")
            return
        self.chunks.append(chunk)
        if not last.strip():
            await self.push(f"250 2.0.0 {len(chunk)} octets received")
            return
        self.envelope.content = self.envelope.original_content = b"".join(self.chunks)
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)


class _ChunkingController(Controller):
    def factory(self) -> SMTP:
        return ChunkingSMTP(self.handler, **self.SMTP_kwargs)


class SMTPTestServer:
    controller_class: type[Controller] = Controller

    def __init__(self) -> None:
        self.handler = CapturingHandler()
        self.port = _free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = self.controller_class(
            self.handler, hostname="127.0.0.1", port=self.port, decode_data=False,
            data_size_limit=50 * 1024 * 1024,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    def reset(self) -> None:
        with self.handler.lock:
            self.handler.messages.clear()
            self.handler.scripted_replies.clear()
            self.handler.delay_seconds = 0.0
            self.handler.pipelining = True
            self.handler.hang_up_on.clear()

    def script_replies(self, address: str, replies: list[str]) -> None:
        with self.handler.lock:
            self.handler.scripted_replies[address.lower()] = list(replies)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.messages
            if len(messages) >= count:
                return messages
            time.sleep(0.05)
        raise AssertionError(f"expected {count} messages, got {len(self.messages)} within {timeout}s")


class ChunkingSMTPTestServer(SMTPTestServer):
    """The capture server offering PIPELINING and CHUNKING, as Postfix does."""

    controller_class = _ChunkingController

    def __init__(self) -> None:
        super().__init__()
        self.handler.chunking = True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
