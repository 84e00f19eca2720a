"""The inbound SMTP receiver (aiosmtpd): the MX of BOUNCE_DOMAIN. It takes mail only for valid VERP
addresses (bounces+<token>@, unsubscribe+<token>@) and the feedback-loop addresses; every other
recipient is refused with 550 at RCPT, so it can never be an open relay.

Bounded: SIZE is advertised and enforced (INBOUND_MAX_BYTES), a silent client is dropped after
SESSION_TIMEOUT_SECONDS, at most INBOUND_MAX_CONNECTIONS sessions are open at once (one more is answered
421 and closed before any command is read), and a message may have at most MAX_RECIPIENTS recipients.
Each accepted message is processed in the app context, off the event loop, and committed before the
250. A database that is down answers 451 (the sending MTA keeps the message and tries again); any other
failure is logged and answered 250: a message we cannot read is dropped, never bounced back."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from flask import Flask

from mailapp.extensions import db
from mailapp.foreground import run_until_stopped
from mailapp.inbound.services import DATABASE_DOWN, InboundSettings, process_message

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 50
SESSION_TIMEOUT_SECONDS = 60


class InboundHandler:
    """aiosmtpd handler: RCPT filtering and processing of each accepted message."""

    def __init__(self, app: Flask, settings: InboundSettings) -> None:
        self.app, self.settings = app, settings

    async def handle_RCPT(
        self, server: object, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        if not self.settings.accepts_recipient(address):
            return "550 5.1.1 No such recipient here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: object, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content.encode("utf-8", "replace") if isinstance(content, str) else content
        return await asyncio.to_thread(self.process, raw, list(envelope.rcpt_tos))

    def process(self, raw: bytes, recipients: list[str]) -> str:
        """Process and commit one message; the SMTP answer."""
        with self.app.app_context():
            try:
                processed = process_message(raw, recipients, "smtp", self.settings)
                db.session.commit()
            except DATABASE_DOWN as error:
                db.session.rollback()
                log.warning("Inbound message deferred, the database is unavailable: %s", error)
                return "451 4.3.0 Temporary failure, please try again later"
            except Exception:  # a bug must not bounce the message back, nor stop the receiver
                db.session.rollback()
                log.exception("Inbound message dropped: processing it failed")
                return "250 2.0.0 Accepted"
            finally:
                db.session.remove()
        log.info("Inbound message: %s", processed)
        return "250 2.0.0 Accepted"


class _SessionCount:
    """Open sessions of one receiver. Only the event loop's thread touches it, so no lock."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, 0


class _CappedSMTP(SMTP):
    """aiosmtpd's SMTP protocol that refuses a connection past the receiver's session limit with a 421
    (RFC 5321 4.3.2: the client keeps its mail and tries later), before it reads a byte."""

    def __init__(self, *args, sessions: _SessionCount, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sessions, self._counted = sessions, False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._counted:  # STARTTLS calls this again for the same session
            super().connection_made(transport)
            return
        if self._sessions.open >= self._sessions.limit:
            transport.write(b"421 4.7.0 Too many connections, try again later\r\n")  # type: ignore[attr-defined]
            transport.close()
            return
        self._sessions.open += 1
        self._counted = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if not self._counted:  # refused above: SMTP never set this connection up
            return
        self._sessions.open -= 1
        super().connection_lost(error)


class _CappedController(Controller):
    def __init__(self, *args, max_connections: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sessions = _SessionCount(max_connections)

    def factory(self) -> SMTP:
        return _CappedSMTP(self.handler, sessions=self._sessions, **self.SMTP_kwargs)


def start_receiver(app: Flask, host: str, port: int, settings: InboundSettings | None = None) -> Controller:
    """Start the receiver in a background thread and return its controller (call .stop())."""
    with app.app_context():
        settings = settings or InboundSettings.for_current_app()
    controller = _CappedController(
        InboundHandler(app, settings),
        max_connections=settings.max_connections,
        hostname=host,
        port=port,
        data_size_limit=settings.limits.max_bytes,
        timeout=SESSION_TIMEOUT_SECONDS,
        decode_data=False,
    )
    controller.start()
    return controller


def serve(
    app: Flask, host: str, port: int, on_ready: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run until SIGINT/SIGTERM or until `stop` is set."""
    run_until_stopped(start_receiver(app, host, port), on_ready, stop)
