"""The send engine: snapshot a campaign's recipients, claim pending deliveries in leased batches, send
them over one SMTP connection (Flask-Mail's, pipelined by sending/pipeline.py), record each outcome,
pause on runs of failures, and mark the campaign sent when nothing is left.

Exactly once, as far as SMTP allows. A batch claims its rows atomically (FOR UPDATE SKIP LOCKED on
PostgreSQL; on SQLite BEGIN IMMEDIATE serialises writers), so two tasks never hold the same row. A row
is marked sent in a small group right after the server accepted it: a worker that dies can re-send at
most the messages of its current group that the server had accepted (SEND_MARK_GROUP, default 20)
once its lease expires; it can never lose one, because the sweeper hands expired leases back."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import smtplib
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app
from jinja2.exceptions import SecurityError
from sqlalchemy import String, bindparam, cast, exists, func, literal, or_, select, text, update

from mailapp.db_setup import is_postgres
from mailapp.errors import MailappError, NotFoundError, ValidationError
from mailapp.extensions import db, mail
from mailapp.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Layout,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from mailapp.sending import pipeline, templating
from mailapp.sending.links import prepare_layout
from mailapp.sending.message import (
    Envelope,
    FastMessageBuilder,
    SendError,
    address_domain,
    ascii_address,
    make_message_id,
    message_date,
    message_id_suffix,
)
from mailapp.sending.ratelimit import RateLimiter
from mailapp.sending.render import CampaignRenderer, CampaignSource, Recipient, renderer_for

log = logging.getLogger(__name__)

def setting(name: str) -> Any:
    """A send setting (SEND_*); config.py documents each."""
    return current_app.config[name]


class SMTPUnavailable(SendError):  # noqa: N818 - reads as the condition it reports
    """The SMTP server cannot be reached (or dropped us and cannot be reached again)."""


# -- snapshot and stats ---------------------------------------------------------------------------------

_SNAPSHOT_SQL = text(
    """
    INSERT INTO deliveries (campaign_id, subscriber_id, email, status, attempts, message_id, error,
                            open_count, click_count)
    SELECT :campaign_id, s.id, s.email, :pending, 0, '', '', 0, 0
    FROM subscribers s
    WHERE s.status = :active
      AND EXISTS (SELECT 1 FROM list_members m JOIN campaign_lists cl ON cl.list_id = m.list_id
                  WHERE cl.campaign_id = :campaign_id AND m.subscriber_id = s.id)
    ORDER BY s.id
    ON CONFLICT (campaign_id, subscriber_id) DO NOTHING
    """
)
_LINK_SQL = text(
    "INSERT INTO links (campaign_id, position, url) VALUES (:campaign_id, :position, :url) "
    "ON CONFLICT (campaign_id, position) DO NOTHING"
)


def snapshot_recipients(campaign_id: int) -> int:
    """One delivery row per active member of the campaign's lists (each subscriber once, however many
    of the lists they are on), and the tracked links. Idempotent; flushes, the caller commits."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"Campaign {campaign_id} not found.")
    db.session.flush()
    db.session.execute(
        _SNAPSHOT_SQL,
        {"campaign_id": campaign_id, "pending": DeliveryStatus.PENDING, "active": SubscriberStatus.ACTIVE},
    )
    if campaign.track_clicks:
        layout_html = campaign.layout.html if campaign.layout is not None else ""
        _, urls = prepare_layout(layout_html or _default_layout(), track_clicks=True)
        if urls:
            db.session.execute(
                _LINK_SQL,
                [{"campaign_id": campaign_id, "position": n, "url": url} for n, url in enumerate(urls)],
            )
    campaign.total_recipients = db.session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.campaign_id == campaign_id)
    )
    if campaign.snapshot_taken_at is None:
        campaign.snapshot_taken_at = utcnow()
    db.session.flush()
    return campaign.total_recipients


def _default_layout() -> str:
    from mailapp.sending.render import DEFAULT_LAYOUT

    return DEFAULT_LAYOUT


