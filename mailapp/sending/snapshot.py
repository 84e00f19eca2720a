"""A campaign's snapshot: one delivery row per recipient, and its tracked links, taken once when the
campaign starts sending. Later changes to the lists do not change who receives it."""

from __future__ import annotations

from sqlalchemy import func, select, text

from mailapp.errors import NotFoundError
from mailapp.extensions import db
from mailapp.models import Campaign, Delivery, DeliveryStatus, SubscriberStatus, utcnow
from mailapp.sending.links import prepare_layout
from mailapp.sending.render import DEFAULT_LAYOUT

_SNAPSHOT_SQL = text(
    """
    INSERT INTO deliveries (campaign_id, subscriber_id, email, status, attempts, message_id, error,
                            open_count, click_count)
    SELECT :campaign_id, s.id, s.email, :pending, 0, '', '', 0, 0
    FROM subscribers s
    WHERE s.status = :active
      AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email AND x.lifted_at IS NULL)
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
    of the lists they are on) whose address is not suppressed, and the tracked links. The suppression
    check is one probe of suppressions' unique email index per subscriber (an anti-join on
    PostgreSQL). Idempotent; flushes, the caller commits."""
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
        _, urls = prepare_layout(layout_html or DEFAULT_LAYOUT, track_clicks=True)
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
