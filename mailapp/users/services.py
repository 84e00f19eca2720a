"""The team's users: roles, deactivation, invites (signed, expiring, single-use links), and the team
settings owners change from the dashboard (whether two-factor sign-in is required)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import func, select

from mailapp.addresses import normalize_email
from mailapp.audit.services import record
from mailapp.auth.services import create_user, revoke_all_tokens
from mailapp.auth.sessions import end_all_sessions
from mailapp.errors import ConflictError, InvalidLinkError, InvalidStateError, NotFoundError, ValidationError
from mailapp.extensions import db
from mailapp.models import Invite, Role, TeamSetting, User, utcnow

REQUIRE_TWO_FACTOR = "require_two_factor"
INVITE_SALT = "mailapp-invite"
MAX_NAME_LENGTH = 200


# --- team settings ---------------------------------------------------------------------------------


def get_setting(name: str, default: Any = None) -> Any:
    row = db.session.get(TeamSetting, name)
    return default if row is None else json.loads(row.value)


def set_setting(name: str, value: Any) -> None:
    row = db.session.get(TeamSetting, name)
    if row is None:
        db.session.add(TeamSetting(name=name, value=json.dumps(value)))
    else:
        row.value = json.dumps(value)
    db.session.flush()


def two_factor_required() -> bool:
    return bool(get_setting(REQUIRE_TWO_FACTOR, False))


def require_two_factor(required: bool) -> None:
    set_setting(REQUIRE_TWO_FACTOR, bool(required))
    record("team.require_two_factor", summary="required" if required else "not required")


# --- users -----------------------------------------------------------------------------------------


def parse_role(value: str | None, field: str = "role") -> Role:
    try:
        return Role(str(value or "").strip().lower())
    except ValueError:
        choices = ", ".join(role.value for role in Role)
        raise ValidationError(f"The role must be one of {choices}.", [{"field": field}]) from None


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"User {user_id} not found.")
    return user


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.email)))


def _other_active_owners(user: User) -> int:
    return db.session.scalar(
        select(func.count()).select_from(User).where(
            User.role == Role.OWNER.value, User.deactivated_at.is_(None), User.id != user.id
        )
    ) or 0


def change_role(user_id: int, role: Role, *, can_export: bool | None = None) -> User:
    """Set a user's role (and export grant). The last active owner stays an owner, so someone can
    always manage the team."""
    user = get_user(user_id)
    if user.user_role is Role.OWNER and role is not Role.OWNER and not _other_active_owners(user):
        raise InvalidStateError(f"{user.email} is the last owner: make someone else an owner first.")
    before = user.role
    user.role = role.value
    user.is_admin = role is Role.OWNER
    if can_export is not None:
        user.can_export = can_export
    db.session.flush()
    record("user.role_change", user, f"{user.email}: {before} -> {role}, export {user.can_export}")
    return user


def deactivate(user_id: int) -> User:
    """No more sign-ins, sessions or tokens for the user. The last owner cannot be deactivated."""
    user = get_user(user_id)
    if user.user_role is Role.OWNER and not _other_active_owners(user):
        raise InvalidStateError(f"{user.email} is the last owner and cannot be deactivated.")
    if user.deactivated_at is None:
        user.deactivated_at = utcnow()
        end_all_sessions(user)
        revoke_all_tokens(user)
        db.session.flush()
        record("user.deactivate", user, f"{user.email} deactivated; sessions ended, tokens revoked")
    return user


def reactivate(user_id: int) -> User:
    user = get_user(user_id)
    if user.deactivated_at is not None:
        user.deactivated_at = None
        db.session.flush()
        record("user.reactivate", user, f"{user.email} reactivated")
    return user


# --- invites ---------------------------------------------------------------------------------------


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=INVITE_SALT)


def invite_ttl() -> timedelta:
    return timedelta(hours=float(current_app.config["INVITE_TTL_HOURS"]))


def create_invite(email: str, role: Role, invited_by: User | None) -> tuple[Invite, str]:
    """(the invite, its token for the link). The address may not belong to a user already."""
    email = normalize_email(email)
    if db.session.scalar(select(User).where(User.email == email)) is not None:
        raise ConflictError(f"A user with email {email} already exists.", [{"field": "email"}])
    now = utcnow()
    invite = Invite(
        email=email, role=role.value, invited_by_id=invited_by.id if invited_by else None,
        created_at=now, expires_at=now + invite_ttl(),
    )
    db.session.add(invite)
    db.session.flush()
    record("user.invite", invite, f"{email} invited as {role}")
    return invite, invite_token(invite)


def invite_token(invite: Invite) -> str:
    return _serializer().dumps({"invite": invite.id, "email": invite.email})


def open_invite(token: str) -> Invite:
    """The pending invite a link names; InvalidLinkError when forged, expired or used."""
    try:
        data = _serializer().loads(token, max_age=int(invite_ttl().total_seconds()))
    except BadSignature:
        raise InvalidLinkError("This invite link is not valid or has expired. Ask for a new one.") from None
    invite = db.session.get(Invite, data.get("invite")) if isinstance(data, dict) else None
    if invite is None or invite.email != data.get("email") or invite.accepted_at is not None:
        raise InvalidLinkError("This invite link has been used or withdrawn. Ask for a new one.")
    if invite.expires_at <= utcnow():
        raise InvalidLinkError("This invite link has expired. Ask for a new one.")
    return invite


def accept_invite(token: str, name: str, password: str) -> User:
    """The invitee's account, with the invite's role; the invite is used up."""
    invite = open_invite(token)
    name = " ".join(name.split())
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"A name has at most {MAX_NAME_LENGTH} characters.", [{"field": "name"}])
    # Only one of two concurrent acceptances may win: the row lock (PostgreSQL) or the single
    # writer (SQLite), then the check again.
    db.session.refresh(invite, with_for_update=True)
    if invite.accepted_at is not None:
        raise InvalidLinkError("This invite link has been used. Sign in instead.")
    user = create_user(invite.email, password, role=Role(invite.role), name=name)
    invite.accepted_at = utcnow()
    db.session.flush()
    record("user.invite_accept", user, f"{user.email} joined as {user.role}", actor=user)
    return user


def pending_invites() -> list[Invite]:
    now = utcnow()
    return list(
        db.session.scalars(
            select(Invite).where(Invite.accepted_at.is_(None), Invite.expires_at > now).order_by(Invite.id)
        )
    )


def withdraw_invite(invite_id: int) -> None:
    invite = db.session.get(Invite, invite_id)
    if invite is None or invite.accepted_at is not None:
        raise NotFoundError(f"Invite {invite_id} not found.")
    record("user.invite_withdraw", invite, f"invite for {invite.email} withdrawn")
    db.session.delete(invite)
    db.session.flush()