def campaign_stats(campaign_id: int) -> dict[str, int]:
    """{total, pending, sending, sent, failed} from one GROUP BY over the campaign's deliveries."""
    stats = {str(status): 0 for status in DeliveryStatus}
    rows = db.session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.status)
    )
    for status, count in rows:
        stats[status] = count
    stats["total"] = sum(stats.values())
    return stats


# -- rendering ------------------------------------------------------------------------------------------


def _campaign_source(campaign: Campaign) -> CampaignSource:
    layout: Layout | None = campaign.layout
    return CampaignSource(
        id=campaign.id, name=campaign.name, subject=campaign.subject, from_name=campaign.from_name,
        from_email=campaign.from_email, reply_to=campaign.reply_to or "",
        layout_html=layout.html if layout is not None else "", message=campaign.message or "",
        track_opens=campaign.track_opens, track_clicks=campaign.track_clicks,
        updated_at=campaign.updated_at, layout_updated_at=getattr(layout, "updated_at", None),
    )


@dataclass
class _Compiled:
    renderer: CampaignRenderer
    builder: FastMessageBuilder
    domain: str
    message_id_suffix: str  # see message_id_suffix(): one per send run


def _compile(campaign: Campaign) -> _Compiled:
    source = _campaign_source(campaign)
    renderer = renderer_for(source, current_app.config["PUBLIC_URL"])
    builder = FastMessageBuilder(
        from_name=source.from_name, from_email=source.from_email, reply_to=source.reply_to
    )
    domain = address_domain(source.from_email)
    return _Compiled(renderer, builder, domain, message_id_suffix(domain))


def _recipient(delivery_id: int, email: str, subscriber: Any | None) -> Recipient:
    if subscriber is None:
        return Recipient(delivery_id=delivery_id, email=email)
    return Recipient(
        delivery_id=delivery_id, email=email, name=subscriber.name or "",
        subscriber_id=subscriber.id, attributes=subscriber.attributes or {},
    )


def _build(compiled: _Compiled, recipient: Recipient, *, subject_prefix: str = "") -> tuple[str, bytes]:
    rendered = compiled.renderer.render(recipient)
    message_id = make_message_id(recipient.delivery_id, compiled.message_id_suffix)
    raw = compiled.builder.build(
        Envelope(
            to_name=recipient.name, to_email=recipient.email, subject=subject_prefix + rendered.subject,
            text=rendered.text, html=rendered.html, message_id=message_id, date=message_date(),
            unsubscribe_url=rendered.unsubscribe_url, text_qp=rendered.text_qp, html_qp=rendered.html_qp,
        )
    )
    return message_id, raw


@contextlib.contextmanager
def smtp_connection() -> Iterator[smtplib.SMTP | None]:
    """One Flask-Mail connection (None when MAIL_SUPPRESS_SEND is on); SMTPUnavailable if it cannot
    be opened. Closing never raises: a server that already dropped us is simply closed."""
    try:
        host = _connect()
    except (OSError, smtplib.SMTPException) as error:
        raise SMTPUnavailable(f"Cannot connect to the SMTP server {_relay()}: {_describe(error)}") from error
    try:
        yield host
    finally:
        _quit(host)


def _connect() -> smtplib.SMTP | None:
    connection = mail.connect()
    connection.__enter__()
    if connection.host is not None and connection.host.sock is not None:
        # Flask-Mail sets no timeout: without one, a relay that stops answering would hold the task
        # (and its leased rows) forever.
        connection.host.sock.settimeout(float(setting("SEND_SMTP_TIMEOUT_SECONDS")))
    return connection.host


def _quit(host: smtplib.SMTP | None) -> None:
    if host is not None:
        try:
            host.quit()
        except (OSError, smtplib.SMTPException):
            host.close()


def _relay() -> str:
    return f"{current_app.config['MAIL_SERVER']}:{current_app.config['MAIL_PORT']}"


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


# -- test messages --------------------------------------------------------------------------------------


