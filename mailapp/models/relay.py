"""SMTP relays stored in the database: where mail goes, their limits, and the backup each may fail over to.
The MAIL_* environment stays the default relay whenever no row is marked the default."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailapp.models.base import Base, UTCDateTime, utcnow


class TlsMode(enum.StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


class SmtpRelay(Base):
    __tablename__ = "smtp_relays"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(default=587)
    tls_mode: Mapped[str] = mapped_column(String(10), default=TlsMode.STARTTLS)
    username: Mapped[str] = mapped_column(String(320), default="")
    # Sealed with mailapp.secret_box.SecretBox; "" when no password is set. Never shown again.
    password_sealed: Mapped[str] = mapped_column(Text, default="")
    # How many send tasks of one campaign may hold a connection to this relay at once.
    max_connections: Mapped[int] = mapped_column(default=4)
    rate_per_second: Mapped[float] = mapped_column(default=0.0)  # 0: no per-second limit
    cap_per_hour: Mapped[int] = mapped_column(default=0)  # 0: no cap
    cap_per_day: Mapped[int] = mapped_column(default=0)  # 0: no cap
    backup_relay_id: Mapped[int | None] = mapped_column(ForeignKey("smtp_relays.id", ondelete="SET NULL"))
    enabled: Mapped[bool] = mapped_column(default=True)
    is_default: Mapped[bool] = mapped_column(default=False)
    # Set when this relay was found unreachable (or deferring everything) and sending moved to its
    # backup: every worker reads it, and tries this relay again once it has passed (the recovery probe).
    failed_over_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failover_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    backup_relay: Mapped[SmtpRelay | None] = relationship(remote_side=[id])
