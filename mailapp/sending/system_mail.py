"""System mail: signup confirmations and welcomes, invites, password resets. One message to one person,
on the same path as campaigns: the relay choice (relay_choice.choose_relay), its rate limiter and caps,
and the DKIM signer of the sender's domain. Not a campaign: no layout here, no tracking, no delivery row;
its log is a SystemMessage row.

The one way to send one: queue_system_message writes the row (the request or task that owns the
transaction commits), then queues mailapp.sending.tasks.send_system_message with the row's id; the task
calls deliver_system_message. So a web request answers the same whether or not the mail goes out, and a
relay that is down delays the mail (retries with backoff) instead of the page."""

from __future__ import annotations

import json
import smtplib
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, make_msgid

from mailapp.errors import MailappError
from mailapp.extensions import db
from mailapp.models import SystemMessage, SystemMessageKind, SystemMessageStatus, utcnow
from mailapp.secret_box import SecretBox
from mailapp.sending.compose import dkim_signer_for
from mailapp.sending.message import SendError, address_domain, ascii_address, message_date
from mailapp.sending.ratelimit import RateLimiter
from mailapp.sending.relay import Relay, describe


class SystemMailDeferred(SendError):
    """The relay could not take the message now (unreachable, or a 4xx reply): try again later."""

    def __init__(self, message: str, smtp_code: int | None = None) -> None:
        super().__init__(message)
        self.smtp_code = smtp_code


def queue_system_message(
    box: SecretBox, kind: SystemMessageKind, email: str, subject: str, text: str, html: str = "", *,
    to_name: str = "", subscriber_id: int | None = None, list_id: int | None = None,
) -> SystemMessage:
    """The message's log row, status queued, its content sealed. The caller commits, then queues the
    send task with the row's id."""
    row = SystemMessage(
        kind=kind, email=email, subject=subject, subscriber_id=subscriber_id, list_id=list_id,
        content_sealed=box.seal(json.dumps({"text": text, "html": html, "to_name": to_name})),
        status=SystemMessageStatus.QUEUED, attempts=0, error="", message_id="", relay_name="",
    )
    db.session.add(row)
    db.session.flush()
    return row


def build_system_message(sender: str, to_name: str, to: str, subject: str, text: str, html: str,
                         message_id: str) -> bytes:
    """multipart/alternative when there is HTML, plain text otherwise; quoted-printable bodies, so no
    line is over 998 bytes."""
    message = EmailMessage(policy=SMTP)
    # EmailMessage refuses CR and LF in header values, so no input can add a header.
    message["From"] = ascii_address("from address", sender)
    message["To"] = formataddr((to_name, ascii_address("recipient address", to)))
    message["Subject"] = subject
    message["Date"] = message_date()
    message["Message-ID"] = message_id
    # Asked for by the reader, yet sent by a machine: vacation responders keep quiet (RFC 3834).
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, cte="quoted-printable")
    if html:
        message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message.as_bytes(policy=SMTP)


def deliver_system_message(
    system_message_id: int, relay: Relay, limiter: RateLimiter, sender: str, box: SecretBox
) -> SystemMessage | None:
    """Send one queued message now and record the outcome in its row (committed): sent, or failed with
    the relay's 5xx reply. SystemMailDeferred (the attempt counted and committed) when the relay cannot
    take it now; CapReached when the relay's cap is used up. None when the row is gone or no longer
    queued (a task delivered twice sends once)."""
    row = db.session.get(SystemMessage, system_message_id)
    if row is None or row.status != SystemMessageStatus.QUEUED:
        return None
    row.attempts += 1
    db.session.commit()
    try:
        content = json.loads(box.open(row.content_sealed))
        domain = address_domain(sender)
        message_id = make_msgid(domain=domain)
        raw = build_system_message(sender, content.get("to_name", ""), row.email, row.subject,
                                   content["text"], content.get("html", ""), message_id)
        signer = dkim_signer_for(domain)
        if signer is not None:
            raw = signer.sign(raw)
        envelope = (ascii_address("from address", sender), [ascii_address("recipient address", row.email)])
    except MailappError as error:  # an address that cannot be sent to, a key that cannot be opened
        return mark_failed(row, None, error.message)
    limiter.wait()
    with relay.smtp_connection() as host:
        try:
            if host is not None:  # None: MAIL_SUPPRESS_SEND
                host.sendmail(envelope[0], envelope[1], raw)
        except smtplib.SMTPRecipientsRefused as error:
            code, reply = next(iter(error.recipients.values()))
            return _refused(row, code, reply)
        except smtplib.SMTPResponseException as error:
            return _refused(row, error.smtp_code, error.smtp_error)
        except (OSError, smtplib.SMTPException) as error:
            raise SystemMailDeferred(f"Sending to {row.email} failed: {describe(error)}") from error
    row.status = SystemMessageStatus.SENT
    row.sent_at = utcnow()
    row.smtp_code = 250
    row.error = ""
    row.message_id = message_id
    row.relay_name = relay.name
    row.content_sealed = ""
    db.session.commit()
    return row


def _refused(row: SystemMessage, code: int, reply: bytes | str) -> SystemMessage:
    text = f"{code} {reply.decode('utf-8', 'replace') if isinstance(reply, bytes) else reply}"
    if 400 <= code < 500:
        raise SystemMailDeferred(f"The server deferred {row.email}: {text}", code)
    return mark_failed(row, code, text)


def mark_failed(row: SystemMessage, smtp_code: int | None, error: str) -> SystemMessage:
    """Failed for good: the reply or reason kept, the sealed content (one-time links) dropped."""
    row.status = SystemMessageStatus.FAILED
    row.smtp_code = smtp_code
    row.error = error[:2000]
    row.content_sealed = ""
    db.session.commit()
    return row