def send_test_messages(campaign_id: int, emails: list[str], subscriber_id: int | None) -> None:
    """Send the campaign now to these addresses, rendered for the subscriber (or the sample one), with
    "[Test] " before the subject. No delivery rows. SendError on SMTP failure."""
    from mailapp.addresses import normalize_email

    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"Campaign {campaign_id} not found.")
    if not emails:
        raise ValidationError("Give at least one address to send the test to.", [{"field": "emails"}])
    addresses = [normalize_email(address) for address in emails]
    subscriber: Any
    if subscriber_id is not None:
        subscriber = db.session.get(Subscriber, subscriber_id)
        if subscriber is None:
            raise NotFoundError(f"Subscriber {subscriber_id} not found.")
    else:
        subscriber = type("SampleSubscriber", (), dict(templating.SAMPLE_SUBSCRIBER))()
    compiled = _compile(campaign)
    with smtp_connection() as host:
        for address in addresses:
            recipient = Recipient(
                delivery_id=0, email=address, name=subscriber.name or "",
                subscriber_id=subscriber.id, attributes=subscriber.attributes or {},
            )
            # Each test message its own Message-ID: they all stand for delivery 0.
            compiled = dataclasses.replace(compiled, message_id_suffix=message_id_suffix(compiled.domain))
            _, raw = _build(compiled, recipient, subject_prefix="[Test] ")
            if host is None:
                continue
            try:
                host.sendmail(compiled.builder.sender, [ascii_address("address", address)], raw)
            except smtplib.SMTPRecipientsRefused as error:
                code, reply = next(iter(error.recipients.values()))
                raise SendError(f"The server refused {address}: {code} {_text(reply)}") from error
            except (OSError, smtplib.SMTPException) as error:
                raise SendError(f"Sending the test to {address} failed: {_describe(error)}") from error


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


# -- claiming and recording -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    email: str
    attempts: int
    subscriber: Any | None


def claim_batch(campaign_id: int, limit: int, lease_seconds: float) -> list[ClaimedRow]:
    """Lease up to `limit` due pending rows of the campaign, oldest first, and commit."""
    now = utcnow()
    due = (
        select(Delivery.id)
        .where(
            Delivery.campaign_id == campaign_id,
            Delivery.status == DeliveryStatus.PENDING,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        )
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(due.scalar_subquery()))
        .values(status=DeliveryStatus.SENDING, leased_until=now + timedelta(seconds=lease_seconds))
        .returning(Delivery.id, Delivery.email, Delivery.attempts, Delivery.subscriber_id),
        execution_options={"synchronize_session": False},
    ).all()
    subscriber_ids = [row.subscriber_id for row in claimed if row.subscriber_id is not None]
    subscribers = {
        row.id: row
        for row in db.session.execute(
            select(Subscriber.id, Subscriber.name, Subscriber.attributes, Subscriber.status).where(
                Subscriber.id.in_(subscriber_ids)
            )
        )
    } if subscriber_ids else {}
    db.session.commit()
    return sorted(
        (ClaimedRow(row.id, row.email, row.attempts, subscribers.get(row.subscriber_id)) for row in claimed),
        key=lambda row: row.id,
    )


def release(delivery_ids: list[int]) -> None:
    """Leased rows not attempted back to pending (no attempt counted). The caller commits."""
    if delivery_ids:
        db.session.execute(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids), Delivery.status == DeliveryStatus.SENDING)
            .values(status=DeliveryStatus.PENDING, leased_until=None),
            execution_options={"synchronize_session": False},
        )


@dataclass
class _Outcomes:
    """Outcomes waiting to be written, and the run's failure streak."""

    sent: list[int] = field(default_factory=list)  # delivery ids (their Message-IDs follow from the id)
    # id, smtp code, error, whether it was an SMTP attempt (a message that could not be built was not)
    failed: list[tuple[int, int | None, str, bool]] = field(default_factory=list)
    deferred: list[tuple[int, int | None, str, datetime]] = field(default_factory=list)
    consecutive_failures: int = 0
    # Messages that could not be built in a row (a render over its limits, odd data): counted apart,
    # since one bad row says nothing about the relay; only a layout that fails for everyone pauses.
    consecutive_render_failures: int = 0
    last_error: str = ""
    last_render_error: str = ""
    # The task reached its soft time limit while building a message: send no more, hand the rest back.
    out_of_time: bool = False

    def __len__(self) -> int:
        return len(self.sent) + len(self.failed) + len(self.deferred)


