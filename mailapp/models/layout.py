"""HTML layouts: Jinja templates that campaigns render per recipient, their MJML source when built in the
visual editor, and the images they show."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mailapp.models.base import Base, UTCDateTime, utcnow


class Layout(Base):
    __tablename__ = "layouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    html: Mapped[str] = mapped_column(Text)
    # The visual editor's (or an MJML upload's) source; `html` is compiled from it on save, so sends never
    # compile. NULL for a layout written as HTML.
    mjml: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class LayoutImage(Base):
    """An image uploaded for layouts, served at /media/<id>-<digest>.<extension> so that a message never
    depends on another host. Kept in the database: every web process serves it, on any machine."""

    __tablename__ = "layout_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the content (hex): part of the public URL, so ids alone cannot be enumerated.
    digest: Mapped[str] = mapped_column(String(64), index=True)
    content_type: Mapped[str] = mapped_column(String(40))
    extension: Mapped[str] = mapped_column(String(8))
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
