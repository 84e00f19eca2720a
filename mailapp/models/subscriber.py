"""Subscribers, lists, list membership and CSV imports."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, String, Table, Text, false
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator, TypeEngine

from mailapp.models.base import Base, UTCDateTime, utcnow


class AttributesJSON(TypeDecorator):
    """JSONB on PostgreSQL (imports merge attributes with `||` and compare them with `@>`, which plain
    json lacks); JSON text on SQLite."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


class SubscriberStatus(enum.StrEnum):
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BLOCKLISTED = "blocklisted"
    # Hard-bounced, or soft-bounced too often (mailapp/sending/suppression.py): the address is
    # suppressed too, and lifting the suppression does not make the subscriber active again.
    BOUNCED = "bounced"
    # Signed up through a form to a double opt-in list and has not clicked the confirmation yet. The
    # lists waiting for the click live on the consent record (mailapp/models/signup.py), not in
    # list_members, so an unconfirmed person is on no list at all and no campaign can reach them.
    UNCONFIRMED = "unconfirmed"


class ImportStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


list_members = Table(
    "list_members",
    Base.metadata,
    Column("list_id", ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True),
    Column("subscriber_id", ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_list_members_subscriber_id", "subscriber_id"),
)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased, so the plain unique index makes emails unique regardless of case and
    # upserts can target it on both SQLite and PostgreSQL.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(AttributesJSON(), default=dict)
    status: Mapped[str] = mapped_column(String(20), default=SubscriberStatus.ACTIVE, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Which campaign's link they unsubscribed through. No foreign key: subscribers are created before
    # campaigns in the schema, and the id stays meaningful in reports after a campaign is deleted.
    unsubscribed_campaign_id: Mapped[int | None] = mapped_column()
    # The latest human open or click of any campaign: segments' "opened within N days" and "never
    # opened" read this one column. Kept by mailapp.models.delivery.ENGAGEMENT_TRIGGERS.
    last_engaged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    lists: Mapped[list[SubscriberList]] = relationship(
        secondary=list_members, back_populates="subscribers"
    )


class SubscriberList(Base):
    __tablename__ = "lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Signups through a form join only after clicking the emailed confirmation link.
    double_opt_in: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Shown in the preference center, where readers may join or leave it themselves.
    public: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The confirmation and welcome emails' layouts; no confirmation layout means the built-in one,
    # no welcome layout means no welcome email.
    confirmation_layout_id: Mapped[int | None] = mapped_column(ForeignKey("layouts.id", ondelete="SET NULL"))
    welcome_layout_id: Mapped[int | None] = mapped_column(ForeignKey("layouts.id", ondelete="SET NULL"))

    subscribers: Mapped[list[Subscriber]] = relationship(
        secondary=list_members, back_populates="lists", lazy="dynamic"
    )


class SubscriberImport(Base):
    """One CSV upload into a list, processed by a Celery task; its counters drive the progress bar."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(String(300), default="")
    file_path: Mapped[str] = mapped_column(String(1000), default="")
    file_size: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(20), default=ImportStatus.QUEUED)
    total: Mapped[int] = mapped_column(default=0)
    processed: Mapped[int] = mapped_column(default=0)
    imported: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    # skipped = duplicates (an email seen earlier in the same file) + rows that would change nothing.
    skipped: Mapped[int] = mapped_column(default=0)
    duplicates: Mapped[int] = mapped_column(default=0)
    # The first errors, [{line, email, reason}], capped so a broken million-row file stays small.
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error_count: Mapped[int] = mapped_column(default=0)
    failure: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    parts: Mapped[list[SubscriberImportPart]] = relationship(
        order_by="SubscriberImportPart.part", cascade="all, delete-orphan", passive_deletes=True
    )


class SubscriberImportPart(Base):
    """One writer's share of an import. Each chunk of the file is split between the writers by a hash of
    the email, and each writer commits its share with its own counters, on its own connection: so each
    part knows how far into the file it has committed (`records`), which is where it resumes. The
    import's counters are the sum of its parts' (each writer adds its share to both in one commit)."""

    __tablename__ = "import_parts"

    import_id: Mapped[int] = mapped_column(ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True)
    part: Mapped[int] = mapped_column(primary_key=True)
    # Data records of the file (valid or not) up to the end of the last chunk this part committed.
    records: Mapped[int] = mapped_column(default=0)
    processed: Mapped[int] = mapped_column(default=0)
    imported: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    error_count: Mapped[int] = mapped_column(default=0)