# Built once: the marking runs every few dozen messages, and building a statement per group (an IN
# list, a CASE of Message-IDs) cost more CPU than the database spent running it.
_MARK_SENT = (
    update(Delivery)
    .where(Delivery.id.in_(bindparam("ids", expanding=True)), Delivery.status == DeliveryStatus.SENDING)
    .values(
        status=DeliveryStatus.SENT, sent_at=bindparam("now"), smtp_code=250, error="", leased_until=None,
        next_attempt_at=None, attempts=Delivery.attempts + 1,
        message_id=literal("<") + cast(Delivery.id, String) + bindparam("message_id_suffix", type_=String),
    )
    .execution_options(synchronize_session=False)
)
_CAMPAIGN_STATUS = select(Campaign.status).where(Campaign.id == bindparam("campaign_id"))


def _write_outcomes(outcomes: _Outcomes, message_id_suffix: str) -> None:
    now = utcnow()
    if is_postgres():
        # Losing the last few commits in a database crash re-sends at most those messages; waiting for
        # the WAL flush on every group would halve the send rate.
        db.session.execute(text("SET LOCAL synchronous_commit = off"))
    if outcomes.sent:
        db.session.execute(
            _MARK_SENT, {"ids": outcomes.sent, "now": now, "message_id_suffix": message_id_suffix}
        )
    for delivery_id, code, error, attempted in outcomes.failed:
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.SENDING)
            .values(
                status=DeliveryStatus.FAILED, smtp_code=code, error=error[:2000], leased_until=None,
                next_attempt_at=None, attempts=Delivery.attempts + (1 if attempted else 0),
            ),
            execution_options={"synchronize_session": False},
        )
    for delivery_id, code, error, retry_at in outcomes.deferred:
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.SENDING)
            .values(
                status=DeliveryStatus.PENDING, smtp_code=code, error=error[:2000], leased_until=None,
                next_attempt_at=retry_at, attempts=Delivery.attempts + 1,
            ),
            execution_options={"synchronize_session": False},
        )
    outcomes.sent.clear()
    outcomes.failed.clear()
    outcomes.deferred.clear()


def _campaign_status(campaign_id: int) -> str | None:
    return db.session.scalar(_CAMPAIGN_STATUS, {"campaign_id": campaign_id})


def pause_campaign(campaign_id: int, reason: str) -> bool:
    """sending -> paused with the reason shown on the campaign page. The caller commits."""
    result = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING)
        .values(status=CampaignStatus.PAUSED, status_reason=reason, updated_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    if result.rowcount:
        log.warning("campaign %s paused: %s", campaign_id, reason)
    return bool(result.rowcount)


def finish_if_done(campaign_id: int) -> bool:
    """sending -> sent, atomically, once the snapshot exists and no row is pending or leased. Commits."""
    now = utcnow()
    unfinished = exists().where(
        Delivery.campaign_id == campaign_id,
        Delivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.SENDING)),
    )
    result = db.session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING,
            Campaign.snapshot_taken_at.is_not(None), ~unfinished,
        )
        .values(status=CampaignStatus.SENT, finished_at=now, status_reason="", updated_at=now),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    return bool(result.rowcount)


def next_retry_delay(campaign_id: int) -> float | None:
    """Seconds until the earliest deferred (4xx) row is due, if every pending row is deferred."""
    now = utcnow()
    due_now = db.session.scalar(
        select(exists().where(
            Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.PENDING,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        ))
    )
    if due_now:
        return None
    earliest = db.session.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.PENDING
        )
    )
    db.session.commit()
    if earliest is None:
        return None
    return max(0.05, (earliest - now).total_seconds())


# -- the send loop --------------------------------------------------------------------------------------


@dataclass
class RunResult:
    stopped: str = ""  # why the run stopped early: paused, cancelled, ...
    sent: int = 0
    retry_in: float | None = None  # re-run after this many seconds for deferred rows
    run_over: bool = False  # SEND_RUN_SECONDS ran out with work left: the task queues its continuation


