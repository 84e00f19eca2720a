"""All models, imported here so Alembic and the app see every table."""

from mailapp.models.audit import AuditEntry
from mailapp.models.base import Base, UTCDateTime, utcnow
from mailapp.models.campaign import Campaign, CampaignStatus, campaign_lists
from mailapp.models.delivery import CampaignDeliveryCount, Delivery, DeliveryStatus
from mailapp.models.layout import Layout, LayoutImage
from mailapp.models.login_attempt import LoginAttempt
from mailapp.models.relay import SmtpRelay, TlsMode
from mailapp.models.segment import Segment, campaign_segments
from mailapp.models.sender_identity import SenderIdentity
from mailapp.models.sending_domain import SendingDomain
from mailapp.models.signup import ConsentRecord, SignupForm, SpentAltchaChallenge, signup_form_lists
from mailapp.models.subscriber import (
    ImportStatus,
    Subscriber,
    SubscriberImport,
    SubscriberImportPart,
    SubscriberList,
    SubscriberStatus,
    list_members,
)
from mailapp.models.suppression import MailEvent, MailEventKind, Suppression, SuppressionReason
from mailapp.models.system_message import SystemMessage, SystemMessageKind, SystemMessageStatus
from mailapp.models.tracking import (
    CampaignHourlyActivity,
    CampaignStats,
    ClickEvent,
    Link,
    OpenEvent,
)
from mailapp.models.user import ApiToken, Invite, RecoveryCode, Role, TeamSetting, User, UserSession
from mailapp.models.webhook import WebhookBatch, WebhookReplayToken

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "Campaign",
    "CampaignDeliveryCount",
    "CampaignHourlyActivity",
    "CampaignStats",
    "CampaignStatus",
    "ClickEvent",
    "ConsentRecord",
    "Delivery",
    "DeliveryStatus",
    "ImportStatus",
    "Invite",
    "Layout",
    "LayoutImage",
    "Link",
    "LoginAttempt",
    "MailEvent",
    "MailEventKind",
    "OpenEvent",
    "RecoveryCode",
    "Role",
    "Segment",
    "SenderIdentity",
    "SendingDomain",
    "SignupForm",
    "SpentAltchaChallenge",
    "SmtpRelay",
    "Subscriber",
    "SubscriberImport",
    "SubscriberImportPart",
    "SubscriberList",
    "SubscriberStatus",
    "Suppression",
    "SuppressionReason",
    "SystemMessage",
    "SystemMessageKind",
    "SystemMessageStatus",
    "TeamSetting",
    "TlsMode",
    "UTCDateTime",
    "User",
    "UserSession",
    "WebhookBatch",
    "WebhookReplayToken",
    "campaign_lists",
    "campaign_segments",
    "list_members",
    "signup_form_lists",
    "utcnow",
]
