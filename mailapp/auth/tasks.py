"""Celery task for system mail (invites, password resets): queued after the commit, so the web
request answers at once and the same way whether or not a message goes out."""

from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from mailapp.sending.message import SendError
from mailapp.sending.relay import Relay
from mailapp.sending.system_mail import send_system_message

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=5, default_retry_delay=30)
def send_system_mail(self, to: str, subject: str, text: str) -> None:
    try:
        send_system_message(
            Relay.for_current_app(), current_app.config["MAIL_DEFAULT_SENDER"], to, subject, text
        )
    except SendError as error:
        logger.warning("system mail to %s not sent: %s", to, error)
        raise self.retry(exc=error) from error