def send_campaign(campaign_id: int) -> RunResult:
    """Claim and send batches of the campaign until none is left (or it is paused or cancelled), over
    one SMTP connection; then finish the campaign if it is done. SMTPUnavailable when the server
    cannot be reached (the claimed rows are back to pending by then). This is a task's body: it owns
    its transactions and commits as it goes."""
    result = RunResult()
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != CampaignStatus.SENDING:
        result.stopped = campaign.status if campaign is not None else "missing"
        db.session.rollback()
        return result
    try:
        compiled = _compile(campaign)
    except MailappError as error:
        pause_campaign(campaign_id, f"The campaign cannot be rendered: {error.message}")
        db.session.commit()
        result.stopped = CampaignStatus.PAUSED
        return result
    db.session.commit()

    limiter = RateLimiter.for_app()
    lease_seconds = float(current_app.config["SEND_LEASE_SECONDS"])
    batch_size = int(current_app.config["SEND_BATCH_SIZE"])
    if limiter.enabled:
        # A batch must finish well inside its lease even at the configured rate.
        batch_size = max(1, min(batch_size, int(limiter.rate * lease_seconds / 4)))
    outcomes = _Outcomes()
    run_ends = time.monotonic() + float(setting("SEND_RUN_SECONDS"))
    with smtp_connection() as host:
        connection = [host]
        try:
            while not result.stopped:
                if time.monotonic() >= run_ends:
                    result.run_over = True
                    return result
                rows = claim_batch(campaign_id, batch_size, lease_seconds)
                if not rows:
                    break
                try:
                    _send_rows(
                        campaign_id, compiled, rows, connection, limiter, outcomes, result, lease_seconds
                    )
                except SoftTimeLimitExceeded:
                    _hand_back(rows, outcomes, compiled.message_id_suffix)
                    raise
                if outcomes.out_of_time:
                    result.run_over = True
                    return result
        finally:
            if connection[0] is not host and connection[0] is not _LOST:
                _quit(connection[0])  # the connection a reconnect opened
    if not result.stopped:
        finish_if_done(campaign_id)
        result.retry_in = next_retry_delay(campaign_id)
    return result


def _hand_back(rows: list[ClaimedRow], outcomes: _Outcomes, message_id_suffix: str) -> None:
    """The task reached its soft time limit mid-batch, outside a render (those stop the batch in
    order, see _message_for): write the outcomes it knows and give the rest of its rows back (as a
    crash would, minus the wait for the lease), then commit."""
    db.session.rollback()
    _write_outcomes(outcomes, message_id_suffix)
    release([row.id for row in rows])
    db.session.commit()


def _send_rows(
    campaign_id: int, compiled: _Compiled, rows: list[ClaimedRow], connection: list[Any],
    limiter: RateLimiter, outcomes: _Outcomes, result: RunResult, lease_seconds: float,
) -> None:
    """Send one claimed batch, recording outcomes in groups (see _Checkpoints). Reconnects once when
    the server drops the connection; SMTPUnavailable when it cannot be reached again."""
    queue = deque(rows)
    drops_in_a_row = 0  # connection losses with no message answered in between
    checkpoints = _Checkpoints(
        campaign_id, [row.id for row in rows], outcomes, result, lease_seconds, compiled.message_id_suffix
    )
    while queue and not result.stopped:
        try:
            for submitted in pipeline.submit(connection[0], _outgoing(queue, compiled, limiter, checkpoints)):
                drops_in_a_row = 0
                row = submitted.message.key
                if submitted.accepted:
                    outcomes.sent.append(row.id)
                    outcomes.consecutive_failures = 0
                else:
                    _smtp_reply(outcomes, row, submitted.code, submitted.reply)
        except pipeline.ConnectionLost as lost:
            if lost.in_doubt is not None:
                # The content went out but no answer came back: it may have been taken, so it is retried
                # later and counted as an attempt (at most this one message can arrive twice).
                _defer(outcomes, lost.in_doubt.key, None, f"Connection to {_relay()} lost: {lost.reason}")
            queue.extendleft(message.key for message in reversed(lost.unsent))
            drops_in_a_row += 1
            if drops_in_a_row > 1:
                # Dropped again before it answered anything: retrying here would loop; the task's
                # retries with backoff (and then the pause) handle a relay in this state.
                _quit(connection[0])
                outcomes.last_error = (
                    f"The SMTP server {_relay()} keeps dropping the connection: {lost.reason}"
                )
                connection[0] = _LOST
            else:
                connection[0] = _reconnect(connection[0], outcomes, lost.reason)
            if connection[0] is _LOST:
                checkpoints.record()
                release([row.id for row in queue])
                db.session.commit()
                raise SMTPUnavailable(outcomes.last_error) from lost
    if result.stopped:
        checkpoints.record()  # the message that was in flight when the campaign stopped
        db.session.commit()
    elif not checkpoints.write(final=True):
        db.session.commit()  # stopped with nothing left to release


