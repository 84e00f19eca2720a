"""Campaign rules: create, edit, duplicate, schedule, start, pause, resume, cancel, retry, test sends,
recipient counts, progress figures and the delivery log.

Services flush; the view or task that owns the transaction commits, then queues any Celery task."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, union_all, update

from mailapp.addresses import normalize_email
from mailapp.errors import InvalidStateError, NotFoundError, TemplateError, ValidationError
from mailapp.extensions import db
from mailapp.ids import id_from_text, is_id
from mailapp.layouts import services as layout_services
from mailapp.models.base import utcnow
from mailapp.models.campaign import Campaign, CampaignStatus
from mailapp.models.delivery import Delivery, DeliveryStatus
from mailapp.models.layout import Layout
from mailapp.models.subscriber import Subscriber, SubscriberList, SubscriberStatus, list_members

EDITABLE_STATES = frozenset({CampaignStatus.DRAFT, CampaignStatus.SCHEDULED})
FINISHED_STATES = frozenset({CampaignStatus.SENT, CampaignStatus.CANCELLED, CampaignStatus.FAILED})
# A campaign claimed for sending whose recipients were never snapshotted this long after its start
# lost its worker in between; the dispatcher finishes the start.
STALLED_START_SECONDS = 30
# A start message that arrives this much early (clock skew between hosts) is still honoured.
START_EARLY_TOLERANCE = timedelta(seconds=1)
MAX_TEST_RECIPIENTS = 20
DELIVERY_PAGE_SIZE = 50

FIELD_LIMITS = {"name": 200, "subject": 500, "from_name": 200, "from_email": 320, "reply_to": 320}
HEADER_FIELDS = ("name", "subject", "from_name", "from_email", "reply_to")
FIELD_LABELS = {
    "name": "Name",
    "subject": "Subject",
    "from_name": "From name",
    "from_email": "From email",
    "reply_to": "Reply-to",
    "layout_id": "Layout",
    "list_ids": "Lists",
    "message": "Message",
    "track_opens": "Track opens",
    "track_clicks": "Track clicks",
}
CAMPAIGN_FIELDS = tuple(FIELD_LABELS)

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


def _require_action(campaign: Campaign, action: str, verb: str) -> None:
    if action not in allowed_actions(campaign):
        raise InvalidStateError(
            f"Cannot {verb} campaign {campaign.id}: it is {campaign.status}.",
            {"status": campaign.status},
        )


# --- fields -----------------------------------------------------------------------------------------


def campaign_fields(campaign: Campaign) -> dict[str, Any]:
    """The editable fields of a campaign, in the shape create/update take."""
    return {
        "name": campaign.name,
        "subject": campaign.subject,
        "from_name": campaign.from_name,
        "from_email": campaign.from_email,
        "reply_to": campaign.reply_to,
        "layout_id": campaign.layout_id,
        "list_ids": [lst.id for lst in campaign.lists],
        "message": campaign.message,
        "track_opens": campaign.track_opens,
        "track_clicks": campaign.track_clicks,
    }


@dataclass
class _Checked:
    values: dict[str, Any]
    lists: list[SubscriberList]


def _field_error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _as_id(value: Any) -> int | None:
    """An id given as a number (JSON) or digits (a form); None for anything that cannot be one."""
    if isinstance(value, str):
        return id_from_text(value)
    return value if is_id(value) else None


def _check_fields(data: Mapping[str, Any]) -> _Checked:
    """Validate every field at once; raises ValidationError whose details list each problem as
    {field, message}, so a form can show them beside their fields."""
    unknown = sorted(set(data) - set(CAMPAIGN_FIELDS))
    if unknown:
        raise ValidationError(
            f"Unknown field(s): {', '.join(unknown)}.",
            [_field_error(name, "Unknown field.") for name in unknown],
        )
    problems: list[dict[str, str]] = []
    values: dict[str, Any] = {}

    for name in ("name", "subject", "from_name", "from_email", "reply_to", "message"):
        raw = data.get(name)
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            problems.append(_field_error(name, "Must be a string."))
            continue
        value = raw if name == "message" else raw.strip()
        if name in HEADER_FIELDS and ("\r" in value or "\n" in value):
            problems.append(_field_error(name, "Cannot contain line breaks (it goes into a mail header)."))
            continue
        limit = FIELD_LIMITS.get(name)
        if limit and len(value) > limit:
            problems.append(_field_error(name, f"Must be at most {limit} characters."))
            continue
        values[name] = value

    for name in ("name", "subject", "from_email"):
        if name in values and not values[name]:
            problems.append(_field_error(name, "This field is required."))
            values.pop(name)

    if values.get("subject"):
        try:
            layout_services.check_subject(values["subject"])
        except TemplateError as error:
            problems.append(_field_error("subject", error.message))
    for name in ("from_email", "reply_to"):
        if values.get(name):
            try:
                values[name] = normalize_email(values[name])
            except ValidationError as error:
                problems.append(_field_error(name, error.message))

    layout_id = _as_id(data.get("layout_id"))
    if layout_id is None:
        problems.append(_field_error("layout_id", "Choose a layout."))
    elif db.session.get(Layout, layout_id) is None:
        problems.append(_field_error("layout_id", f"Layout {layout_id} does not exist."))
    else:
        values["layout_id"] = layout_id

    lists: list[SubscriberList] = []
    raw_lists = data.get("list_ids")
    if not isinstance(raw_lists, list | tuple) or not raw_lists:
        problems.append(_field_error("list_ids", "Choose at least one list."))
    else:
        list_ids = [_as_id(item) for item in raw_lists]
        if any(item is None for item in list_ids):
            problems.append(_field_error("list_ids", "List ids must be whole numbers."))
        else:
            wanted = sorted(set(list_ids))
            lists = list(db.session.scalars(select(SubscriberList).where(SubscriberList.id.in_(wanted))))
            missing = sorted(set(wanted) - {lst.id for lst in lists})
            if missing:
                problems.append(
                    _field_error("list_ids", f"No such list: {', '.join(str(m) for m in missing)}.")
                )

    for name in ("track_opens", "track_clicks"):
        raw = data.get(name, True)
        if not isinstance(raw, bool):
            problems.append(_field_error(name, "Must be true or false."))
        else:
            values[name] = raw

    if problems:
        first = problems[0]
        raise ValidationError(
            f"{FIELD_LABELS.get(first['field'], first['field'])}: {first['message']}"
            + (f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""),
            problems,
        )
    return _Checked(values, lists)


def _apply(campaign: Campaign, checked: _Checked) -> None:
    for name, value in checked.values.items():
        setattr(campaign, name, value)
    campaign.lists = checked.lists


def new_campaign_defaults() -> dict[str, Any]:
    """What a new campaign form starts with: the sender of the latest campaign, tracking on."""
    latest = db.session.scalar(select(Campaign).order_by(Campaign.id.desc()).limit(1))
    defaults: dict[str, Any] = {"track_opens": True, "track_clicks": True}
    if latest is not None:
        defaults.update(from_name=latest.from_name, from_email=latest.from_email, reply_to=latest.reply_to,
                        layout_id=latest.layout_id)  # fmt: skip
    return defaults


def create_campaign(data: Mapping[str, Any]) -> Campaign:
    checked = _check_fields(data)
    campaign = Campaign(status=CampaignStatus.DRAFT)
    _apply(campaign, checked)
    db.session.add(campaign)
    db.session.flush()
    return campaign


def update_campaign(campaign_id: int, changes: Mapping[str, Any]) -> Campaign:
    """Change some fields of a draft or scheduled campaign; a scheduled one keeps its schedule."""
    campaign = get_campaign(campaign_id)
    _require_action(campaign, "edit", "edit")
    checked = _check_fields({**campaign_fields(campaign), **changes})
    _apply(campaign, checked)
    db.session.flush()
    return campaign


def duplicate_campaign(campaign_id: int) -> Campaign:
    original = get_campaign(campaign_id)
    copy = Campaign(status=CampaignStatus.DRAFT)
    fields = campaign_fields(original)
    fields.pop("list_ids")
    for name, value in fields.items():
        setattr(copy, name, value)
    copy.name = f"Copy of {original.name}"[: FIELD_LIMITS["name"]]
    copy.lists = list(original.lists)
    db.session.add(copy)
    db.session.flush()
    return copy


def delete_campaign(campaign_id: int) -> None:
    campaign = get_campaign(campaign_id)
    _require_action(campaign, "delete", "delete")
    db.session.delete(campaign)
    db.session.flush()


# --- scheduling -------------------------------------------------------------------------------------


def _check_sendable(campaign: Campaign) -> None:
    """What must hold before a campaign may be queued: a layout, lists, a subject that compiles."""
    problems = []
    if campaign.layout_id is None:
        problems.append(_field_error("layout_id", "The campaign has no layout (it was deleted): choose one."))
    if not campaign.lists:
        problems.append(_field_error("list_ids", "The campaign has no target list: choose at least one."))
    if problems:
        raise ValidationError(problems[0]["message"], problems)


def schedule_campaign(campaign_id: int, send_at: datetime, *, now: datetime | None = None) -> Campaign:
    """Set (or move) the send time of a draft or scheduled campaign. A new schedule_version makes any
    start message already queued for the old time do nothing. The caller commits, then calls
    tasks.queue_start (which only queues when the time falls within the horizon)."""
    from flask import current_app

    now = now or utcnow()
    if send_at.tzinfo is None:
        raise ValidationError(
            "send_at must carry a timezone offset.", [_field_error("send_at", "No offset.")]
        )
    if send_at < now - timedelta(seconds=1):
        raise ValidationError(
            "The send time is in the past: pick a later time.",
            [{"field": "send_at", "message": "This time is in the past.", "send_at": send_at.isoformat(),
              "now": now.isoformat()}],
        )
    campaign = get_campaign(campaign_id)
    _require_action(campaign, "schedule", "schedule")
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
    """Schedule at once; the caller commits and then runs the start (tasks.start_scheduled)."""
    campaign = get_campaign(campaign_id)
    _require_action(campaign, "send", "send")
    return schedule_campaign(campaign_id, utcnow())


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


@dataclass(frozen=True)
class DueWork:
    to_start: list[tuple[int, int]]
    to_queue: list[tuple[int, int, datetime]]
    to_requeue: list[tuple[int, int, datetime]]
    stalled: list[int]


def collect_due_work(
    *, now: datetime | None = None, horizon_seconds: int, lookahead_seconds: float = 0
) -> DueWork:
    """What the beat dispatcher must do now: overdue schedules to start directly, schedules entering the
    horizon to queue with an ETA (marked queued here, so each is queued once), claimed campaigns whose
    snapshot never happened, and (to_requeue) the queued schedules due within lookahead_seconds, whose
    start message may have been lost: queued again with an ETA, they start on time rather than at the
    first tick after it. The claim makes the extra messages harmless."""
    now = now or utcnow()
    imminent = db.session.execute(
        select(Campaign.id, Campaign.schedule_version, Campaign.send_at).where(
            Campaign.status == CampaignStatus.SCHEDULED,
            Campaign.send_at > now,
            Campaign.send_at <= now + timedelta(seconds=lookahead_seconds),
            Campaign.start_queued_version == Campaign.schedule_version,
        )
    ).all()
    overdue = db.session.execute(
        select(Campaign.id, Campaign.schedule_version).where(
            Campaign.status == CampaignStatus.SCHEDULED, Campaign.send_at <= now
        )
    ).all()
    entering = db.session.execute(
        select(Campaign.id, Campaign.schedule_version, Campaign.send_at)
        .where(
            Campaign.status == CampaignStatus.SCHEDULED,
            Campaign.send_at > now,
            Campaign.send_at <= now + timedelta(seconds=horizon_seconds),
            Campaign.start_queued_version != Campaign.schedule_version,
        )
        .with_for_update(skip_locked=True)
    ).all()
    for campaign_id, version, _send_at in entering:
        db.session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.schedule_version == version)
            .values(start_queued_version=version)
            .execution_options(synchronize_session=False)
        )
    stalled = db.session.scalars(
        select(Campaign.id).where(
            Campaign.status == CampaignStatus.SENDING,
            Campaign.snapshot_taken_at.is_(None),
            Campaign.started_at <= now - timedelta(seconds=STALLED_START_SECONDS),
        )
    ).all()
    db.session.flush()
    return DueWork(
        to_start=[(row[0], row[1]) for row in overdue],
        to_queue=[(row[0], row[1], row[2]) for row in entering],
        to_requeue=[(row[0], row[1], row[2]) for row in imminent],
        stalled=list(stalled),
    )


# --- actions on a running campaign ------------------------------------------------------------------


def cancel_campaign(campaign_id: int) -> Campaign:
    campaign = get_campaign(campaign_id)
    _require_action(campaign, "cancel", "cancel")
    if campaign.status == CampaignStatus.SCHEDULED:
        # A start message already queued must find a different version and do nothing.
        campaign.schedule_version += 1
    campaign.status = CampaignStatus.CANCELLED
    campaign.status_reason = ""
    campaign.finished_at = utcnow()
    db.session.flush()
    return campaign


def pause_campaign(campaign_id: int, reason: str = "Paused from the dashboard.") -> Campaign:
    campaign = get_campaign(campaign_id)
    _require_action(campaign, "pause", "pause")
    campaign.status = CampaignStatus.PAUSED
    campaign.status_reason = reason
    db.session.flush()
    return campaign


def resume_campaign(campaign_id: int) -> Campaign:
    """Back to sending; the caller commits, then tasks.continue_sending queues the batches."""
    campaign = get_campaign(campaign_id)
    _require_action(campaign, "resume", "resume")
    campaign.status = CampaignStatus.SENDING
    campaign.status_reason = ""
    db.session.flush()
    return campaign


def retry_failed_deliveries(campaign_id: int) -> int:
    """Failed deliveries back to pending with their attempts reset, the campaign back to sending. The
    caller commits, then tasks.continue_sending queues the batches. Returns how many were reset."""
    campaign = get_campaign(campaign_id)
    _require_action(campaign, "retry_failed", "retry the failed deliveries of")
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
            {"status": campaign.status},
        )
    campaign.status = CampaignStatus.SENDING
    campaign.status_reason = ""
    campaign.finished_at = None
    db.session.flush()
    return result.rowcount


# --- test sends -------------------------------------------------------------------------------------


def parse_test_recipients(raw: str | Iterable[str]) -> list[str]:
    """Addresses from a list or from text separated by commas, spaces or new lines, validated."""
    items = raw.replace(",", " ").split() if isinstance(raw, str) else list(raw)
    if not items:
        raise ValidationError(
            "Give at least one address to send the test to.", [_field_error("emails", "Required.")]
        )
    if len(items) > MAX_TEST_RECIPIENTS:
        raise ValidationError(
            f"At most {MAX_TEST_RECIPIENTS} test addresses at once.",
            [_field_error("emails", "Too many addresses.")],
        )
    emails = []
    for item in items:
        if not isinstance(item, str):
            raise ValidationError(
                "emails must be a list of strings.", [_field_error("emails", "Not a string.")]
            )
        emails.append(normalize_email(item))
    return list(dict.fromkeys(emails))


def resolve_test_subscriber(subscriber: int | str | None) -> int | None:
    """The subscriber a test renders for: an id, an email address, or None for the sample person."""
    if subscriber is None or subscriber == "":
        return None
    if isinstance(subscriber, str) and "@" in subscriber:
        found = db.session.scalar(select(Subscriber.id).where(Subscriber.email == subscriber.strip().lower()))
        if found is None:
            raise ValidationError(
                f"No subscriber has the address {subscriber.strip()!r}.",
                [_field_error("subscriber", "Unknown subscriber.")],
            )
        return found
    subscriber_id = _as_id(subscriber)
    if subscriber_id is None or db.session.get(Subscriber, subscriber_id) is None:
        raise ValidationError(
            f"Subscriber {subscriber} does not exist.", [_field_error("subscriber_id", "Unknown subscriber.")]
        )
    return subscriber_id


def send_test(
    campaign_id: int, emails: str | Iterable[str], subscriber: int | str | None = None
) -> list[str]:
    """Render the campaign for one subscriber (or the sample one) and send it now to the given addresses.
    Returns the addresses it went to."""
    campaign = get_campaign(campaign_id)
    addresses = parse_test_recipients(emails)
    subscriber_id = resolve_test_subscriber(subscriber)
    if campaign.layout_id is None:
        raise ValidationError("The campaign has no layout: choose one before sending a test.")
    from mailapp.sending.test_sends import send_test_messages

    send_test_messages(campaign.id, addresses, subscriber_id)
    return addresses


# --- figures ----------------------------------------------------------------------------------------


def count_recipients(list_ids: Sequence[int]) -> int:
    """Active subscribers of these lists, each counted once: what a send would snapshot now."""
    if not list_ids:
        return 0
    members = (
        select(list_members.c.subscriber_id)
        .join(Subscriber, Subscriber.id == list_members.c.subscriber_id)
        .where(list_members.c.list_id.in_(list_ids), Subscriber.status == SubscriberStatus.ACTIVE)
        .distinct()
        .subquery()
    )
    return db.session.scalar(select(func.count()).select_from(members)) or 0


def campaign_stats(campaign_id: int) -> dict[str, int]:
    """{total, pending, sending, sent, failed}, exact, from the counts the database keeps per campaign
    and status (reports.services.status_counts): a few rows, however many recipients. The caller
    commits."""
    from mailapp.reports.services import status_counts

    stats = status_counts([campaign_id])[campaign_id]
    stats["total"] = sum(stats.values())
    return stats


def progress(campaign_id: int) -> dict[str, Any]:
    """What the campaign page polls: status, counts, and the average rate since the start. The caller
    commits (see campaign_stats)."""
    campaign = get_campaign(campaign_id)
    stats = campaign_stats(campaign_id)
    if not stats["total"] and campaign.total_recipients:
        stats["total"] = campaign.total_recipients
    done = stats["sent"] + stats["failed"]
    average_rate = None
    if campaign.started_at and done:
        end = campaign.finished_at or utcnow()
        elapsed = max((end - campaign.started_at).total_seconds(), 0.001)
        average_rate = round(done / elapsed, 2)
    return {
        "id": campaign.id,
        "status": campaign.status,
        "status_reason": campaign.status_reason,
        "send_at": _iso(campaign.send_at),
        "started_at": _iso(campaign.started_at),
        "finished_at": _iso(campaign.finished_at),
        "stats": stats,
        "average_rate": average_rate,
        "actions": sorted(allowed_actions(campaign)),
        "server_time": utcnow().isoformat(),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def counts_for_campaigns(campaigns: Sequence[Campaign]) -> dict[int, dict[str, int]]:
    """{total, pending, sent, failed} for a page of campaigns, from the maintained counts (see
    campaign_stats). The caller commits."""
    from mailapp.reports.services import delivery_counts

    counted = delivery_counts([campaign.id for campaign in campaigns])
    result = {}
    for campaign in campaigns:
        counts = counted[campaign.id]
        total = counts["recipients"] or campaign.total_recipients
        pending = max(total - counts["sent"] - counts["failed"], 0)
        result[campaign.id] = {"total": total, "pending": pending, "sent": counts["sent"],
                               "failed": counts["failed"]}  # fmt: skip
    return result


def list_campaigns(page: int, per_page: int = 25) -> tuple[list[Campaign], dict[int, dict[str, int]], Any]:
    """A page of campaigns, newest first, with their delivery counts (see counts_for_campaigns)."""
    pager = db.paginate(
        select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id.desc()),
        page=page,
        per_page=per_page,
        error_out=False,
    )
    campaigns = list(pager.items)
    return campaigns, counts_for_campaigns(campaigns), pager


def delivery_page(
    campaign_id: int, *, status: str | None = None, after: int | None = None, limit: int = DELIVERY_PAGE_SIZE
) -> tuple[list[Delivery], int | None]:
    """One page of the delivery log, keyset-paginated on id (WHERE id > after), optionally one status.
    Returns the rows and the cursor of the next page (None on the last)."""
    if status is not None and status not in set(DeliveryStatus):
        raise ValidationError(
            f"Unknown delivery status {status!r}; use one of {', '.join(DeliveryStatus)}.",
            [_field_error("status", "Unknown status.")],
        )
    # One ordered range scan of the (campaign_id, status, id) index per status, merged: fast at any
    # depth of a million-row log, where "campaign_id = ? AND id > ? ORDER BY id" would scan or sort.
    per_status = []
    for each in [status] if status else list(DeliveryStatus):
        part = select(Delivery.id).where(Delivery.campaign_id == campaign_id, Delivery.status == each)
        if after:
            part = part.where(Delivery.id > after)
        per_status.append(select(part.order_by(Delivery.id).limit(limit + 1).subquery().c.id))
    ids = union_all(*per_status).subquery()
    statement = select(Delivery).where(Delivery.id.in_(select(ids.c.id)))
    rows = list(db.session.scalars(statement.order_by(Delivery.id).limit(limit + 1)))
    next_after = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_after
