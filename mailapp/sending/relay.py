"""The SMTP relay as an object built from settings: it opens, times and closes connections, and it is
the only place that touches Flask-Mail. The send loop is handed one instead of reading the app.

A relay is built from the MAIL_* settings (the default relay, `from_app`) or from a stored relay row's
settings (`RelaySettings`, which sending/relay_choice.py makes from an SmtpRelay): either way it is a
Mail-like settings object handed to Flask-Mail's Connection."""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app
from flask_mail import Connection

from mailapp.sending.message import SendError

DEFAULT_RELAY_NAME = "default (MAIL_SERVER)"


class SMTPUnavailable(SendError):
    """The SMTP server cannot be reached (or dropped us and cannot be reached again)."""


class RelayDeferring(SMTPUnavailable):
    """The relay answered a run of messages with 4xx: it is up but takes nothing (its backup should)."""


@dataclass(frozen=True)
class RelaySettings:
    """What Flask-Mail's Connection reads from a Mail object (server, port, use_tls, use_ssl, username,
    password, debug, suppress), for one relay."""

    server: str
    port: int
    use_tls: bool = False
    use_ssl: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    debug: int = 0
    suppress: bool = False


class TimedConnection(Connection):
    """Flask-Mail's Connection with a timeout on the connect itself (Flask-Mail sets none, so an address
    that drops SYNs would hold the caller for minutes), keeping the server's greeting."""

    def __init__(self, mail: Any, timeout_seconds: float) -> None:
        super().__init__(mail)
        self.timeout_seconds = timeout_seconds
        self.greeting = ""

    def configure_host(self) -> smtplib.SMTP:
        mail = self.mail
        host = (smtplib.SMTP_SSL if mail.use_ssl else smtplib.SMTP)(timeout=self.timeout_seconds)
        try:
            code, greeting = host.connect(mail.server, mail.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, greeting)
            self.greeting = f"{code} {greeting.decode('utf-8', 'replace')}"
            host.set_debuglevel(int(mail.debug))
            if mail.use_tls:
                host.starttls()
            if mail.username and mail.password:
                host.login(mail.username, mail.password)
        except BaseException:
            host.close()
            raise
        return host


class Relay:
    """Connections to one relay: the MAIL_* relay (Flask-Mail's settings for the app: server, port, TLS,
    login, MAIL_SUPPRESS_SEND) or a stored one, each with SEND_SMTP_TIMEOUT_SECONDS on its socket."""

    def __init__(self, mail_settings: Any, address: str, timeout_seconds: float, *,
                 name: str = DEFAULT_RELAY_NAME, relay_id: int | None = None) -> None:
        self._mail_settings = mail_settings
        self.address = address  # host:port, as error messages name the relay
        self.timeout_seconds = timeout_seconds
        self.name = name  # written on each delivery it sends
        self.relay_id = relay_id  # None: the MAIL_* default
        # With a backup to fail over to: this many 4xx replies in a row stop the run (RelayDeferring).
        self.failover_after_deferrals: int | None = None

    @classmethod
    def from_app(cls, app: Flask) -> Relay:
        return cls(
            app.extensions["mail"], f"{app.config['MAIL_SERVER']}:{app.config['MAIL_PORT']}",
            float(app.config["SEND_SMTP_TIMEOUT_SECONDS"]),
        )

    @classmethod
    def for_current_app(cls) -> Relay:
        return cls.from_app(current_app)

    @classmethod
    def from_settings(cls, settings: RelaySettings, timeout_seconds: float, *, name: str,
                      relay_id: int | None) -> Relay:
        return cls(settings, f"{settings.server}:{settings.port}", timeout_seconds, name=name,
                   relay_id=relay_id)

    @contextlib.contextmanager
    def smtp_connection(self) -> Iterator[smtplib.SMTP | None]:
        """One connection (None when MAIL_SUPPRESS_SEND is on); SMTPUnavailable if it cannot be opened.
        Closing never raises: a server that already dropped us is simply closed."""
        try:
            host = self.connect()
        except (OSError, smtplib.SMTPException) as error:
            raise SMTPUnavailable(
                f"Cannot connect to the SMTP server {self.address}: {describe(error)}"
            ) from error
        try:
            yield host
        finally:
            quit_connection(host)

    def connect(self) -> smtplib.SMTP | None:
        return self.open_connection().host

    def open_connection(self) -> TimedConnection:
        """Connected (and STARTTLS'd and logged in, as configured); its greeting and host at hand."""
        connection = self.new_connection()
        connection.__enter__()
        return connection

    def new_connection(self) -> TimedConnection:
        """Not connected yet: __enter__ connects (and keeps the greeting even if a later step fails)."""
        return TimedConnection(self._mail_settings, self.timeout_seconds)


def quit_connection(host: smtplib.SMTP | None) -> None:
    if host is not None:
        try:
            host.quit()
        except (OSError, smtplib.SMTPException):
            host.close()


def describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
