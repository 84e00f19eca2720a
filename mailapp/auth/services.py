"""Users, passwords (scrypt, via Werkzeug), their time zone setting and hashed API tokens."""

from __future__ import annotations

import hashlib
import os
import secrets
from functools import cache

from flask import current_app
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from mailapp.addresses import normalize_email
from mailapp.auth.sessions import end_all_sessions
from mailapp.errors import ConflictError, NotFoundError, ValidationError, WrongPasswordError, field_problem
from mailapp.extensions import db
from mailapp.models import ApiToken, User, utcnow
from mailapp.timezones import ZONE_NAME_MAX_LENGTH, is_zone_name

MIN_PASSWORD_LENGTH = 8


def _check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"Password must be at least {MIN_PASSWORD_LENGTH} characters.")


def _hash_password(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def create_user(email: str, password: str, *, is_admin: bool = False) -> User:
    email = normalize_email(email)
    _check_new_password(password)
    if db.session.scalar(select(User).where(User.email == email)) is not None:
        raise ConflictError(f"A user with email {email} already exists.")
    user = User(email=email, password_hash=_hash_password(password), is_admin=is_admin)
    db.session.add(user)
    db.session.flush()
    return user


def authenticate(email: str, password: str) -> User | None:
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        # As slow as a wrong password, so the answer's timing does not tell which emails have accounts.
        check_password_hash(_unknown_user_hash(current_app.config["PASSWORD_HASH_METHOD"]), password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    return user


@cache
def _unknown_user_hash(method: str) -> str:
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


def set_password(email: str, new_password: str) -> User:
    """The operator's reset (`flask users set-password`): a new password, and every session of the
    user ended, remember cookies included."""
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFoundError(f"No user with email {email}.")
    _check_new_password(new_password)
    user.password_hash = _hash_password(new_password)
    end_all_sessions(user)
    db.session.flush()
    return user


def change_password(user: User, current_password: str, new_password: str) -> None:
    """The user's own change: needs the current password; ends every session of the user, the caller's
    too (the change-password page then starts a fresh one for the browser it came from)."""
    if not check_password_hash(user.password_hash, current_password):
        raise WrongPasswordError("The current password is wrong.")
    _check_new_password(new_password)
    user.password_hash = _hash_password(new_password)
    end_all_sessions(user)
    db.session.flush()


def set_timezone(user: User, name: str) -> None:
    """The IANA zone the dashboard shows this user's times in."""
    if not is_zone_name(name):
        raise ValidationError(
            f"{name[:ZONE_NAME_MAX_LENGTH]!r} is not a time zone: choose one from the list "
            "(e.g. Europe/Paris).",
            [field_problem("timezone", "Not an IANA time zone name.")],
        )
    user.timezone = name
    db.session.flush()


def ensure_first_admin() -> tuple[str, str, bool] | None:
    """Create the first admin if there is no user yet. Returns (email, password, was_generated)."""
    if db.session.scalar(select(func.count()).select_from(User)):
        return None
    email = os.environ.get("MAILAPP_ADMIN_EMAIL") or "admin@example.com"
    password = os.environ.get("MAILAPP_ADMIN_PASSWORD")
    generated = not password
    if generated:
        password = secrets.token_urlsafe(12)
    create_user(email, password, is_admin=True)
    return email, password, generated


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(email: str, *, name: str = "") -> str:
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFoundError(f"No user with email {email}.")
    token = "mk_" + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user_id=user.id, name=name, token_hash=hash_token(token)))
    db.session.flush()
    return token


def user_for_token(token: str) -> User | None:
    api_token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if api_token is None:
        return None
    api_token.last_used_at = utcnow()
    return api_token.user
