"""Figures for the dashboard home page."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from mailapp.extensions import db
from mailapp.models import Campaign, Layout, Subscriber, SubscriberList, SubscriberStatus


def home_summary() -> dict[str, Any]:
    return {
        "subscribers": db.session.scalar(
            select(func.count()).select_from(Subscriber).where(Subscriber.status == SubscriberStatus.ACTIVE)
        ),
        "lists": db.session.scalar(select(func.count()).select_from(SubscriberList)),
        "layouts": db.session.scalar(select(func.count()).select_from(Layout)),
        "recent_campaigns": db.session.scalars(
            select(Campaign).order_by(Campaign.created_at.desc()).limit(5)
        ).all(),
    }
