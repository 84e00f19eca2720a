"""The send engine: the send loop and its policy. Claim pending deliveries in leased batches (ledger.py),
build each message (compose.py), send them over one SMTP connection (relay.py, pipelined by
pipeline.py), record each outcome, pause on runs of failures, and mark the campaign sent when nothing
is left. The relay and the settings are handed in; the engine reads nothing from the app itself.

Exactly once, as far as SMTP allows. A batch claims its rows atomically (FOR UPDATE SKIP LOCKED on
PostgreSQL; on SQLite BEGIN IMMEDIATE serialises writers), so two tasks never hold the same row. A row
is marked sent in a small group right after the server accepted it: a worker that dies can re-send at
most the messages of its current group that the server had accepted (SEND_MARK_GROUP, default 20)
plus, over BDAT, the messages written ahead of their answers (SEND_SMTP_PIPELINE_WINDOW, default 20),
once its lease expires; it can never lose one, because the sweeper hands expired leases back."""

from __future__ import annotations

import contextlib
import smtplib
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from jinja2.exceptions import SecurityError

from mailapp.errors import MailappError
from mailapp.extensions import db
from mailapp.models import Campaign, CampaignStatus, MailEventKind, SubscriberStatus, utcnow
from mailapp.sending import ledger, pipeline, suppression, templating
from mailapp.sending.bounce_codes import classify, enhanced_code
from mailapp.sending.caps import CapReached
from mailapp.sending.compose import Compiled, build_message, compile_campaign, delivery_recipient
from mailapp.sending.ledger import ClaimedRow, Outcomes
from mailapp.sending.message import ascii_address
from mailapp.sending.ratelimit import RateLimiter
from mailapp.sending.relay import Relay, RelayDeferring, SMTPUnavailable, describe, quit_connection
from mailapp.sending.settings import SendSettings
from mailapp.sending.verp import verp_for


@dataclass
class RunResult:
    stopped: str = ""  # why the run stopped early: paused, cancelled, ...
    sent: int = 0
    retry_in: float | None = None  # re-run after this many seconds for deferred rows
    run_over: bool = False  # SEND_RUN_SECONDS ran out with work left: the task queues its continuation
    waiting: CapReached | None = None  # the relay's hourly or daily cap stopped the run


def send_campaign(
    campaign_id: int, relay: Relay | None = None, settings: SendSettings | None = None,
    limiter: RateLimiter | None = None,
) -> RunResult:
    """Claim and send batches of the campaign until none is left (or it is paused or cancelled), over
    one SMTP connection; then finish the campaign if it is done. SMTPUnavailable when the server
    cannot be reached (the claimed rows are back to pending by then). This is a task's body: it owns
    its transactions and commits as it goes. The relay, settings and rate limiter are the current
    app's unless given."""
    result = RunResult()
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != CampaignStatus.SENDING:
        result.stopped = campaign.status if campaign is not None else "missing"
        db.session.rollback()
        return result
    try:
        settings = settings or SendSettings.for_current_app()
        compiled = compile_campaign(
            campaign, settings.public_url, verp_for(settings.bounce_domain, settings.secret_key)
        )
    except MailappError as error:
        ledger.pause_campaign(campaign_id, f"The campaign cannot be rendered: {error.message}")
        db.session.commit()
        result.stopped = CampaignStatus.PAUSED
        return result
    db.session.commit()

    relay = relay or Relay.for_current_app()
    limiter = limiter or RateLimiter.for_app()
    lease_seconds = settings.lease_seconds
    batch_size = settings.batch_size
    if limiter.enabled:
        # A batch must finish well inside its lease even at the configured rate.
        batch_size = max(1, min(batch_size, int(limiter.rate * lease_seconds / 4)))
    outcomes = Outcomes(relay_name=relay.name)
    run_ends = time.monotonic() + settings.run_seconds
    with relay.smtp_connection() as host:
        connection = [host]
        try:
            while not result.stopped:
                if time.monotonic() >= run_ends:
                    result.run_over = True
                    return result
                rows = ledger.claim_batch(campaign_id, batch_size, lease_seconds)
                if not rows:
                    break
                try:
                    _send_rows(
                        campaign_id, compiled, rows, connection, relay, settings, limiter, outcomes, result
                    )
                except SoftTimeLimitExceeded:
                    _hand_back(rows, outcomes, compiled.message_id_suffix, settings)
                    raise
                if outcomes.out_of_time:
                    result.run_over = True
                    return result
                if outcomes.capped is not None:
                    result.waiting = outcomes.capped
                    return result
                if _deferring(relay, outcomes):
                    raise RelayDeferring(
                        f"The SMTP server {relay.address} answered {outcomes.consecutive_deferrals} messages "
                        f"in a row with a temporary failure; the last: {outcomes.last_error}"
                    )
        finally:
            if connection[0] is not host and connection[0] is not _LOST:
                quit_connection(connection[0])  # the connection a reconnect opened
    if not result.stopped:
        ledger.finish_if_done(campaign_id)
        result.retry_in = ledger.next_retry_delay(campaign_id)
    return result


