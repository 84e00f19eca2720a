"""API: campaigns. Create, read, edit, delete, preview, send, schedule, unschedule, cancel, pause,
resume, retry failed, test sends, and the per-recipient delivery log (keyset-paginated)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from mailapp.api.common import json_body, number_arg, paginated
from mailapp.api.routes import bp
from mailapp.campaigns import lifecycle, services
from mailapp.campaigns.serializers import serialize_campaign, serialize_delivery
from mailapp.errors import ValidationError
from mailapp.extensions import db
from mailapp.ids import MAX_ID
from mailapp.models import Campaign, Delivery
from mailapp.timezones import ZONE_NAME_MAX_LENGTH, is_zone_name

MAX_DELIVERIES_PER_PAGE = 500


def _campaign_response(campaign_id: int, status: int = 200) -> tuple[dict[str, Any], int]:
    campaign = lifecycle.get_campaign(campaign_id)
    db.session.refresh(campaign)
    return serialize_campaign(campaign, services.campaign_counts(campaign)), status


@bp.get("/campaigns")
def list_campaigns():
    statement = select(Campaign).options(selectinload(Campaign.lists)).order_by(Campaign.id.desc())
    status = request.args.get("status")
    if status:
        statement = statement.where(Campaign.status == status)
    page = paginated(statement, lambda campaign: campaign)
    counts = services.counts_for_campaigns(page["items"])
    page["items"] = [serialize_campaign(campaign, counts[campaign.id]) for campaign in page["items"]]
    return page


@bp.post("/campaigns")
def create_campaign():
    campaign = services.create_campaign(json_body())
    db.session.commit()
    return _campaign_response(campaign.id, 201)


@bp.get("/campaigns/<int:campaign_id>")
def show_campaign(campaign_id: int):
    campaign = lifecycle.get_campaign(campaign_id)
    return serialize_campaign(campaign, services.campaign_counts(campaign))


@bp.patch("/campaigns/<int:campaign_id>")
def update_campaign(campaign_id: int):
    services.update_campaign(campaign_id, json_body())
    db.session.commit()
    return _campaign_response(campaign_id)


@bp.delete("/campaigns/<int:campaign_id>")
def delete_campaign(campaign_id: int):
    services.delete_campaign(campaign_id)
    db.session.commit()
    return "", 204


@bp.post("/campaigns/<int:campaign_id>/send")
def send_campaign(campaign_id: int):
    lifecycle.send_now(campaign_id)
    return _campaign_response(campaign_id, 202)


def parse_send_at(raw: Any) -> datetime:
    """ISO 8601 with an explicit offset ('Z' or +hh:mm); a time without one is ambiguous and refused."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError(
            "send_at is required: an ISO 8601 time with an offset, e.g. 2026-12-01T09:30:00+01:00.",
            [{"field": "send_at", "message": "Required."}],
        )
    text = raw.strip()
    try:
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
    except ValueError as error:
        raise ValidationError(
            f"send_at {raw!r} is not an ISO 8601 time.", [{"field": "send_at", "message": "Not ISO 8601."}]
        ) from error
    if value.tzinfo is None:
        raise ValidationError(
            f"send_at {raw!r} has no UTC offset; add one, e.g. 'Z' or '+01:00'.",
            [{"field": "send_at", "message": "No UTC offset."}],
        )
    return value


def parse_timezone(raw: Any) -> str | None:
    """The optional IANA zone the schedule is shown in (None keeps the campaign's)."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not is_zone_name(raw):
        shown = raw[:ZONE_NAME_MAX_LENGTH] if isinstance(raw, str) else raw
        raise ValidationError(
            f"timezone {shown!r} is not an IANA time zone name, e.g. Europe/Paris.",
            [{"field": "timezone", "message": "Not an IANA time zone name."}],
        )
    return raw


@bp.post("/campaigns/<int:campaign_id>/schedule")
def schedule_campaign(campaign_id: int):
    body = json_body()
    send_at = parse_send_at(body.get("send_at"))
    lifecycle.schedule(campaign_id, send_at, send_timezone=parse_timezone(body.get("timezone")))
    return _campaign_response(campaign_id)


@bp.post("/campaigns/<int:campaign_id>/cancel")
def cancel_campaign(campaign_id: int):
    lifecycle.cancel(campaign_id)
    return _campaign_response(campaign_id)


@bp.post("/campaigns/<int:campaign_id>/unschedule")
def unschedule_campaign(campaign_id: int):
    lifecycle.unschedule(campaign_id)
    return _campaign_response(campaign_id)


@bp.post("/campaigns/<int:campaign_id>/pause")
def pause_campaign(campaign_id: int):
    lifecycle.pause(campaign_id, "Paused through the API.")
    return _campaign_response(campaign_id)


@bp.post("/campaigns/<int:campaign_id>/resume")
def resume_campaign(campaign_id: int):
    lifecycle.resume(campaign_id)
    return _campaign_response(campaign_id)


@bp.post("/campaigns/<int:campaign_id>/retry-failed")
def retry_failed(campaign_id: int):
    count = lifecycle.retry_failed(campaign_id)
    body, status = _campaign_response(campaign_id)
    body["retried"] = count
    return body, status


@bp.post("/campaigns/<int:campaign_id>/test")
def test_campaign(campaign_id: int):
    body = json_body()
    emails = body.get("emails")
    if not isinstance(emails, list):
        raise ValidationError(
            "emails must be a list of addresses.", [{"field": "emails", "message": "Not a list."}]
        )
    sent_to = services.send_test(campaign_id, emails, body.get("subscriber_id"))
    return {"sent_to": sent_to, "subscriber_id": body.get("subscriber_id")}


@bp.get("/campaigns/<int:campaign_id>/preview")
def preview_campaign(campaign_id: int):
    """The message as ?subscriber_id= (default: the first active recipient of its lists; with none, the
    sample person) will receive it: built by the send's own code."""
    lifecycle.get_campaign(campaign_id)
    subscriber_id = number_arg("subscriber_id", 0, 1, MAX_ID) or None
    preview = services.preview_campaign(campaign_id, subscriber_id)
    message = preview.message
    return {
        "subscriber_id": preview.subscriber.id if preview.subscriber else None,
        "to": preview.subscriber.email if preview.subscriber else None,
        "from": message.from_header,
        "subject": message.subject,
        "preheader": message.preheader,
        "html": message.html,
        "text": message.text,
    }


@bp.get("/campaigns/<int:campaign_id>/deliveries")
def campaign_deliveries(campaign_id: int):
    """Pages like every list (?page=&per_page=, with total). Deep into a million-row log, pass
    ?after=<id> instead (the answer's next_after): a keyset page that costs the same at any depth."""
    lifecycle.get_campaign(campaign_id)
    status = request.args.get("status") or None
    if "after" not in request.args:
        statement = select(Delivery).where(Delivery.campaign_id == campaign_id)
        if status is not None:
            services.delivery_page(campaign_id, status=status, limit=1)  # validates the status
            statement = statement.where(Delivery.status == status)
        return paginated(statement.order_by(Delivery.id), serialize_delivery)
    after = number_arg("after", 0, 0, MAX_ID)
    per_page = number_arg("per_page", 100, 1, MAX_DELIVERIES_PER_PAGE)
    rows, next_after = services.delivery_page(campaign_id, status=status, after=after or None, limit=per_page)
    return {
        "items": [serialize_delivery(row) for row in rows],
        "per_page": per_page,
        "after": after or None,
        "next_after": next_after,
    }
