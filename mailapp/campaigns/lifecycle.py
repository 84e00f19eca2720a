"""A campaign's life: the state table (which actions each status allows) and every transition, from
schedule to sent, cancelled or failed, including "commit, then queue" for the transitions that set tasks
going. Routes, API endpoints and tasks all go through here.

The database is the truth and Celery is the clock: a start message carries (campaign_id, version) and
only wins the atomic claim if the campaign is still scheduled at that version. Transitions flush; the
functions that queue tasks commit first, so no task ever runs ahead of the row it reads."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from mailapp.audit.services import record
from mailapp.errors import InvalidStateError, NotFoundError, ValidationError, field_problem
from mailapp.extensions import db
from mailapp.models.base import utcnow
from mailapp.models.campaign import Campaign, CampaignStatus
from mailapp.models.delivery import Delivery, DeliveryStatus

EDITABLE_STATES = frozenset({CampaignStatus.DRAFT, CampaignStatus.SCHEDULED})
FINISHED_STATES = frozenset({CampaignStatus.SENT, CampaignStatus.CANCELLED, CampaignStatus.FAILED})
# A start message that arrives this much early (clock skew between hosts) is still honoured.
START_EARLY_TOLERANCE = timedelta(seconds=1)

# The tasks of mailapp/campaigns/tasks.py, queued here by name: the tasks call this module, so this
# module cannot import them.
START_CAMPAIGN_TASK = "mailapp.campaigns.tasks.start_campaign"
PREPARE_SENDING_TASK = "mailapp.campaigns.tasks.prepare_sending"
# Likewise the send engine's batch task (mailapp/sending/tasks.py, a floor above this one).
SEND_BATCH_TASK = "mailapp.sending.tasks.send_batch"

# Which actions each state allows; the page shows only these buttons.
ALLOWED_ACTIONS: dict[str, frozenset[str]] = {
    CampaignStatus.DRAFT: frozenset({"edit", "send", "schedule", "test", "duplicate", "delete"}),
    CampaignStatus.SCHEDULED: frozenset(
        {"edit", "send", "schedule", "cancel", "test", "duplicate", "delete"}
    ),
    CampaignStatus.SENDING: frozenset({"pause", "cancel", "retry_failed", "test", "duplicate"}),
    CampaignStatus.PAUSED: frozenset({"resume", "cancel", "retry_failed", "test", "duplicate", "delete"}),
    CampaignStatus.SENT: frozenset({"retry_failed", "test", "duplicate", "delete"}),
    CampaignStatus.CANCELLED: frozenset({"test", "duplicate", "delete"}),
    CampaignStatus.FAILED: frozenset({"retry_failed", "test", "duplicate", "delete"}),
}


def allowed_actions(campaign: Campaign) -> frozenset[str]:
    return ALLOWED_ACTIONS.get(campaign.status, frozenset())


def get_campaign(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"Campaign {campaign_id} does not exist.")
    return campaign


def require_action(campaign: Campaign, action: str, verb: str) -> None:
    if action not in allowed_actions(campaign):
        raise InvalidStateError(
            f"Cannot {verb} campaign {campaign.id}: it is {campaign.status}.",
            [field_problem(None, f"The campaign is {campaign.status}.", status=campaign.status)],
        )


def queue_task(task_name: str, *args: int, eta: datetime | None = None) -> None:
    current_app.extensions["celery"].send_task(task_name, args, eta=eta)


# --- scheduling -------------------------------------------------------------------------------------


def _check_sendable(campaign: Campaign) -> None:
    """What must hold before a campaign may be queued: a layout, lists, a subject that compiles."""
    problems = []
    if campaign.layout_id is None:
        problems.append(
            field_problem("layout_id", "The campaign has no layout (it was deleted): choose one.")
        )
    if not campaign.lists:
        problems.append(field_problem("list_ids", "The campaign has no target list: choose at least one."))
    if problems:
        raise ValidationError(problems[0]["message"], problems)


def schedule_campaign(campaign_id: int, send_at: datetime, *, now: datetime | None = None) -> Campaign:
    """Set (or move) the send time of a draft or scheduled campaign. A new schedule_version makes any
    start message already queued for the old time do nothing. The caller commits, then calls
    queue_start (which only queues when the time falls within the horizon); schedule() does both."""
    now = now or utcnow()
    if send_at.tzinfo is None:
        raise ValidationError(
            "send_at must carry a timezone offset.", [field_problem("send_at", "No offset.")]
        )
    if send_at < now - timedelta(seconds=1):
        raise ValidationError(
            "The send time is in the past: pick a later time.",
            [field_problem("send_at", "This time is in the past.", send_at=send_at.isoformat(),
                           now=now.isoformat())],
        )
    campaign = get_campaign(campaign_id)
    require_action(campaign, "schedule", "schedule")
    _check_sendable(campaign)
    campaign.status = CampaignStatus.SCHEDULED
    campaign.send_at = max(send_at, now)
    campaign.schedule_version += 1
    campaign.status_reason = ""
    horizon = timedelta(seconds=current_app.config["SCHEDULE_HORIZON_SECONDS"])
    if campaign.send_at <= now + horizon:
        campaign.start_queued_version = campaign.schedule_version
    db.session.flush()
    return campaign


def send_campaign_now(campaign_id: int) -> Campaign:
    """Schedule at once; the caller commits and then runs the start (start_now); send_now() does all."""
    campaign = get_campaign(campaign_id)
    require_action(campaign, "send", "send")
    record("campaign.send", campaign, f"{campaign.name!r} sent now")
    return schedule_campaign(campaign_id, utcnow())


def queue_start(campaign_id: int, version: int, send_at: datetime, start_queued_version: int) -> None:
    """After the commit of a schedule: queue its start message with an ETA when the schedule said it
    falls within the horizon. Later schedules are queued by the dispatcher as they come near."""
    if start_queued_version == version:
        queue_task(START_CAMPAIGN_TASK, campaign_id, version, eta=send_at)


def schedule(campaign_id: int, send_at: datetime) -> Campaign:
    """Schedule, commit, then queue the start."""
    campaign = schedule_campaign(campaign_id, send_at)
    record("campaign.schedule", campaign, f"{campaign.name!r} scheduled for {campaign.send_at.isoformat()}")
    db.session.commit()
    queue_start(campaign.id, campaign.schedule_version, campaign.send_at, campaign.start_queued_version)
    return campaign


def send_now(campaign_id: int) -> None:
    """Schedule at once, commit, then claim the start here (see start_now)."""
    version = send_campaign_now(campaign_id).schedule_version
    db.session.commit()
    start_now(campaign_id, version)


# --- the start --------------------------------------------------------------------------------------


def claim_scheduled_campaign(campaign_id: int, version: int, *, now: datetime | None = None) -> bool:
    """The atomic start: exactly one of any number of start messages for this schedule wins. A message
    for an older schedule (rescheduled or cancelled since) matches no row."""
    # Begin first (on SQLite that takes the write lock), so started_at is when the claim really happened.
    db.session.connection()
    now = now or utcnow()
    result = db.session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status == CampaignStatus.SCHEDULED,
            Campaign.schedule_version == version,
            Campaign.send_at <= now + START_EARLY_TOLERANCE,
        )
        .values(status=CampaignStatus.SENDING, started_at=now, status_reason="", finished_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def fail_unsendable_start(campaign_id: int) -> bool:
    """Right after the claim: a campaign whose layout or lists vanished since it was scheduled fails
    with a reason instead of sending nothing (or garbage). Returns True when it failed."""
    campaign = get_campaign(campaign_id)
    db.session.refresh(campaign)
    try:
        _check_sendable(campaign)
    except ValidationError as error:
        campaign.status = CampaignStatus.FAILED
        campaign.status_reason = error.message
        campaign.finished_at = utcnow()
        db.session.flush()
        return True
    return False


def finish_if_nobody_to_send(campaign_id: int) -> None:
    """After the snapshot: no active recipient means there is nothing to wait for."""
    campaign = get_campaign(campaign_id)
    db.session.refresh(campaign)
    if campaign.status == CampaignStatus.SENDING and campaign.total_recipients == 0:
        campaign.status = CampaignStatus.SENT
        campaign.finished_at = utcnow()
        campaign.status_reason = "The target lists had no active subscribers when sending started."
        db.session.flush()


def _claim(campaign_id: int, version: int) -> bool:
    """The atomic claim, committed; then a campaign whose layout or lists vanished fails with a reason."""
    if not claim_scheduled_campaign(campaign_id, version):
        db.session.rollback()
        return False
    db.session.commit()
    if fail_unsendable_start(campaign_id):
        db.session.commit()
        return False
    return True


def start_scheduled(campaign_id: int, version: int) -> bool:
    """Claim the campaign, then queue its snapshot and batches on the default queue. Start messages
    have a queue and a worker of their own (`schedule`, see config), which a million-row snapshot
    must not hold up. Returns False when the claim was lost (a duplicate or stale message) or the
    campaign could not be sent; a crash after the claim is finished by the dispatcher."""
    if not _claim(campaign_id, version):
        return False
    queue_task(PREPARE_SENDING_TASK, campaign_id)
    return True


def start_now(campaign_id: int, version: int) -> bool:
    """Send now, from a request: the claim here, so the answer already says sending; the snapshot
    (a million-row INSERT ... SELECT) in a worker, so the request does not wait for it."""
    return start_scheduled(campaign_id, version)


def snapshot_and_send(campaign_id: int, *, wait_for_lock: bool) -> None:
    """Snapshot the recipients of a claimed campaign (once: the row lock and snapshot_taken_at keep a
    recovering dispatcher from running it alongside the original start), then queue the batches."""
    from mailapp.sending.snapshot import snapshot_recipients

    statement = select(Campaign.status, Campaign.snapshot_taken_at).where(Campaign.id == campaign_id)
    row = db.session.execute(statement.with_for_update(skip_locked=not wait_for_lock)).first()
    if row is None or row.status != CampaignStatus.SENDING or row.snapshot_taken_at is not None:
        db.session.rollback()
        return
    snapshot_recipients(campaign_id)
    db.session.commit()
    finish_if_nobody_to_send(campaign_id)
    db.session.commit()
    continue_sending(campaign_id)


def continue_sending(campaign_id: int) -> None:
    """After a commit that left the campaign sending (start, resume, retry): queue its batches. A
    campaign paused before its snapshot was taken gets the snapshot first."""

    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != CampaignStatus.SENDING:
        return
    if campaign.snapshot_taken_at is None:
        snapshot_and_send(campaign_id, wait_for_lock=True)
        return
    # As many batches as sending.tasks.enqueue_sending queues: each claims its own rows.
    from mailapp.sending.relay_choice import batch_task_count

    for _ in range(batch_task_count(campaign_id, int(current_app.config["SEND_PARALLELISM"]))):
        queue_task(SEND_BATCH_TASK, campaign_id)


# --- actions on a running campaign ------------------------------------------------------------------


def cancel_campaign(campaign_id: int) -> Campaign:
    campaign = get_campaign(campaign_id)
    require_action(campaign, "cancel", "cancel")
    was_scheduled = campaign.status == CampaignStatus.SCHEDULED
    record("campaign.unschedule" if was_scheduled else "campaign.cancel", campaign,
           f"{campaign.name!r} {'unscheduled' if was_scheduled else 'cancelled'} ({campaign.status})")
    if campaign.status == CampaignStatus.SCHEDULED:
        # A start message already queued must find a different version and do nothing.
        campaign.schedule_version += 1
    campaign.status = CampaignStatus.CANCELLED
    campaign.status_reason = ""
    campaign.finished_at = utcnow()
    db.session.flush()
    return campaign


def pause_on_request(campaign_id: int, reason: str = "Paused from the dashboard.") -> Campaign:
    """A person's pause (the dashboard or the API), checked against the state table; the send engine
    pauses on its own with sending.ledger.pause_campaign."""
    campaign = get_campaign(campaign_id)
    require_action(campaign, "pause", "pause")
    record("campaign.pause", campaign, f"{campaign.name!r} paused")
    campaign.status = CampaignStatus.PAUSED
    campaign.status_reason = reason
    db.session.flush()
    return campaign


def resume_campaign(campaign_id: int) -> Campaign:
    """Back to sending; the caller commits, then continue_sending queues the batches; resume() does all."""
    campaign = get_campaign(campaign_id)
    require_action(campaign, "resume", "resume")
    record("campaign.resume", campaign, f"{campaign.name!r} resumed")
    campaign.status = CampaignStatus.SENDING
    campaign.status_reason = ""
    db.session.flush()
    return campaign


def retry_failed_deliveries(campaign_id: int) -> int:
    """Failed deliveries back to pending with their attempts reset, the campaign back to sending. The
    caller commits, then continue_sending queues the batches (retry_failed() does all). Returns how
    many were reset."""
    campaign = get_campaign(campaign_id)
    require_action(campaign, "retry_failed", "retry the failed deliveries of")
    result = db.session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.FAILED)
        .values(
            status=DeliveryStatus.PENDING,
            attempts=0,
            leased_until=None,
            next_attempt_at=None,
            smtp_code=None,
            error="",
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:
        raise InvalidStateError(
            f"Campaign {campaign_id} has no failed deliveries to retry (it is {campaign.status}).",
            [field_problem(None, "There is no failed delivery to retry.", status=campaign.status)],
        )
    campaign.status = CampaignStatus.SENDING
    campaign.status_reason = ""
    campaign.finished_at = None
    summary = f"{campaign.name!r}: {result.rowcount} failed deliveries retried"
    record("campaign.retry_failed", campaign, summary)
    db.session.flush()
    return result.rowcount


def cancel(campaign_id: int) -> Campaign:
    """Cancel and commit."""
    campaign = cancel_campaign(campaign_id)
    db.session.commit()
    return campaign


def pause(campaign_id: int, reason: str = "Paused from the dashboard.") -> Campaign:
    """Pause on a person's request and commit: batches already running finish, the rest wait."""
    campaign = pause_on_request(campaign_id, reason)
    db.session.commit()
    return campaign


def resume(campaign_id: int) -> None:
    """Resume, commit, then queue the batches."""
    resume_campaign(campaign_id)
    db.session.commit()
    continue_sending(campaign_id)


def retry_failed(campaign_id: int) -> int:
    """Reset the failed deliveries, commit, then queue the batches. Returns how many were reset."""
    count = retry_failed_deliveries(campaign_id)
    db.session.commit()
    continue_sending(campaign_id)
    return count
