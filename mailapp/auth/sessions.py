"""Server-side sign-in sessions: a row per browser that signed in, named by a random secret that both
the Flask session cookie and the remember cookie carry (Flask-Login's "alternative token" pattern).

Deleting the row is what signs a browser out: a copy of either cookie, taken before, is refused from
then on. Signing out deletes the one row; a password change deletes every row of the user."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select

from mailapp.extensions import db
from mailapp.models import User, UserSession, utcnow

MAX_USER_ID = 2**31 - 1  # the users.id column's range on PostgreSQL


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def start_session(user: User, *, remember: bool) -> UserSession:
    """A new live session for `user`, whose get_id() names it from now on. Also drops the user's expired
    rows, so the table holds live sessions only."""
    now = utcnow()
    db.session.execute(
        delete(UserSession).where(UserSession.user_id == user.id, UserSession.expires_at <= now)
    )
    if remember:
        lifetime = current_app.config["REMEMBER_COOKIE_DURATION"]
    else:
        lifetime = timedelta(hours=current_app.config["SESSION_LIFETIME_HOURS"])
    secret = secrets.token_urlsafe(32)
    live = UserSession(
        user_id=user.id, secret_hash=_hash_secret(secret), remember=remember, created_at=now,
        expires_at=now + lifetime,
    )
    db.session.add(live)
    db.session.flush()
    user.live_session_secret = secret
    return live


def load_user_for_session(session_id: str) -> User | None:
    """Flask-Login's user loader: the user of a live, unexpired session named "<user id>:<secret>", for
    both the session cookie and the remember cookie. Anything else (a cookie from before sign-out or a
    password change, or of the old "<user id>" form) is nobody."""
    user_id, _, secret = session_id.partition(":")
    if not (user_id.isascii() and user_id.isdigit() and secret) or int(user_id) > MAX_USER_ID:
        return None
    user = db.session.scalar(
        select(User)
        .join(UserSession, UserSession.user_id == User.id)
        .where(
            User.id == int(user_id),
            UserSession.secret_hash == _hash_secret(secret),
            UserSession.expires_at > utcnow(),
            User.deactivated_at.is_(None),
        )
    )
    if user is not None:
        user.live_session_secret = secret
    return user


def is_remembered(user: User) -> bool:
    """Whether the session `user` was loaded for was started with "keep me signed in"."""
    if not user.live_session_secret:
        return False
    return bool(
        db.session.scalar(
            select(UserSession.remember).where(
                UserSession.user_id == user.id,
                UserSession.secret_hash == _hash_secret(user.live_session_secret),
            )
        )
    )


def end_session(user: User) -> None:
    """Sign out the session `user` was loaded for, on the server."""
    if user.live_session_secret:
        db.session.execute(
            delete(UserSession).where(
                UserSession.user_id == user.id,
                UserSession.secret_hash == _hash_secret(user.live_session_secret),
            )
        )
    user.live_session_secret = None


def end_all_sessions(user: User) -> None:
    """Sign the user out everywhere: every browser, every remember cookie."""
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    user.live_session_secret = None
