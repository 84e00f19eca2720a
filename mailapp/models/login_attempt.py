"""Sign-in attempt counters of the embedded default (Redis keeps them when REDIS_URL is set)."""

from __future__ import annotations

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from mailapp.models.base import Base


class LoginAttempt(Base):
    """Attempts counted for one key (a client address or an account) in one fixed time window."""

    __tablename__ = "login_attempts"

    # SHA-256 of "address:<ip>" or "account:<email>": the table names no one who tried to sign in.
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Start of the window, in seconds since the epoch; old windows are deleted as new ones begin.
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
