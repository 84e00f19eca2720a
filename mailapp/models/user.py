"""Dashboard users and their roles, live sign-in sessions, hashed API tokens, one-time recovery codes,
invites, and the installation-wide team settings."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailapp.models.base import Base, UTCDateTime, utcnow


class Role(enum.StrEnum):
    """What a user or token may do; each role may do everything the ones before it may."""

    VIEWER = "viewer"
    EDITOR = "editor"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def at_least(self, needed: Role) -> bool:
        return self.rank >= needed.rank

    @classmethod
    def lowest(cls, *roles: Role) -> Role:
        return min(roles, key=lambda role: role.rank)


class User(Base):
    """A dashboard user. Carries what Flask-Login asks of a user object; get_id() names the sign-in."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    # Kept for old scripts; the role decides what the user may do (owners have is_admin set).
    is_admin: Mapped[bool] = mapped_column(default=False)
    role: Mapped[str] = mapped_column(String(20), default=Role.EDITOR.value)
    # A viewer may download subscriber data (list exports, delivery logs) only with this grant.
    can_export: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when an owner deactivates the user: no sign-in, no session, no token works from then on.
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The TOTP secret, sealed with SecretBox; None until the user has confirmed enrolment.
    totp_secret_sealed: Mapped[str | None] = mapped_column(Text)
    # The 30-second step of the last code accepted: a code is never taken twice, nor an older one.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

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
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.deactivated_at is None

    @property
    def user_role(self) -> Role:
        return Role(self.role)

    @property
    def has_two_factor(self) -> bool:
        return self.totp_secret_sealed is not None

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
    # The most the token may do; at use it is capped again by its owner's current role.
    role: Mapped[str] = mapped_column(String(20), default=Role.EDITOR.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Written at most once a minute per token, so a busy script does not write on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")

    @property
    def token_role(self) -> Role:
        return Role(self.role)


class RecoveryCode(Base):
    """A one-time code that stands in for a TOTP code when the user's authenticator is lost."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the code: the codes are long and random, so a fast hash is enough.
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Invite(Base):
    """An owner's invitation to join with a role. Its link is signed and expires; accepting it sets
    accepted_at, after which the link is refused."""

    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    role: Mapped[str] = mapped_column(String(20))
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TeamSetting(Base):
    """Installation-wide settings an owner changes from the dashboard (name -> JSON-encoded value)."""

    __tablename__ = "team_settings"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
