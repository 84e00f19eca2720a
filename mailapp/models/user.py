"""Dashboard users, their live sign-in sessions and their hashed API tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailapp.models.base import Base, UTCDateTime, utcnow


class User(Base):
    """A dashboard user. Carries what Flask-Login asks of a user object; get_id() names the sign-in."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(default=False)
    # The IANA zone the dashboard shows times in; "" until the browser's zone fills it on first visit.
    timezone: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan")
    sessions: Mapped[list[UserSession]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    # The secret of the sign-in this object was loaded for (not stored: the table keeps its hash). It is
    # half of get_id(), so both the session cookie and the remember cookie name a live session row.
    live_session_secret = None

    # Flask-Login's user protocol. Not its UserMixin, whose __eq__ compares get_id() and so would tie
    # equality of two users to the sign-in each was loaded for.
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        if not self.live_session_secret:
            raise RuntimeError("a user is signed in only through mailapp.auth.sessions.start_session")
        return f"{self.id}:{self.live_session_secret}"


class UserSession(Base):
    """One browser's sign-in. Signing out deletes its row, and a password change deletes all of the
    user's rows, so a copied session or remember cookie stops working on the server, not just in the
    browser that signed out."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the random secret in the cookies: a copy of the table opens no session.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    remember: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The server refuses the session after this, whatever the cookie says.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="sessions")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # SHA-256 of the token: tokens are long random strings, so a fast hash is enough and lets us look
    # them up by value.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")