def _outgoing(
    queue: deque[ClaimedRow], compiled: _Compiled, limiter: RateLimiter, checkpoints: _Checkpoints
) -> Iterator[pipeline.Outgoing]:
    """The batch's messages, built one at a time as the connection asks for them; between two, the
    outcomes so far are written when a group is due, and the batch stops if the campaign did."""
    while queue:
        if checkpoints.outcomes.out_of_time:
            release([row.id for row in queue])  # committed with the batch's last outcomes
            queue.clear()
            return
        if checkpoints.due() and not checkpoints.write():
            release([row.id for row in queue])
            queue.clear()
            db.session.commit()
            return
        row = queue.popleft()
        message = _message_for(row, compiled, checkpoints.outcomes)
        if message is not None:
            limiter.wait()
            yield message


def _message_for(row: ClaimedRow, compiled: _Compiled, outcomes: _Outcomes) -> pipeline.Outgoing | None:
    """The row's message, or None with the failure recorded when it cannot be sent."""
    subscriber = row.subscriber
    if subscriber is None or subscriber.status != SubscriberStatus.ACTIVE:
        why = "deleted" if subscriber is None else subscriber.status
        outcomes.failed.append((row.id, None, f"Not sent: the subscriber was {why} before sending.", False))
        return None
    try:
        _, raw = _build(compiled, _recipient(row.id, row.email, subscriber))
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
    except Exception as error:  # noqa: BLE001 - a render failure (say, a filter on odd data) fails one row
        # A sandbox refusal or a render limit says which, and on which template line.
        reason = templating.render_error(error).message if isinstance(error, SecurityError) else (
            f"The message could not be rendered: {_describe(error)}"
        )
        _render_failed(outcomes, row.id, reason)
        return None
    outcomes.consecutive_render_failures = 0
    return pipeline.Outgoing(row, compiled.builder.sender, recipient_address, raw)