def _hand_back(rows: list[ClaimedRow], outcomes: Outcomes, message_id_suffix: str, settings: SendSettings
               ) -> None:
    """The task reached its soft time limit mid-batch, outside a render (those stop the batch in
    order, see _message_for): write the outcomes it knows and give the rest of its rows back (as a
    crash would, minus the wait for the lease), then commit."""
    db.session.rollback()
    _write_outcomes(outcomes, message_id_suffix, settings)
    ledger.release([row.id for row in rows])
    db.session.commit()


def _write_outcomes(outcomes: Outcomes, message_id_suffix: str, settings: SendSettings) -> None:
    """The outcomes, and the hard bounces among them (subscriber bounced, address suppressed, the
    campaign paused if they are too many), in the caller's transaction."""
    ledger.write_outcomes(outcomes, message_id_suffix)
    if outcomes.hard_bounces:
        suppression.record_send_bounces(outcomes.hard_bounces, settings.bounce_policy)
        outcomes.hard_bounces.clear()


def _send_rows(
    campaign_id: int, compiled: Compiled, rows: list[ClaimedRow], connection: list[Any], relay: Relay,
    settings: SendSettings, limiter: RateLimiter, outcomes: Outcomes, result: RunResult,
) -> None:
    """Send one claimed batch, recording outcomes in groups (see _Checkpoints). Reconnects once when
    the server drops the connection; SMTPUnavailable when it cannot be reached again."""
    queue = deque(rows)
    drops_in_a_row = 0  # connection losses with no message answered in between
    checkpoints = _Checkpoints(
        campaign_id, [row.id for row in rows], outcomes, result, settings, compiled.message_id_suffix
    )
    checkpoints.relay = relay
    while queue and not result.stopped:
        try:
            for submitted in pipeline.submit(
                connection[0], _outgoing(queue, compiled, limiter, checkpoints),
                window=settings.pipeline_window, chunking=settings.chunking,
                finish_on=(SoftTimeLimitExceeded,),
            ):
                drops_in_a_row = 0
                row = submitted.message.key
                if submitted.accepted:
                    outcomes.sent.append(row.id)
                    outcomes.consecutive_failures = outcomes.consecutive_deferrals = 0
                else:
                    _smtp_reply(outcomes, settings, row, submitted.code, submitted.reply)
        except pipeline.ConnectionLost as lost:
            # Their content went out but no answer came back: they may have been taken, so they are
            # retried later and counted as an attempt (at most these can arrive twice: one message with
            # DATA, at most SEND_SMTP_PIPELINE_WINDOW with BDAT).
            why = f"Connection to {relay.address} lost: {lost.reason}"
            streak = outcomes.consecutive_failures
            for message in lost.in_doubt:
                _defer(outcomes, settings, message.key, None, why)
            if lost.in_doubt:
                # One broken connection is one failure of the relay, however many messages it left in
                # doubt: a window of them must not pause the campaign (SEND_MAX_CONSECUTIVE_FAILURES).
                outcomes.consecutive_failures = streak + 1
            queue.extendleft(message.key for message in reversed(lost.unsent))
            drops_in_a_row += 1
            if drops_in_a_row > 1:
                # Dropped again before it answered anything: retrying here would loop; the task's
                # retries with backoff (and then the pause) handle a relay in this state.
                quit_connection(connection[0])
                outcomes.last_error = (
                    f"The SMTP server {relay.address} keeps dropping the connection: {lost.reason}"
                )
                connection[0] = _LOST
            else:
                connection[0] = _reconnect(relay, connection[0], outcomes, lost.reason)
            if connection[0] is _LOST:
                checkpoints.record()
                ledger.release([row.id for row in queue])
                db.session.commit()
                raise SMTPUnavailable(outcomes.last_error) from lost
    if result.stopped:
        checkpoints.record()  # the message that was in flight when the campaign stopped
        db.session.commit()
    elif not checkpoints.write(final=True):
        db.session.commit()  # stopped with nothing left to release


