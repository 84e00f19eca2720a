"""Signup forms (hosted page, website snippet, public API) and the consent each signup records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, String, Table, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailapp.models.base import Base, UTCDateTime, utcnow
from mailapp.models.subscriber import SubscriberList

signup_form_lists = Table(
    "signup_form_lists",
    Base.metadata,
    Column("form_id", ForeignKey("signup_forms.id", ondelete="CASCADE"), primary_key=True),
    Column("list_id", ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True),
)


class SignupForm(Base):
    __tablename__ = "signup_forms"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The hosted page's address, /s/<slug>.
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200), default="")
    intro: Mapped[str] = mapped_column(Text, default="")
    consent_text: Mapped[str] = mapped_column(Text, default="")
    button_text: Mapped[str] = mapped_column(String(100), default="Subscribe")
    thank_you_text: Mapped[str] = mapped_column(Text, default="")
    # Where the browser goes after a signup; empty: the hosted thank-you page.
    redirect_url: Mapped[str] = mapped_column(String(2000), default="")
    # Origins ("https://www.example.com") whose pages may post to the public API from JavaScript.
    allowed_origins: Mapped[list[str]] = mapped_column(JSON, default=list)
    ask_name: Mapped[bool] = mapped_column(default=True, server_default=false())
    # True: the visitor ticks which of the form's lists they want; False: they join all of them.
    lists_choosable: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The visitor's browser must solve an ALTCHA proof-of-work challenge before the signup is taken.
    altcha: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Extra attributes asked for: [{"name": "city", "label": "City", "type": "text"}].
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    lists: Mapped[list[SubscriberList]] = relationship(
        secondary=signup_form_lists, order_by="SubscriberList.id"
    )


class ConsentRecord(Base):
    """One signup as it happened: the exact consent text shown, when, where from; and the lists still
    waiting for the confirmation click (emptied when it comes)."""

    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    form_id: Mapped[int | None] = mapped_column(ForeignKey("signup_forms.id", ondelete="SET NULL"))
    email: Mapped[str] = mapped_column(String(320))
    consent_text: Mapped[str] = mapped_column(Text, default="")
    list_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    pending_list_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    # Truncated like tracking's (/24, /48): enough to show where consent came from, never a household.
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SpentAltchaChallenge(Base):
    """An ALTCHA challenge already used for a signup, kept until it expires: a solution is good once."""

    __tablename__ = "spent_altcha_challenges"

    # The challenge's HMAC signature (hex): it names the challenge, and no one without the key can
    # make another that verifies.
    signature: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
