"""All models, imported here so Alembic and the app see every table."""

from mailapp.models.base import Base, UTCDateTime, utcnow
from mailapp.models.campaign import Campaign, CampaignStatus, campaign_lists
from mailapp.models.delivery import Delivery, DeliveryStatus
from mailapp.models.layout import Layout
from mailapp.models.subscriber import (
    ImportStatus,
    Subscriber,
    SubscriberImport,
    SubscriberList,
    SubscriberStatus,
    list_members,
)
from mailapp.models.tracking import CampaignStats, ClickEvent, Link, OpenEvent
from mailapp.models.user import ApiToken, User

__all__ = [
    "ApiToken",
    "Base",
    "Campaign",
    "CampaignStats",
    "CampaignStatus",
    "ClickEvent",
    "Delivery",
    "DeliveryStatus",
    "ImportStatus",
    "Layout",
    "Link",
    "OpenEvent",
    "Subscriber",
    "SubscriberImport",
    "SubscriberList",
    "SubscriberStatus",
    "UTCDateTime",
    "User",
    "campaign_lists",
    "list_members",
    "utcnow",
]