def _outgoing(
    queue: deque[ClaimedRow], compiled: Compiled, limiter: RateLimiter, checkpoints: _Checkpoints
) -> Iterator[pipeline.Outgoing]:
    """The batch's messages, built one at a time as the connection asks for them; between two, the
    outcomes so far are written when a group is due, and the batch stops if the campaign did."""
    while queue:
        if checkpoints.outcomes.out_of_time:
            ledger.release([row.id for row in queue])  # committed with the batch's last outcomes
            queue.clear()
            return
        if checkpoints.due() and not checkpoints.write():
            ledger.release([row.id for row in queue])
            queue.clear()
            db.session.commit()
            return
        if _deferring(checkpoints.relay, checkpoints.outcomes):
            # The relay defers everything and has a backup: the rest goes back for the backup to send.
            ledger.release([row.id for row in queue])  # committed with the batch's last outcomes
            queue.clear()
            return
        row = queue.popleft()
        message = _message_for(row, compiled, checkpoints.outcomes)
        if message is not None:
            try:
                limiter.wait()
            except CapReached as reached:
                # The relay's cap is used up: this row and the rest go back, to wait for its window.
                checkpoints.outcomes.capped = reached
                queue.appendleft(row)
                ledger.release([row.id for row in queue])  # committed with the batch's last outcomes
                queue.clear()
                return
            yield message


def _message_for(row: ClaimedRow, compiled: Compiled, outcomes: Outcomes) -> pipeline.Outgoing | None:
    """The row's message, or None with the failure recorded when it cannot be sent."""
    subscriber = row.subscriber
    if subscriber is None or subscriber.status != SubscriberStatus.ACTIVE:
        why = "deleted" if subscriber is None else subscriber.status
        outcomes.failed.append((row.id, None, f"Not sent: the subscriber was {why} before sending.", False))
        return None
    if row.suppressed:
        outcomes.failed.append((row.id, None, "Not sent: the address was suppressed before sending.", False))
        return None
    try:
        _, raw = build_message(compiled, delivery_recipient(row.id, row.email, subscriber))
        recipient_address = ascii_address("recipient address", row.email)
    except SoftTimeLimitExceeded:
        # Stuck on this row's render past the task's soft limit: this row fails, the rest of the batch
        # goes back once the messages in flight are answered (see _outgoing).
        _render_failed(outcomes, row.id, "Not sent: building the message took longer than the send "
                       "task's time limit (SEND_TASK_SOFT_TIME_LIMIT).")
        outcomes.out_of_time = True
        return None
    except MailappError as error:
        _render_failed(outcomes, row.id, error.message)
        return None
    except Exception as error:  # a render failure (say, a filter on odd data) fails one row
        # A sandbox refusal or a render limit says which, and on which template line.
        reason = templating.render_error(error).message if isinstance(error, SecurityError) else (
            f"The message could not be rendered: {describe(error)}"
        )
        _render_failed(outcomes, row.id, reason)
        return None
    outcomes.consecutive_render_failures = 0
    return pipeline.Outgoing(row, compiled.envelope_sender(row.id), recipient_address, raw)


