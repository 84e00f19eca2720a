"""Writing and searching the audit log. `record(action, target=..., summary=...)` adds an entry to the
caller's transaction, so an action that rolls back leaves no entry, and one that commits always has
one. The actor is the request's: the web layer names it (act_as) when it lets a request in; a CLI
command or a task has none and records as "system"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import g, has_request_context, request
from sqlalchemy import Select, select

from mailapp.errors import ValidationError
from mailapp.extensions import db
from mailapp.models import AuditEntry, User
from mailapp.tracking.machine import truncate_ip

MAX_SUMMARY = 1000


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    email: str
    token_name: str = ""


def act_as(user: User, *, token_name: str = "") -> None:
    """Name who this request acts for: every record() in it is theirs."""
    g.audit_actor = Actor(user.id, user.email, token_name)


def _current_actor() -> Actor | None:
    return g.get("audit_actor") if has_request_context() else None


def _target_of(target: Any) -> tuple[str, str]:
    if target is None:
        return "", ""
    if isinstance(target, tuple):
        kind, ident = target
        return str(kind), "" if ident is None else str(ident)
    return type(target).__name__, str(getattr(target, "id", "") or "")


def record(action: str, target: Any = None, summary: str = "", *, actor: User | None = None) -> AuditEntry:
    """Add one entry: `action` like "campaign.send"; `target` a model row or a (type, id) pair;
    `summary` a line for people. `actor` when the request has none yet (a sign-in)."""
    who = Actor(actor.id, actor.email) if actor is not None else _current_actor()
    target_type, target_id = _target_of(target)
    entry = AuditEntry(
        user_id=who.user_id if who else None,
        user_email=who.email if who else "",
        token_name=who.token_name if who else "",
        action=action[:64],
        target_type=target_type[:64],
        target_id=target_id[:64],
        summary=summary[:MAX_SUMMARY],
        ip=truncate_ip(request.remote_addr) if has_request_context() else "",
    )
    db.session.add(entry)
    return entry


def record_read(action: str, target: Any = None, summary: str = "") -> None:
    """Record a read worth knowing of (an export of personal data) and commit it at once: the request
    itself writes nothing to commit it with."""
    record(action, target, summary)
    db.session.commit()


def parse_time(text: str | None, field: str, *, end: bool = False) -> datetime | None:
    """A filter bound: a day (YYYY-MM-DD, UTC; as an end, the whole day is included) or an ISO 8601
    time with an offset. None when blank; ValidationError naming the field otherwise."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValidationError(
            f"{field} must be a day (2026-12-03) or a time with an offset (2026-12-03T18:00:00+00:00).",
            [{"field": field}],
        )
    return moment


def search(
    *, user: str = "", action: str = "", since: datetime | None = None, until: datetime | None = None
) -> Select:
    """Entries, newest first: by user (part of the email), action (exact, or a prefix ending in "."),
    and time range [since, until)."""
    statement = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if user:
        pattern = user.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(AuditEntry.user_email.like(f"%{pattern}%", escape="\\"))
    if action:
        if action.endswith("."):
            statement = statement.where(AuditEntry.action.startswith(action, autoescape=True))
        else:
            statement = statement.where(AuditEntry.action == action)
    if since is not None:
        statement = statement.where(AuditEntry.at >= since)
    if until is not None:
        statement = statement.where(AuditEntry.at < until)
    return statement


def serialize(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "user_id": entry.user_id,
        "user_email": entry.user_email or None,
        "token_name": entry.token_name or None,
        "action": entry.action,
        "target_type": entry.target_type or None,
        "target_id": entry.target_id or None,
        "summary": entry.summary,
        "ip": entry.ip or None,
    }
