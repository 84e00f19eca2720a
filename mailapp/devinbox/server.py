"""The built-in development SMTP server (aiosmtpd): accepts every message and stores it in the dev inbox."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from mailapp.devinbox.store import DevInbox
from mailapp.foreground import run_until_stopped

# Big enough for any real newsletter with attachments, small enough that one message cannot fill a disk.
DATA_SIZE_LIMIT = 32 * 1024 * 1024


class InboxHandler:
    """aiosmtpd handler: every accepted message goes to the inbox, with the envelope recorded the way a
    mail server does (Return-Path and one Delivered-To per recipient, prepended), so Bcc recipients
    show too."""

    def __init__(self, inbox: DevInbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: object, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", errors="replace")
        trace = f"Return-Path: <{_clean(envelope.mail_from or '')}>\r\n" + "".join(
            f"Delivered-To: {_clean(recipient)}\r\n" for recipient in envelope.rcpt_tos
        )
        # Off the event loop, so other connections are served while the file is written.
        raw = trace.encode("utf-8", errors="replace") + content
        message_id = await asyncio.to_thread(self.inbox.save, raw)
        return f"250 Message accepted for delivery (dev inbox {message_id})"


def start_server(inbox: DevInbox, host: str = "127.0.0.1", port: int = 1025) -> Controller:
    """Start the SMTP server in a background thread and return its controller (call .stop())."""
    controller = Controller(
        InboxHandler(inbox),
        hostname=host,
        port=port,
        data_size_limit=DATA_SIZE_LIMIT,
        decode_data=False,
        # Like a real relay the server accepts UTF-8 addresses (RFC 6531).
        enable_SMTPUTF8=True,
    )
    controller.start()
    return controller


def serve(
    inbox: DevInbox,
    host: str = "127.0.0.1",
    port: int = 1025,
    on_ready: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (honcho stops its processes with SIGTERM) or until `stop` is set."""
    run_until_stopped(start_server(inbox, host, port), on_ready, stop)


def _clean(address: str) -> str:
    """Envelope addresses go into a header: no line breaks."""
    return address.replace("\r", "").replace("\n", "")
