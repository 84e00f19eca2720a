"""Campaign content and figures: create, edit, duplicate and delete, test sends, recipient counts,
progress figures and the delivery log. The campaign's states and transitions are in
mailapp.campaigns.lifecycle.

Services flush; the view or task that owns the transaction commits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import func, select, union_all

from mailapp.addresses import normalize_email
from mailapp.audit.services import record
from mailapp.campaigns.lifecycle import allowed_actions, get_campaign, require_action
from mailapp.campaigns.serializers import campaign_fields, campaign_state
from mailapp.errors import TemplateError, ValidationError, field_problem
from mailapp.extensions import db
from mailapp.ids import id_from_text, is_id
from mailapp.layouts import services as layout_services
from mailapp.models.base import utcnow
from mailapp.models.campaign import Campaign, CampaignStatus
from mailapp.models.delivery import Delivery, DeliveryStatus
from mailapp.models.layout import Layout
from mailapp.models.relay import SmtpRelay
from mailapp.models.sender_identity import SenderIdentity
from mailapp.models.subscriber import Subscriber, SubscriberList, SubscriberStatus, list_members
from mailapp.models.suppression import Suppression
from mailapp.reports.figures import delivery_counts, status_counts

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
    "sender_identity_id": "Sender identity",
    "relay_id": "Relay",
}
CAMPAIGN_FIELDS = tuple(FIELD_LABELS)
SENDER_FIELDS = ("from_name", "from_email", "reply_to")

# --- fields -----------------------------------------------------------------------------------------


@dataclass
class _Checked:
    values: dict[str, Any]
    lists: list[SubscriberList]


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
            [field_problem(name, "Unknown field.") for name in unknown],
        )
    problems: list[dict[str, str]] = []
    values: dict[str, Any] = {}

    for name in ("name", "subject", "from_name", "from_email", "reply_to", "message"):
        raw = data.get(name)
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            problems.append(field_problem(name, "Must be a string."))
            continue
        value = raw if name == "message" else raw.strip()
        if name in HEADER_FIELDS and ("\r" in value or "\n" in value):
            problems.append(field_problem(name, "Cannot contain line breaks (it goes into a mail header)."))
            continue
        limit = FIELD_LIMITS.get(name)
        if limit and len(value) > limit:
            problems.append(field_problem(name, f"Must be at most {limit} characters."))
            continue
        values[name] = value

    for name in ("name", "subject", "from_email"):
        if name in values and not values[name]:
            problems.append(field_problem(name, "This field is required."))
            values.pop(name)

    if values.get("subject"):
        try:
            layout_services.check_subject(values["subject"])
        except TemplateError as error:
            problems.append(field_problem("subject", error.message))
    for name in ("from_email", "reply_to"):
        if values.get(name):
            try:
                values[name] = normalize_email(values[name])
            except ValidationError as error:
                problems.append(field_problem(name, error.message))

    layout_id = _as_id(data.get("layout_id"))
    if layout_id is None:
        problems.append(field_problem("layout_id", "Choose a layout."))
    elif db.session.get(Layout, layout_id) is None:
        problems.append(field_problem("layout_id", f"Layout {layout_id} does not exist."))
    else:
        values["layout_id"] = layout_id

    lists: list[SubscriberList] = []
    raw_lists = data.get("list_ids")
    if not isinstance(raw_lists, list | tuple) or not raw_lists:
        problems.append(field_problem("list_ids", "Choose at least one list."))
    else:
        list_ids = [_as_id(item) for item in raw_lists]
        if any(item is None for item in list_ids):
            problems.append(field_problem("list_ids", "List ids must be whole numbers."))
        else:
            wanted = sorted(set(list_ids))
            lists = list(db.session.scalars(select(SubscriberList).where(SubscriberList.id.in_(wanted))))
            missing = sorted(set(wanted) - {lst.id for lst in lists})
            if missing:
                problems.append(
                    field_problem("list_ids", f"No such list: {', '.join(str(m) for m in missing)}.")
                )

    for name, model in (("sender_identity_id", SenderIdentity), ("relay_id", SmtpRelay)):
        raw = data.get(name)
        chosen = None if raw in (None, "", 0) else _as_id(raw)
        if raw not in (None, "", 0) and chosen is None:
            problems.append(field_problem(name, "Must be an id, or null for none."))
        elif chosen is not None and db.session.get(model, chosen) is None:
            problems.append(field_problem(name, f"{FIELD_LABELS[name]} {chosen} does not exist."))
        else:
            values[name] = chosen

    for name in ("track_opens", "track_clicks"):
        raw = data.get(name, True)
        if not isinstance(raw, bool):
            problems.append(field_problem(name, "Must be true or false."))
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


def _with_identity(data: Mapping[str, Any], given: Mapping[str, Any]) -> Mapping[str, Any]:
    """Picking a sender identity fills the From fields that `given` (the caller's input) leaves out, or
    leaves blank for the From address; typed values win."""
    identity_id = _as_id(given.get("sender_identity_id")) if given.get("sender_identity_id") else None
    identity = db.session.get(SenderIdentity, identity_id) if identity_id else None
    if identity is None:
        return data
    filled = dict(data)
    for name in SENDER_FIELDS:
        if name not in given or (name == "from_email" and not given[name]):
            filled[name] = getattr(identity, name)
    return filled


def create_campaign(data: Mapping[str, Any]) -> Campaign:
    checked = _check_fields(_with_identity(data, data))
    campaign = Campaign(status=CampaignStatus.DRAFT)
    _apply(campaign, checked)
    db.session.add(campaign)
    db.session.flush()
    return campaign


def update_campaign(campaign_id: int, changes: Mapping[str, Any]) -> Campaign:
    """Change some fields of a draft or scheduled campaign; a scheduled one keeps its schedule."""
    campaign = get_campaign(campaign_id)
    require_action(campaign, "edit", "edit")
    checked = _check_fields(_with_identity({**campaign_fields(campaign), **changes}, changes))
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
    require_action(campaign, "delete", "delete")
    record("campaign.delete", campaign, f"{campaign.name!r} deleted ({campaign.status})")
    db.session.delete(campaign)
    db.session.flush()


# --- test sends -------------------------------------------------------------------------------------


def parse_test_recipients(raw: str | Iterable[str]) -> list[str]:
    """Addresses from a list or from text separated by commas, spaces or new lines, validated."""
    items = raw.replace(",", " ").split() if isinstance(raw, str) else list(raw)
    if not items:
        raise ValidationError(
            "Give at least one address to send the test to.", [field_problem("emails", "Required.")]
        )
    if len(items) > MAX_TEST_RECIPIENTS:
        raise ValidationError(
            f"At most {MAX_TEST_RECIPIENTS} test addresses at once.",
            [field_problem("emails", "Too many addresses.")],
        )
    emails = []
    for item in items:
        if not isinstance(item, str):
            raise ValidationError(
                "emails must be a list of strings.", [field_problem("emails", "Not a string.")]
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
                [field_problem("subscriber", "Unknown subscriber.")],
            )
        return found
    subscriber_id = _as_id(subscriber)
    if subscriber_id is None or db.session.get(Subscriber, subscriber_id) is None:
        raise ValidationError(
            f"Subscriber {subscriber} does not exist.",
            [field_problem("subscriber_id", "Unknown subscriber.")],
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
    from mailapp.sending.relay_choice import choose_relay
    from mailapp.sending.test_sends import send_test_messages

    # Through the relay the campaign itself would use, so the test shows what its recipients will get.
    config = current_app.config
    relay = choose_relay(campaign.id, config, current_app.extensions["mail"], current_app.instance_path).relay
    send_test_messages(campaign.id, addresses, subscriber_id, relay=relay)
    return addresses


# --- figures ----------------------------------------------------------------------------------------


def count_recipients(list_ids: Sequence[int]) -> int:
    """Active subscribers of these lists whose address is not suppressed, each counted once: what a send
    would snapshot now."""
    if not list_ids:
        return 0
    suppressed = select(Suppression.id).where(
        Suppression.email == Subscriber.email, Suppression.lifted_at.is_(None)
    ).exists()
    members = (
        select(list_members.c.subscriber_id)
        .join(Subscriber, Subscriber.id == list_members.c.subscriber_id)
        .where(
            list_members.c.list_id.in_(list_ids), Subscriber.status == SubscriberStatus.ACTIVE, ~suppressed
        )
        .distinct()
        .subquery()
    )
    return db.session.scalar(select(func.count()).select_from(members)) or 0


def delivery_stats(campaign_id: int) -> dict[str, int]:
    """{total, pending, sending, sent, failed}, exact, from the counts the database keeps per campaign
    and status (reports.figures.status_counts): a few rows, however many recipients."""

    stats = status_counts([campaign_id])[campaign_id]
    stats["total"] = sum(stats.values())
    return stats


def campaign_counts(campaign: Campaign) -> dict[str, int]:
    """{total, pending, sent, failed} of one campaign, as the API shows them: pending counts the
    deliveries being sent too, and the total is the snapshot's size until the counts exist."""
    live = delivery_stats(campaign.id)
    return {
        "total": live["total"] or campaign.total_recipients,
        "pending": live["pending"] + live["sending"],
        "sent": live["sent"],
        "failed": live["failed"],
    }


def progress(campaign_id: int) -> dict[str, Any]:
    """What the campaign page polls: status, counts, and the average rate since the start."""
    campaign = get_campaign(campaign_id)
    stats = delivery_stats(campaign_id)
    if not stats["total"] and campaign.total_recipients:
        stats["total"] = campaign.total_recipients
    done = stats["sent"] + stats["failed"]
    average_rate = None
    if campaign.started_at and done:
        end = campaign.finished_at or utcnow()
        elapsed = max((end - campaign.started_at).total_seconds(), 0.001)
        average_rate = round(done / elapsed, 2)
    return {
        **campaign_state(campaign),
        "stats": stats,
        "average_rate": average_rate,
        "actions": sorted(allowed_actions(campaign)),
        "server_time": utcnow().isoformat(),
    }


def counts_for_campaigns(campaigns: Sequence[Campaign]) -> dict[int, dict[str, int]]:
    """{total, pending, sent, failed} for a page of campaigns, from the maintained counts (see
    delivery_stats)."""

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
            [field_problem("status", "Unknown status.")],
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
