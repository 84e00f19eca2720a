"""The SMTP relay as an object built from settings: it opens, times and closes connections, and it is
the only place that touches Flask-Mail. The send loop is handed one instead of reading the app."""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Iterator
from typing import Any

from flask import Flask, current_app
from flask_mail import Connection

from mailapp.sending.message import SendError


class SMTPUnavailable(SendError):
    """The SMTP server cannot be reached (or dropped us and cannot be reached again)."""


class Relay:
    """Connections to the relay configured by MAIL_* (Flask-Mail's settings for the app: server, port,
    TLS, login, MAIL_SUPPRESS_SEND), each with SEND_SMTP_TIMEOUT_SECONDS on its socket."""

    def __init__(self, mail_settings: Any, address: str, timeout_seconds: float) -> None:
        self._mail_settings = mail_settings
        self.address = address  # host:port, as error messages name the relay
        self.timeout_seconds = timeout_seconds

    @classmethod
    def from_app(cls, app: Flask) -> Relay:
        return cls(
            app.extensions["mail"], f"{app.config['MAIL_SERVER']}:{app.config['MAIL_PORT']}",
            float(app.config["SEND_SMTP_TIMEOUT_SECONDS"]),
        )

    @classmethod
    def for_current_app(cls) -> Relay:
        return cls.from_app(current_app)

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
        connection = Connection(self._mail_settings)
        connection.__enter__()
        if connection.host is not None and connection.host.sock is not None:
            # Flask-Mail sets no timeout: without one, a relay that stops answering would hold the task
            # (and its leased rows) forever.
            connection.host.sock.settimeout(self.timeout_seconds)
        return connection.host


def quit_connection(host: smtplib.SMTP | None) -> None:
    if host is not None:
        try:
            host.quit()
        except (OSError, smtplib.SMTPException):
            host.close()


def describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
