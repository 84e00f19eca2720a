"""Celery tasks of the send engine: the batch sender (with its relay's failover and caps), its fan-out,
the lease sweeper (beat), and the sender of system mail (confirmations, welcomes, invites, resets)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy.exc import OperationalError

from mailapp.extensions import db
from mailapp.models import SystemMessage, utcnow
from mailapp.secret_box import SecretBox
from mailapp.sending import engine, ledger, relay_choice, system_mail
from mailapp.sending.caps import CapReached
from mailapp.sending.relay import RelayDeferring, SMTPUnavailable
from mailapp.sending.settings import SendSettings

logger = logging.getLogger(__name__)


def enqueue_sending(campaign_id: int, countdown: float | None = None) -> None:
    """Queue SEND_PARALLELISM batch tasks (at most the relay's max connections) for a campaign that is
    sending (after the commit that made it so). Each claims its own rows, so extra or duplicate calls
    only add tasks that find nothing."""
    tasks = relay_choice.batch_task_count(campaign_id, int(current_app.config["SEND_PARALLELISM"]))
    db.session.commit()  # a read: end its transaction before the caller goes on
    for _ in range(tasks):
        send_batch.apply_async((campaign_id,), countdown=countdown)


def _choose_relay(campaign_id: int | None) -> relay_choice.ChosenRelay:
    return relay_choice.choose_relay(
        campaign_id, current_app.config, current_app.extensions["mail"], current_app.instance_path
    )


def _fail_over(campaign_id: int, chosen: relay_choice.ChosenRelay, error: SMTPUnavailable
               ) -> dict[str, object]:
    """The chosen relay is unreachable and has a backup: every worker sends through the backup until
    RELAY_RECOVERY_SECONDS have passed, and this campaign carries on at once."""
    relay_choice.mark_failed_over(
        chosen.relay.relay_id or 0, error.message, float(current_app.config["RELAY_RECOVERY_SECONDS"])
    )
    db.session.commit()
    logger.warning("campaign %s: relay %s failed over to its backup: %s", campaign_id, chosen.relay.name,
                   error.message)
    send_batch.delay(campaign_id)
    return {"stopped": "failed over", "relay": chosen.relay.name, "reason": error.message}


# A database hiccup (failover, too many connections) retries the whole send task; leases (batches) and
# the row's status (system mail) keep it from sending twice.
_RETRY_ON_DATABASE_ERRORS = {
    "autoretry_for": (OperationalError,), "retry_backoff": True, "retry_backoff_max": 60, "max_retries": 8,
}


def _connect_retry_delay(retries_done: int) -> float | None:
    """How long to wait before trying an unreachable relay again: SEND_CONNECT_RETRY_SECONDS, doubled
    each time, SEND_CONNECT_RETRIES times; None once they are used up."""
    if retries_done >= int(current_app.config["SEND_CONNECT_RETRIES"]):
        return None
    return float(current_app.config["SEND_CONNECT_RETRY_SECONDS"]) * 2**retries_done


@shared_task(bind=True, name="mailapp.sending.tasks.send_batch", **_RETRY_ON_DATABASE_ERRORS)
def send_batch(self, campaign_id: int) -> dict[str, object]:  # Celery's bound task
    """Send the campaign's due pending deliveries, batch after batch, until none is left. Deferred rows
    (4xx) bring the task back when they fall due. An unreachable SMTP server is retried with backoff
    SEND_CONNECT_RETRIES times; after that the campaign fails over to the relay's backup, or pauses with
    the reason when it has none. A relay's cap stops the run; the campaign waits for the window."""
    relay_choice.end_hold(campaign_id)
    db.session.commit()
    chosen = _choose_relay(campaign_id)
    db.session.commit()  # reads only: end the transaction before the send loop takes its own
    try:
        result = engine.send_campaign(
            campaign_id, chosen.relay, SendSettings.from_config(current_app.config), chosen.limiter
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
        if chosen.has_backup and (chosen.probing or isinstance(error, RelayDeferring)):
            # A failed probe, or a relay that is up but defers everything: straight to the backup.
            return _fail_over(campaign_id, chosen, error)
        retries = int(current_app.config["SEND_CONNECT_RETRIES"])
        if (delay := _connect_retry_delay(self.request.retries)) is not None:
            logger.warning("campaign %s: %s; retrying in %.1fs", campaign_id, error.message, delay)
            raise self.retry(countdown=delay, max_retries=retries, exc=error) from error
        if chosen.has_backup:
            return _fail_over(campaign_id, chosen, error)
        ledger.pause_campaign(campaign_id, f"{error.message} (tried {retries + 1} times)")
        db.session.commit()
        return {"stopped": "paused", "reason": error.message}
    if chosen.probing and chosen.relay.relay_id is not None and (result.sent or not result.stopped):
        relay_choice.mark_recovered(chosen.relay.relay_id)
        db.session.commit()
        logger.info("campaign %s: relay %s answered its probe; sending through it again", campaign_id,
                    chosen.relay.name)
    if result.waiting is not None:
        return _wait_for_cap(campaign_id, result.waiting, result.sent)
    if result.run_over:
        send_batch.delay(campaign_id)
    elif result.retry_in is not None:
        send_batch.apply_async((campaign_id,), countdown=result.retry_in)
    return {"sent": result.sent, "stopped": result.stopped, "retry_in": result.retry_in,
            "continued": result.run_over}


def commit_and_send(messages: Sequence[SystemMessage | None]) -> None:
    """Commit the caller's work with these system messages' rows (system_mail.queue_system_message),
    then queue their sending: the worker sends, so a web request answers the same whether or not the
    mail goes out."""
    ids = [message.id for message in messages if message is not None]
    db.session.commit()
    for message_id in ids:
        send_system_message.delay(message_id)


@shared_task(bind=True, name="mailapp.sending.tasks.send_system_message", **_RETRY_ON_DATABASE_ERRORS)
def send_system_message(self, system_message_id: int) -> dict[str, object]:  # Celery's bound task
    """Send one system message through the default relay choice. A relay that is unreachable or
    answers 4xx is tried again SEND_CONNECT_RETRIES times, waiting SEND_CONNECT_RETRY_SECONDS doubled
    each time; then the row is failed with the last reason. A 5xx fails the row with the reply."""
    chosen = _choose_relay(None)
    db.session.commit()  # reads only
    try:
        row = system_mail.deliver_system_message(
            system_message_id, chosen.relay, chosen.limiter, current_app.config["MAIL_DEFAULT_SENDER"],
            SecretBox.for_current_app(),
        )
    except CapReached as waiting:
        db.session.rollback()
        delay = max(0.0, (waiting.resumes_at - utcnow()).total_seconds()) + _CAP_WINDOW_MARGIN_SECONDS
        logger.info("system message %s: %s", system_message_id, waiting.reason)
        # The cap's wait is not a failure: it does not use up the retries.
        send_system_message.apply_async((system_message_id,), countdown=delay)
        return {"stopped": "waiting", "reason": waiting.reason}
    except (system_mail.SystemMailDeferred, SMTPUnavailable) as error:
        db.session.rollback()
        retries = int(current_app.config["SEND_CONNECT_RETRIES"])
        if (delay := _connect_retry_delay(self.request.retries)) is not None:
            logger.warning("system message %s: %s; retrying in %.1fs", system_message_id, error.message,
                           delay)
            raise self.retry(countdown=delay, max_retries=retries, exc=error) from error
        row = db.session.get(SystemMessage, system_message_id)
        if row is not None:
            system_mail.mark_failed(
                row, getattr(error, "smtp_code", None), f"{error.message} (tried {retries + 1} times)"
            )
        return {"status": "failed", "reason": error.message}
    return {"status": row.status if row is not None else "gone"}


def _wait_for_cap(campaign_id: int, waiting: CapReached, sent: int) -> dict[str, object]:
    """The relay's cap is used up: the campaign's page says why and until when, and the first task to
    get here queues the continuation for when the window opens (the sweeper is the backstop)."""
    first = relay_choice.hold_for_cap(campaign_id, waiting.resumes_at, waiting.reason)
    db.session.commit()
    if first:
        delay = max(0.0, (waiting.resumes_at - utcnow()).total_seconds()) + _CAP_WINDOW_MARGIN_SECONDS
        enqueue_sending(campaign_id, countdown=delay)
        logger.info("campaign %s: %s", campaign_id, waiting.reason)
    return {"sent": sent, "stopped": "waiting", "reason": waiting.reason}


# Continuations after a cap start this long after the window opens, so clocks a little apart (this
# machine's, Redis's) agree that it has.
_CAP_WINDOW_MARGIN_SECONDS = 1.0


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
