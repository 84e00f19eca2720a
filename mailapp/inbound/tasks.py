"""Celery tasks of the inbound area: polling the bounce mailbox (beat, every BOUNCE_IMAP_POLL_SECONDS,
only when BOUNCE_IMAP_HOST is set)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from flask import current_app

from mailapp.inbound.mailbox import LOCK_SECONDS, ImapSettings, poll_lock, poll_mailbox
from mailapp.inbound.services import InboundSettings


# Killed well inside the lock's lifetime, so two polls never overlap.
@shared_task(
    name="mailapp.inbound.tasks.poll_bounce_mailbox",
    soft_time_limit=LOCK_SECONDS - 60, time_limit=LOCK_SECONDS - 30,
)
def poll_bounce_mailbox() -> dict[str, Any]:
    """Read the bounce mailbox once; at once returns when another poll is running."""
    config = current_app.config
    imap = ImapSettings.from_config(config)
    if not imap.host:
        return {"skipped": "BOUNCE_IMAP_HOST is not set"}
    with poll_lock(config.get("REDIS_URL") or "", config["INSTANCE_DIR"]) as acquired:
        if not acquired:
            return {"skipped": "another poll is running"}
        return poll_mailbox(imap, InboundSettings.for_current_app()).as_dict()
