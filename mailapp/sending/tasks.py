"""Celery tasks of the send engine: the batch sender, its fan-out, and the lease sweeper (beat)."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy.exc import OperationalError

from mailapp.extensions import db
from mailapp.sending import engine, ledger
from mailapp.sending.ratelimit import RateLimiter
from mailapp.sending.relay import Relay, SMTPUnavailable
from mailapp.sending.settings import SendSettings

logger = logging.getLogger(__name__)


def enqueue_sending(campaign_id: int) -> None:
    """Queue SEND_PARALLELISM batch tasks for a campaign that is sending (after the commit that made it
    so). Each claims its own rows, so extra or duplicate calls only add tasks that find nothing."""
    for _ in range(int(current_app.config["SEND_PARALLELISM"])):
        send_batch.delay(campaign_id)


@shared_task(
    bind=True,
    name="mailapp.sending.tasks.send_batch",
    # A database hiccup (failover, too many connections) retries the whole task; leases keep it safe.
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=8,
)
def send_batch(self, campaign_id: int) -> dict[str, object]:  # Celery's bound task
    """Send the campaign's due pending deliveries, batch after batch, until none is left. Deferred rows
    (4xx) bring the task back when they fall due. An unreachable SMTP server is retried with backoff
    SEND_CONNECT_RETRIES times; after that the campaign pauses with the reason."""
    try:
        result = engine.send_campaign(
            campaign_id, Relay.from_app(current_app), SendSettings.from_config(current_app.config),
            RateLimiter.for_app(),
        )
    except SoftTimeLimitExceeded:
        # The engine has handed its rows back (and failed a row stuck in its render); a fresh task
        # carries on with the rest.
        logger.warning("campaign %s: send task reached its soft time limit; continuing in a new task",
                       campaign_id)
        send_batch.delay(campaign_id)
        return {"stopped": "time limit", "continued": True}
    except SMTPUnavailable as error:
        db.session.rollback()
        retries = int(current_app.config["SEND_CONNECT_RETRIES"])
        if self.request.retries < retries:
            delay = float(current_app.config["SEND_CONNECT_RETRY_SECONDS"]) * 2**self.request.retries
            logger.warning("campaign %s: %s; retrying in %.1fs", campaign_id, error.message, delay)
            raise self.retry(countdown=delay, max_retries=retries, exc=error) from error
        ledger.pause_campaign(campaign_id, f"{error.message} (tried {retries + 1} times)")
        db.session.commit()
        return {"stopped": "paused", "reason": error.message}
    if result.run_over:
        send_batch.delay(campaign_id)
    elif result.retry_in is not None:
        send_batch.apply_async((campaign_id,), countdown=result.retry_in)
    return {"sent": result.sent, "stopped": result.stopped, "retry_in": result.retry_in,
            "continued": result.run_over}


# campaign id -> when the sweeper last queued batches for it: it does not queue again for a minute,
# so a campaign waiting behind a long one does not pile up tasks. Redis shares this across processes.
_recently_queued: dict[int, float] = {}
_REQUEUE_QUIET_SECONDS = 60


def _may_requeue(campaign_id: int) -> bool:
    redis_url = current_app.config.get("REDIS_URL") or ""
    if redis_url:
        from mailapp.sending.ratelimit import _redis_client

        key = f"mailapp:sweep-requeued:{campaign_id}"
        return bool(_redis_client(redis_url).set(key, "1", nx=True, ex=_REQUEUE_QUIET_SECONDS))
    now = time.monotonic()
    if now - _recently_queued.get(campaign_id, float("-inf")) < _REQUEUE_QUIET_SECONDS:
        return False
    _recently_queued[campaign_id] = now
    return True


@shared_task(name="mailapp.sending.tasks.sweep_expired_leases")
def sweep_expired_leases() -> dict[str, object]:
    """Beat, every 10 s: expired leases back to pending, and batches queued again for sending campaigns
    that have due rows but nobody working on them (lost broker messages)."""
    released = ledger.release_expired_leases()
    requeued = list(filter(_may_requeue, ledger.campaigns_needing_workers()))
    for campaign_id in requeued:
        enqueue_sending(campaign_id)
    if released or requeued:
        logger.info("sweep: %s leases released, batches queued for campaigns %s", released, requeued)
    return {"released": released, "requeued": requeued}
