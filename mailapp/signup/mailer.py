"""The confirmation and welcome emails of signups: rendered in the list's chosen layout (the text with
the button goes where the layout prints `{{ message }}`) and queued as system mail (sending/system_mail.py):
the same relay choice, rate limiter and DKIM signing as campaigns, one log row per message, shown on the
subscriber's page. The queue_* functions write the row; the caller commits, then queues the send task
with the row's id (mailapp.sending.tasks.commit_and_send)."""

from __future__ import annotations

import logging
from email.utils import parseaddr

from flask import current_app
from markupsafe import Markup

from mailapp.errors import MailappError
from mailapp.extensions import db
from mailapp.models import (
    ConsentRecord,
    Layout,
    Subscriber,
    SubscriberList,
    SystemMessage,
    SystemMessageKind,
    utcnow,
)
from mailapp.secret_box import SecretBox
from mailapp.sending import templating
from mailapp.sending.render import html_to_text
from mailapp.sending.system_mail import queue_system_message
from mailapp.signup.services import confirmation_token

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_LAYOUT = (
    '<html><body style="font-family: sans-serif; max-width: 36rem; margin: 0 auto; padding: 1rem">'
    "{{ message }}</body></html>"
)


def confirm_url(consent_id: int) -> str:
    return f"{current_app.config['PUBLIC_URL']}/s/confirm/{confirmation_token(consent_id)}"


def queue_confirmation(consent_id: int) -> SystemMessage | None:
    """The consent's confirmation link, in the first pending list's confirmation layout, queued (the
    caller commits, then queues the task). None when there is nothing to confirm."""
    consent = db.session.get(ConsentRecord, consent_id)
    if consent is None or consent.confirmed_at is not None or not consent.pending_list_ids:
        return None
    lists = [db.session.get(SubscriberList, list_id) for list_id in consent.pending_list_ids]
    lists = [subscriber_list for subscriber_list in lists if subscriber_list is not None]
    subscriber = db.session.get(Subscriber, consent.subscriber_id) if consent.subscriber_id else None
    if not lists or subscriber is None:
        return None
    names = ", ".join(subscriber_list.name for subscriber_list in lists)
    url = confirm_url(consent.id)
    message = Markup(
        "<p>Please confirm that you want to receive emails from <strong>{names}</strong>.</p>"
        '<p><a href="{url}" style="display: inline-block; padding: .6rem 1.2rem; background: #0d6efd; '
        'color: #fff; text-decoration: none; border-radius: .3rem">Confirm my subscription</a></p>'
        "<p>Or open this link: {url}</p>"
        "<p>If you did not sign up, ignore this email: you will not be added.</p>"
    ).format(names=names, url=url)
    queued = _queue(
        SystemMessageKind.CONFIRMATION, subscriber, lists[0], f"Confirm your subscription to {names}",
        lists[0].confirmation_layout_id, message,
    )
    consent.confirmation_sent_at = utcnow()
    return queued


def queue_welcome(subscriber_id: int, list_id: int) -> SystemMessage | None:
    """The list's welcome email, when it has a welcome layout (the caller commits, then queues)."""
    subscriber_list = db.session.get(SubscriberList, list_id)
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber_list is None or subscriber is None or subscriber_list.welcome_layout_id is None:
        return None
    message = Markup("<p>Welcome to <strong>{name}</strong>! Your subscription is confirmed.</p>").format(
        name=subscriber_list.name
    )
    return _queue(
        SystemMessageKind.WELCOME, subscriber, subscriber_list, f"Welcome to {subscriber_list.name}",
        subscriber_list.welcome_layout_id, message,
    )


def _queue(kind: SystemMessageKind, subscriber: Subscriber, subscriber_list: SubscriberList, subject: str,
           layout_id: int | None, message: Markup) -> SystemMessage:
    layout = db.session.get(Layout, layout_id) if layout_id is not None else None
    try:
        html = _render(subscriber, subject, layout.html if layout is not None else DEFAULT_SYSTEM_LAYOUT,
                       message)
    except MailappError as error:
        # A layout that no longer renders (edited since it was chosen) must not cost the signup its
        # email: the built-in layout carries the same text.
        log.warning("%s layout %s does not render (%s); the built-in one is used", kind, layout_id, error)
        html = _render(subscriber, subject, DEFAULT_SYSTEM_LAYOUT, message)
    return queue_system_message(
        SecretBox.for_current_app(), kind, subscriber.email, subject, html_to_text(html), html,
        to_name=subscriber.name or "", subscriber_id=subscriber.id, list_id=subscriber_list.id,
    )


def _render(subscriber: Subscriber, subject: str, layout_html: str, message: Markup) -> str:
    context = templating.recipient_context(
        subscriber={
            "id": subscriber.id,
            "email": subscriber.email,
            "name": subscriber.name,
            "attributes": subscriber.attributes or {},
        },
        sender={"email": parseaddr(current_app.config["MAIL_DEFAULT_SENDER"])[1], "name": ""},
        campaign={"id": 0, "name": subject, "subject": subject},
        message=message,
        unsubscribe_url="",
    )
    return templating.compile_template(templating.inline_css(layout_html)).render(context)