class _Checkpoints:
    """When and how a batch writes its outcomes: every SEND_MARK_GROUP outcomes or SEND_MARK_SECONDS,
    whichever comes first, and at once on a run of failures. Each write also checks that the campaign
    is still sending (pausing it after too many failures in a row) and renews the batch's lease."""

    def __init__(
        self, campaign_id: int, row_ids: list[int], outcomes: _Outcomes, result: RunResult,
        lease_seconds: float, message_id_suffix: str,
    ) -> None:
        self.campaign_id, self.row_ids, self.outcomes, self.result = campaign_id, row_ids, outcomes, result
        self.lease_seconds, self.message_id_suffix = lease_seconds, message_id_suffix
        self.mark_group = int(setting("SEND_MARK_GROUP"))
        self.mark_seconds = float(setting("SEND_MARK_SECONDS"))
        self.max_failures = int(setting("SEND_MAX_CONSECUTIVE_FAILURES"))
        self.last_write = self.lease_renewed_at = time.monotonic()

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
        _write_outcomes(self.outcomes, self.message_id_suffix)

    def write(self, *, final: bool = False) -> bool:
        """Write the outcomes so far and commit; False (with result.stopped set) when the campaign is no
        longer sending, and then the caller releases the rows it has not sent and commits: the pause
        and the release become visible together, never a paused campaign with rows still leased."""
        outcomes = self.outcomes
        self.record()
        status = _campaign_status(self.campaign_id)
        if outcomes.consecutive_failures >= self.max_failures and status == CampaignStatus.SENDING:
            pause_campaign(
                self.campaign_id,
                f"{outcomes.consecutive_failures} messages in a row failed; the last: {outcomes.last_error}",
            )
            status = CampaignStatus.PAUSED
        elif outcomes.consecutive_render_failures >= self.max_failures and status == CampaignStatus.SENDING:
            pause_campaign(
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
            db.session.execute(
                update(Delivery)
                .where(Delivery.id.in_(self.row_ids), Delivery.status == DeliveryStatus.SENDING)
                .values(leased_until=utcnow() + timedelta(seconds=self.lease_seconds)),
                execution_options={"synchronize_session": False},
            )
            self.lease_renewed_at = now
        db.session.commit()
        self.last_write = now
        return True


_LOST = object()  # the connection slot after the server dropped us and could not be reached again


def _reconnect(host: Any, outcomes: _Outcomes, reason: str) -> Any:
    with contextlib.suppress(OSError, smtplib.SMTPException):
        host.close()
    try:
        return _connect()
    except (OSError, smtplib.SMTPException) as error:
        outcomes.last_error = f"Cannot connect to the SMTP server {_relay()} ({reason}): {_describe(error)}"
        return _LOST


def _smtp_reply(outcomes: _Outcomes, row: ClaimedRow, code: int, reply: str) -> None:
    message = f"{code} {reply}".strip()
    if 400 <= code < 500:
        _defer(outcomes, row, code, message)
    else:
        _failed(outcomes, row.id, code, message)


def _failed(outcomes: _Outcomes, delivery_id: int, code: int | None, error: str, *, attempted: bool = True
            ) -> None:
    outcomes.failed.append((delivery_id, code, error, attempted))
    outcomes.consecutive_failures += 1
    outcomes.last_error = error


def _render_failed(outcomes: _Outcomes, delivery_id: int, error: str) -> None:
    """A message that could not be built: it fails alone, and does not count towards the SMTP streak."""
    outcomes.failed.append((delivery_id, None, error, False))
    outcomes.consecutive_render_failures += 1
    outcomes.last_render_error = error


def _defer(outcomes: _Outcomes, row: ClaimedRow, code: int | None, error: str) -> None:
    attempts = row.attempts + 1
    if attempts >= int(setting("SEND_MAX_ATTEMPTS")):
        _failed(outcomes, row.id, code, f"Gave up after {attempts} attempts: {error}")
        return
    outcomes.consecutive_failures += 1
    outcomes.last_error = error
    delay = float(setting("SEND_RETRY_BASE_SECONDS")) * 2 ** (attempts - 1)
    outcomes.deferred.append((row.id, code, error, utcnow() + timedelta(seconds=delay)))


# -- the sweeper ----------------------------------------------------------------------------------------


def release_expired_leases() -> int:
    """Rows whose lease ran out (their worker died or hung) back to pending. Commits."""
    now = utcnow()
    active_campaigns = select(Campaign.id).where(
        Campaign.status.in_((CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.CANCELLED))
    )
    result = db.session.execute(
        update(Delivery)
        .where(
            Delivery.campaign_id.in_(active_campaigns.scalar_subquery()),
            Delivery.status == DeliveryStatus.SENDING,
            Delivery.leased_until < now,
        )
        .values(status=DeliveryStatus.PENDING, leased_until=None),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    return result.rowcount or 0


def campaigns_needing_workers() -> list[int]:
    """Sending campaigns with due pending rows and no live lease: their batch tasks were lost (broker
    flushed, worker killed before it claimed). Finishes, on the way, any that are done."""
    now = utcnow()
    needing: list[int] = []
    for campaign_id in db.session.scalars(
        select(Campaign.id).where(
            Campaign.status == CampaignStatus.SENDING, Campaign.snapshot_taken_at.is_not(None)
        )
    ).all():
        due = db.session.scalar(select(exists().where(
            Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.PENDING,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        )))
        live = db.session.scalar(select(exists().where(
            Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.SENDING,
            Delivery.leased_until >= now,
        )))
        if due and not live:
            needing.append(campaign_id)
        elif not due and not live:
            finish_if_done(campaign_id)
    db.session.commit()
    return needing
