"""Users, passwords (scrypt, via Werkzeug) and hashed API tokens with roles."""

from __future__ import annotations

import hashlib
import os
import secrets
from datetime import datetime, timedelta
from functools import cache

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import func, or_, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from mailapp.addresses import normalize_email
from mailapp.auth.sessions import end_all_sessions
from mailapp.errors import ConflictError, InvalidLinkError, NotFoundError, ValidationError, WrongPasswordError
from mailapp.extensions import db
from mailapp.models import ApiToken, Role, User, utcnow

# How stale a token's last_used_at may get before a request writes it again.
LAST_USED_PRECISION = timedelta(minutes=1)
MAX_TOKEN_NAME_LENGTH = 200

MIN_PASSWORD_LENGTH = 8


def _check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"Password must be at least {MIN_PASSWORD_LENGTH} characters.")


def _hash_password(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def check_new_password(password: str) -> None:
    """ValidationError unless `password` may be a user's password."""
    _check_new_password(password)


def hash_password(password: str) -> str:
    return _hash_password(password)


def create_user(
    email: str, password: str, *, is_admin: bool = False, role: Role | None = None, name: str = ""
) -> User:
    """A new user; an admin is an owner, anyone else an editor unless `role` says otherwise."""
    email = normalize_email(email)
    _check_new_password(password)
    if db.session.scalar(select(User).where(User.email == email)) is not None:
        raise ConflictError(f"A user with email {email} already exists.")
    role = role or (Role.OWNER if is_admin else Role.EDITOR)
    user = User(
        email=email, name=name, password_hash=_hash_password(password),
        is_admin=role is Role.OWNER, role=role.value,
    )
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
    # Checked after the password, so a deactivated account answers like a wrong password, as slowly.
    if not user.is_active:
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


RESET_SALT = "mailapp-password-reset"


def _reset_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=RESET_SALT)


def _password_fingerprint(user: User) -> str:
    # Binds the link to the password it replaces: once that changes, the link is dead.
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:32]


def password_reset_token(user: User) -> str:
    return _reset_serializer().dumps({"user": user.id, "password": _password_fingerprint(user)})


def user_for_reset_token(token: str) -> User:
    """The active user a reset link is for; InvalidLinkError when forged, expired or already used."""
    max_age = int(float(current_app.config["PASSWORD_RESET_TTL_MINUTES"]) * 60)
    try:
        data = _reset_serializer().loads(token, max_age=max_age)
    except BadSignature:
        raise InvalidLinkError("This reset link is not valid or has expired. Ask for a new one.") from None
    user = db.session.get(User, data.get("user")) if isinstance(data, dict) else None
    if user is None or not user.is_active or not secrets.compare_digest(
        str(data.get("password")), _password_fingerprint(user)
    ):
        raise InvalidLinkError("This reset link has been used or is no longer valid. Ask for a new one.")
    return user


def reset_password(token: str, new_password: str) -> User:
    """A new password from a reset link; every session of the user ends. API tokens stay: a forgotten
    password is not a stolen one, and deactivation or the tokens page revokes them when it is."""
    user = user_for_reset_token(token)
    _check_new_password(new_password)
    user.password_hash = _hash_password(new_password)
    end_all_sessions(user)
    db.session.flush()
    return user


def active_user_by_email(email: str) -> User | None:
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    return user if user is not None and user.is_active else None


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


def create_api_token(
    email: str, *, name: str = "", role: Role | None = None, expires_at: datetime | None = None
) -> str:
    """A new token for the user (the CLI's way in): the user's role unless a lower one is given."""
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFoundError(f"No user with email {email}.")
    return issue_api_token(user, name=name, role=role or user.user_role, expires_at=expires_at)[0]


def issue_api_token(
    user: User, *, name: str, role: Role, expires_at: datetime | None = None
) -> tuple[str, ApiToken]:
    """(the token, shown once, and its row). The role may not be above the user's own."""
    name = name.strip()
    if len(name) > MAX_TOKEN_NAME_LENGTH:
        raise ValidationError(
            f"A token name has at most {MAX_TOKEN_NAME_LENGTH} characters.", [{"field": "name"}]
        )
    if not user.is_active:
        raise ValidationError(f"{user.email} is deactivated.", [{"field": "email"}])
    if not user.user_role.at_least(role):
        raise ValidationError(
            f"A token cannot have a higher role ({role}) than its user ({user.role}).", [{"field": "role"}]
        )
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationError("The expiry must be in the future.", [{"field": "expires_at"}])
    token = "mk_" + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id, name=name, token_hash=hash_token(token), role=role.value, expires_at=expires_at
    )
    db.session.add(row)
    db.session.flush()
    return token, row


def live_api_token(token: str) -> ApiToken | None:
    """The token's row if it may be used now: not revoked, not expired, its user active."""
    api_token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if api_token is None or api_token.revoked_at is not None:
        return None
    now = utcnow()
    if api_token.expires_at is not None and api_token.expires_at <= now:
        return None
    if not api_token.user.is_active:
        return None
    return api_token


def effective_token_role(api_token: ApiToken) -> Role:
    """A token may do what its role allows, but never more than its user may now: a demoted owner's
    tokens are demoted with them."""
    return Role.lowest(api_token.token_role, api_token.user.user_role)


def note_token_use(api_token: ApiToken) -> bool:
    """Stamp last_used_at when it is older than LAST_USED_PRECISION; whether it wrote (the caller
    commits). The conditional UPDATE keeps concurrent requests from each writing it."""
    now = utcnow()
    if api_token.last_used_at is not None and api_token.last_used_at > now - LAST_USED_PRECISION:
        return False
    result = db.session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == api_token.id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - LAST_USED_PRECISION),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    api_token.last_used_at = now
    return bool(result.rowcount)


def revoke_token(user: User, token_id: int) -> ApiToken:
    """Revoke one of the user's tokens (owners: anyone's)."""
    api_token = db.session.get(ApiToken, token_id)
    if api_token is None or (api_token.user_id != user.id and user.user_role is not Role.OWNER):
        raise NotFoundError(f"Token {token_id} not found.")
    if api_token.revoked_at is None:
        api_token.revoked_at = utcnow()
    db.session.flush()
    return api_token


def revoke_all_tokens(user: User) -> None:
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
