"""The confirmation and welcome emails of signups: rendered in the list's chosen layout (the text with
the button goes where the layout prints `{{ message }}`) and sent at once, through the same relay, rate
limiter and DKIM signing as campaigns. One message, one recipient, no delivery row: there is no
campaign to report on, and a failed send is logged and can be resent from the dashboard or API."""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate, make_msgid

from flask import current_app
from markupsafe import Markup

from mailapp.errors import MailappError
from mailapp.extensions import db
from mailapp.models import ConsentRecord, Layout, Subscriber, SubscriberList, utcnow
from mailapp.sending import templating
from mailapp.sending.compose import dkim_signer_for
from mailapp.sending.message import address_domain, ascii_address
from mailapp.sending.ratelimit import RateLimiter
from mailapp.sending.relay import Relay, describe
from mailapp.sending.render import html_to_text
from mailapp.signup.services import confirmation_token

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_LAYOUT = (
    '<html><body style="font-family: sans-serif; max-width: 36rem; margin: 0 auto; padding: 1rem">'
    "{{ message }}</body></html>"
)


def confirm_url(consent_id: int) -> str:
    return f"{current_app.config['PUBLIC_URL']}/s/confirm/{confirmation_token(consent_id)}"


def send_confirmation(consent_id: int) -> bool:
    """Email the consent's confirmation link, in the first pending list's confirmation layout. True
    when the relay took it; a relay failure is logged (the signup stands, and can be resent)."""
    consent = db.session.get(ConsentRecord, consent_id)
    if consent is None or consent.confirmed_at is not None or not consent.pending_list_ids:
        return False
    lists = [db.session.get(SubscriberList, list_id) for list_id in consent.pending_list_ids]
    lists = [subscriber_list for subscriber_list in lists if subscriber_list is not None]
    if not lists:
        return False
    subscriber = db.session.get(Subscriber, consent.subscriber_id)
    names = ", ".join(subscriber_list.name for subscriber_list in lists)
    url = confirm_url(consent.id)
    message = Markup(
        "<p>Please confirm that you want to receive emails from <strong>{names}</strong>.</p>"
        '<p><a href="{url}" style="display: inline-block; padding: .6rem 1.2rem; background: #0d6efd; '
        'color: #fff; text-decoration: none; border-radius: .3rem">Confirm my subscription</a></p>'
        "<p>Or open this link: {url}</p>"
        "<p>If you did not sign up, ignore this email: you will not be added.</p>"
    ).format(names=names, url=url)
    sent = _send(
        subscriber, f"Confirm your subscription to {names}", lists[0].confirmation_layout_id, message
    )
    if sent:
        consent.confirmation_sent_at = utcnow()
        db.session.commit()
    return sent


def send_welcome(subscriber_id: int, list_id: int) -> bool:
    """The list's welcome email, when it has a welcome layout."""
    subscriber_list = db.session.get(SubscriberList, list_id)
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber_list is None or subscriber is None or subscriber_list.welcome_layout_id is None:
        return False
    message = Markup("<p>Welcome to <strong>{name}</strong>! Your subscription is confirmed.</p>").format(
        name=subscriber_list.name
    )
    return _send(subscriber, f"Welcome to {subscriber_list.name}", subscriber_list.welcome_layout_id, message)


def _send(subscriber: Subscriber | None, subject: str, layout_id: int | None, message: Markup) -> bool:
    if subscriber is None:
        return False
    layout = db.session.get(Layout, layout_id) if layout_id is not None else None
    sender_email = current_app.config["MAIL_DEFAULT_SENDER"]
    try:
        raw = _build(
            subscriber,
            subject,
            layout.html if layout is not None else DEFAULT_SYSTEM_LAYOUT,
            message,
            sender_email,
        )
        RateLimiter.for_app().wait()
        with Relay.for_current_app().smtp_connection() as host:
            if host is not None:
                host.sendmail(
                    ascii_address("from address", sender_email),
                    [ascii_address("recipient address", subscriber.email)],
                    raw,
                )
    except (MailappError, OSError, smtplib.SMTPException) as error:
        log.warning("signup email %r to subscriber %s not sent: %s", subject, subscriber.id, describe(error))
        return False
    return True


def _build(
    subscriber: Subscriber, subject: str, layout_html: str, message: Markup, sender_email: str
) -> bytes:
    context = templating.recipient_context(
        subscriber={
            "id": subscriber.id,
            "email": subscriber.email,
            "name": subscriber.name,
            "attributes": subscriber.attributes or {},
        },
        sender={"email": sender_email, "name": ""},
        campaign={"id": 0, "name": subject, "subject": subject},
        message=message,
        unsubscribe_url="",
    )
    html = templating.compile_template(templating.inline_css(layout_html)).render(context)
    email = EmailMessage(policy=SMTP)
    email["From"] = ascii_address("from address", sender_email)
    email["To"] = formataddr((subscriber.name or "", ascii_address("recipient address", subscriber.email)))
    email["Subject"] = subject
    email["Date"] = formatdate(localtime=False)
    domain = address_domain(sender_email)
    email["Message-ID"] = make_msgid(domain=domain or None)
    # Asked for by the reader, yet sent by a machine: vacation responders keep quiet (RFC 3834).
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(html_to_text(html), cte="quoted-printable")
    email.add_alternative(html, subtype="html", cte="quoted-printable")
    raw = email.as_bytes(policy=SMTP)
    signer = dkim_signer_for(domain) if domain else None
    return signer.sign(raw) if signer is not None else raw
