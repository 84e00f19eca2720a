"""System mail (invites, password resets): one plain-text message to one person over the relay it is
handed. Not a campaign: no layout, no tracking, no delivery row."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from mailapp.sending.message import SendError, ascii_address
from mailapp.sending.relay import Relay, describe


def build_system_message(sender: str, to: str, subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    # EmailMessage refuses CR and LF in header values, so no input can add a header.
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    return message


def send_system_message(relay: Relay, sender: str, to: str, subject: str, text: str) -> None:
    """Send now; SendError when the relay cannot be reached or refuses."""
    message = build_system_message(sender, to, subject, text)
    with relay.smtp_connection() as host:
        if host is None:  # MAIL_SUPPRESS_SEND
            return
        try:
            host.send_message(message, from_addr=sender, to_addrs=[ascii_address("address", to)])
        except (OSError, smtplib.SMTPException) as error:
            raise SendError(f"Sending to {to} failed: {describe(error)}") from error