class _Checkpoints:
    """When and how a batch writes its outcomes: every SEND_MARK_GROUP outcomes or SEND_MARK_SECONDS,
    whichever comes first, and at once on a run of failures. Each write also checks that the campaign
    is still sending (pausing it after too many failures in a row) and renews the batch's lease."""

    def __init__(
        self, campaign_id: int, row_ids: list[int], outcomes: Outcomes, result: RunResult,
        settings: SendSettings, message_id_suffix: str,
    ) -> None:
        self.campaign_id, self.row_ids, self.outcomes, self.result = campaign_id, row_ids, outcomes, result
        self.settings = settings
        self.lease_seconds, self.message_id_suffix = settings.lease_seconds, message_id_suffix
        self.mark_group = settings.mark_group
        self.mark_seconds = settings.mark_seconds
        self.max_failures = settings.max_consecutive_failures
        self.last_write = self.lease_renewed_at = time.monotonic()
        self.relay: Relay | None = None

    def due(self) -> bool:
        return (
            len(self.outcomes) >= self.mark_group
            or self.outcomes.consecutive_failures >= self.max_failures
            or self.outcomes.consecutive_render_failures >= self.max_failures
            or time.monotonic() - self.last_write >= self.mark_seconds
        )

    def record(self) -> None:
        """Write the outcomes so far (the caller commits)."""
        self.result.sent += len(self.outcomes.sent)
        _write_outcomes(self.outcomes, self.message_id_suffix, self.settings)

    def write(self, *, final: bool = False) -> bool:
        """Write the outcomes so far and commit; False (with result.stopped set) when the campaign is no
        longer sending, and then the caller releases the rows it has not sent and commits: the pause
        and the release become visible together, never a paused campaign with rows still leased."""
        outcomes = self.outcomes
        self.record()
        status = ledger.campaign_status(self.campaign_id)
        if outcomes.consecutive_failures >= self.max_failures and status == CampaignStatus.SENDING:
            ledger.pause_campaign(
                self.campaign_id,
                f"{outcomes.consecutive_failures} messages in a row failed; the last: {outcomes.last_error}",
            )
            status = CampaignStatus.PAUSED
        elif outcomes.consecutive_render_failures >= self.max_failures and status == CampaignStatus.SENDING:
            ledger.pause_campaign(
                self.campaign_id,
                f"{outcomes.consecutive_render_failures} messages in a row could not be built; the last: "
                f"{outcomes.last_render_error}",
            )
            status = CampaignStatus.PAUSED
        if status != CampaignStatus.SENDING:
            self.result.stopped = status or "missing"
            return False
        now = time.monotonic()
        # Renew the lease on what is left whenever a quarter of it has passed, so a slow relay never
        # lets the sweeper hand rows this batch still holds to another worker.
        if not final and now - self.lease_renewed_at > self.lease_seconds / 4:
            ledger.renew_lease(self.row_ids, self.lease_seconds)
            self.lease_renewed_at = now
        db.session.commit()
        self.last_write = now
        return True


_LOST = object()  # the connection slot after the server dropped us and could not be reached again


def _reconnect(relay: Relay, host: Any, outcomes: Outcomes, reason: str) -> Any:
    with contextlib.suppress(OSError, smtplib.SMTPException):
        host.close()
    try:
        return relay.connect()
    except (OSError, smtplib.SMTPException) as error:
        outcomes.last_error = (
            f"Cannot connect to the SMTP server {relay.address} ({reason}): {describe(error)}"
        )
        return _LOST


def _deferring(relay: Relay | None, outcomes: Outcomes) -> bool:
    limit = relay.failover_after_deferrals if relay is not None else None
    return bool(limit) and outcomes.consecutive_deferrals >= limit


def _smtp_reply(outcomes: Outcomes, settings: SendSettings, row: ClaimedRow, code: int, reply: str) -> None:
    message = f"{code} {reply}".strip()
    if 400 <= code < 500:
        outcomes.consecutive_deferrals += 1
        _defer(outcomes, settings, row, code, message)
        return
    outcomes.consecutive_deferrals = 0
    _failed(outcomes, row.id, code, message)
    if classify(str(code), reply) == MailEventKind.HARD_BOUNCE:
        outcomes.hard_bounces.append(suppression.IncomingEvent(
            kind=MailEventKind.HARD_BOUNCE, email=row.email, source="smtp", delivery_id=row.id,
            status_code=enhanced_code(reply) or str(code), diagnostic=message, dedupe_key=f"smtp:{row.id}",
        ))


def _failed(outcomes: Outcomes, delivery_id: int, code: int | None, error: str, *, attempted: bool = True
            ) -> None:
    outcomes.failed.append((delivery_id, code, error, attempted))
    outcomes.consecutive_failures += 1
    outcomes.last_error = error


def _render_failed(outcomes: Outcomes, delivery_id: int, error: str) -> None:
    """A message that could not be built: it fails alone, and does not count towards the SMTP streak."""
    outcomes.failed.append((delivery_id, None, error, False))
    outcomes.consecutive_render_failures += 1
    outcomes.last_render_error = error


def _defer(outcomes: Outcomes, settings: SendSettings, row: ClaimedRow, code: int | None, error: str) -> None:
    attempts = row.attempts + 1
    if attempts >= settings.max_attempts:
        _failed(outcomes, row.id, code, f"Gave up after {attempts} attempts: {error}")
        return
    outcomes.consecutive_failures += 1
    outcomes.last_error = error
    delay = settings.retry_base_seconds * 2 ** (attempts - 1)
    outcomes.deferred.append((row.id, code, error, utcnow() + timedelta(seconds=delay)))
