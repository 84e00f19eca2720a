"""A campaign and its deliveries as JSON-ready dicts: one mapping for each, shared by the API, the
campaign page's progress poll, and the forms that edit a campaign."""

from __future__ import annotations

from typing import Any

from mailapp.models.base import iso_or_none
from mailapp.models.campaign import Campaign
from mailapp.models.delivery import Delivery


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
        "sender_identity_id": campaign.sender_identity_id,
        "relay_id": campaign.relay_id,
    }


def campaign_state(campaign: Campaign) -> dict[str, Any]:
    """Where a campaign stands in its life: what the API's campaign and the page's poll both show."""
    return {
        "id": campaign.id,
        "status": campaign.status,
        "status_reason": campaign.status_reason,
        "send_at": iso_or_none(campaign.send_at),
        "send_timezone": campaign.send_timezone,
        "started_at": iso_or_none(campaign.started_at),
        "finished_at": iso_or_none(campaign.finished_at),
    }


def serialize_campaign(campaign: Campaign, stats: dict[str, int]) -> dict[str, Any]:
    """The API's campaign; stats: {total, pending, sent, failed} (campaigns.services.campaign_counts)."""
    fields = campaign_fields(campaign)
    fields["list_ids"] = sorted(fields["list_ids"])
    created_at = iso_or_none(campaign.created_at)
    return {**campaign_state(campaign), **fields, "created_at": created_at, "stats": stats}


def serialize_delivery(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "subscriber_id": delivery.subscriber_id,
        "email": delivery.email,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "sent_at": iso_or_none(delivery.sent_at),
        "message_id": delivery.message_id,
        "smtp_code": delivery.smtp_code,
        "error": delivery.error,
        "relay_name": delivery.relay_name,
    }
