"""Segments: create, edit and delete them, count and page the subscribers a rule tree matches, and
"resend to non-openers" (a draft copy of a sent campaign aimed at a segment of those who did not open
it). The rules themselves are mailapp.segment_rules.

Services flush; the view or task that owns the transaction commits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg2.errors
from flask import current_app
from sqlalchemy import and_, func, outerjoin, select
from sqlalchemy.exc import OperationalError

from mailapp.campaigns import lifecycle
from mailapp.campaigns import services as campaign_services
from mailapp.errors import ConflictError, InvalidStateError, NotFoundError, ValidationError, field_problem
from mailapp.extensions import db
from mailapp.models import (
    Campaign,
    CampaignStatus,
    Segment,
    Subscriber,
    SubscriberList,
    SubscriberStatus,
    Suppression,
    campaign_segments,
    utcnow,
)
from mailapp.models.base import iso_or_none
from mailapp.segment_rules import CAMPAIGN_OPS, RuleError, compile_rules, rules_with_paths, validate_rules

NAME_MAX = 200
SEGMENT_FIELDS = ("name", "rules")
MAX_RESEND_DELAY_HOURS = 24 * 365


def dialect_name() -> str:
    return db.session.get_bind().dialect.name


def get_segment(segment_id: int) -> Segment:
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        raise NotFoundError(f"Segment {segment_id} not found.")
    return segment


def checked_rules(tree: Any) -> dict[str, Any]:
    """The tree validated, and every list and campaign it names existing (errors name the rule's path)."""
    rules = validate_rules(tree)
    for path, rule in rules_with_paths(rules):
        if rule["field"] == "list" and db.session.get(SubscriberList, rule["value"]) is None:
            raise RuleError(
                f"{path}.value: no list {rule['value']}.", [field_problem(f"{path}.value", "No such list.")]
            )
        if rule["op"] in CAMPAIGN_OPS and db.session.get(Campaign, rule["value"]) is None:
            raise RuleError(
                f"{path}.value: no campaign {rule['value']}.",
                [field_problem(f"{path}.value", "No such campaign.")],
            )
    return rules


def _checked_name(name: Any, current: Segment | None = None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("A segment needs a name.", [field_problem("name", "Required.")])
    name = name.strip()
    if len(name) > NAME_MAX or "\n" in name or "\r" in name:
        raise ValidationError(
            f"The name must be one line of at most {NAME_MAX} characters.",
            [field_problem("name", "Too long.")],
        )
    taken = db.session.scalar(select(Segment).where(Segment.name == name))
    if taken is not None and taken is not current:
        raise ConflictError(f"A segment named {name!r} exists.", [field_problem("name", "Taken.")])
    return name


def refuse_unknown(data: Mapping[str, Any], known=SEGMENT_FIELDS) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValidationError(
            f"Unknown field(s): {', '.join(unknown)}.",
            [field_problem(name, "Unknown field.") for name in unknown],
        )


def create_segment(data: Mapping[str, Any]) -> Segment:
    refuse_unknown(data)
    if "rules" not in data:
        raise ValidationError("rules: required.", [field_problem("rules", "Required.")])
    segment = Segment(name=_checked_name(data.get("name")), rules=checked_rules(data["rules"]))
    db.session.add(segment)
    db.session.flush()
    return segment


def update_segment(segment: Segment, changes: Mapping[str, Any]) -> Segment:
    refuse_unknown(changes)
    name = _checked_name(changes["name"], segment) if "name" in changes else segment.name
    rules = checked_rules(changes["rules"]) if "rules" in changes else segment.rules
    segment.name, segment.rules = name, rules
    db.session.flush()
    return segment


def campaigns_targeting(segment_id: int) -> list[int]:
    return list(
        db.session.scalars(
            select(campaign_segments.c.campaign_id).where(campaign_segments.c.segment_id == segment_id)
        )
    )


def delete_segment(segment: Segment) -> None:
    """Refused while a campaign targets it: its recipients would change or its history lose a target."""
    users = campaigns_targeting(segment.id)
    if users:
        raise InvalidStateError(
            f"Segment {segment.name!r} is targeted by campaign(s) {', '.join(map(str, users))}; "
            "remove it from them (or delete them) first.",
            [field_problem(None, "In use.", campaign_ids=users)],
        )
    db.session.delete(segment)
    db.session.flush()


def segment_to_dict(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.id,
        "name": segment.name,
        "rules": segment.rules,
        "created_at": iso_or_none(segment.created_at),
        "updated_at": iso_or_none(segment.updated_at),
    }


# --- matching ---------------------------------------------------------------------------------------


def matching(rules: dict[str, Any]):
    """A select of the subscribers a validated tree matches, by id."""
    return select(Subscriber).where(compile_rules(rules, dialect_name())).order_by(Subscriber.id)


@dataclass(frozen=True)
class SegmentCount:
    matching: int
    # Of those, who a campaign sent now would reach: active and not suppressed.
    recipients: int

    def as_dict(self) -> dict[str, int]:
        return {"count": self.matching, "recipients": self.recipients}


def count(rules: dict[str, Any]) -> SegmentCount:
    """Both figures from one pass over the matching subscribers. The suppression list is joined (an
    address has at most one row) rather than probed: a probe inside the FILTER would run once for each
    match, a join is hashed once."""
    suppressed = outerjoin(
        Subscriber.__table__,
        Suppression.__table__,
        and_(Suppression.email == Subscriber.email, Suppression.lifted_at.is_(None)),
    )
    sendable = and_(Subscriber.status == SubscriberStatus.ACTIVE, Suppression.id.is_(None))
    dialect = dialect_name()
    query = (
        select(func.count(), func.count().filter(sendable))
        .select_from(suppressed)
        .where(compile_rules(rules, dialect))
    )
    if dialect != "postgresql":
        total, recipients = db.session.execute(query).one()
        return SegmentCount(total, recipients)
    timeout_ms = current_app.config["SEGMENT_COUNT_TIMEOUT_MS"]
    # Inside a savepoint that is always rolled back (the count writes nothing): that undoes both SET
    # LOCALs, so the rest of the caller's transaction runs with its own settings, and a cancelled
    # count leaves that transaction usable.
    savepoint = db.session.begin_nested()
    try:
        connection = db.session.connection()
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
        connection.exec_driver_sql(f"SET LOCAL work_mem = '{_hash_memory_kb(rules)}kB'")
        total, recipients = connection.execute(query).one()
    except OperationalError as error:
        if not isinstance(error.orig, psycopg2.errors.QueryCanceled):
            raise
        raise SegmentTooSlowError(
            f"Counting this segment took longer than {timeout_ms / 1000:g} s and was stopped. "
            "Rules that look into campaigns or lists inside an 'any' group cost the most: "
            "fewer of them, or narrower ones, count faster.",
            [field_problem("rules", "Too slow to count.")],
        ) from None
    finally:
        savepoint.rollback()
    return SegmentCount(total, recipients)


class SegmentTooSlowError(ValidationError):
    code = "segment_too_slow"


def _hash_memory_kb(rules: dict[str, Any]) -> int:
    """work_mem for a count: SEGMENT_COUNT_MEMORY_MB shared by the rules that look into deliveries or
    lists. Inside an 'any' group PostgreSQL cannot turn such a rule into a join; it either probes an
    index once per subscriber or hashes the campaign's (or list's) ids once, and it hashes only when
    they fit in work_mem (times hash_mem_multiplier). Shared, so that a tree of many such rules stays
    within the budget as a whole."""
    probes = sum(
        1 for _, rule in rules_with_paths(rules) if rule["field"] == "list" or rule["op"] in CAMPAIGN_OPS
    )
    share = current_app.config["SEGMENT_COUNT_MEMORY_MB"] * 1024 // max(probes, 1)
    return max(4 * 1024, min(64 * 1024, share))


# --- resend to non-openers --------------------------------------------------------------------------


def resend_to_non_openers(
    campaign_id: int, *, subject: str | None = None, delay_hours: float | None = None
) -> Campaign:
    """A draft copy of a sent campaign aimed only at a new segment "did not open <campaign>" (those it
    was sent to without a human open; applied when the copy sends, so later openers drop out),
    optionally with a new subject, optionally scheduled delay_hours from now. Commits when scheduling."""
    original = lifecycle.get_campaign(campaign_id)
    if original.status != CampaignStatus.SENT:
        raise InvalidStateError(
            f"Campaign {campaign_id} is {original.status}: only a sent campaign can be resent to non-openers."
        )
    if subject is not None and not isinstance(subject, str):
        raise ValidationError("subject must be a string.", [field_problem("subject", "Not a string.")])
    if delay_hours is not None and (
        isinstance(delay_hours, bool)
        or not isinstance(delay_hours, int | float)
        or not 0 <= delay_hours <= MAX_RESEND_DELAY_HOURS
    ):
        raise ValidationError(
            f"delay_hours must be a number of hours from 0 to {MAX_RESEND_DELAY_HOURS}.",
            [field_problem("delay_hours", "Out of range.")],
        )
    segment = Segment(
        name=_unique_name(f"Did not open: {original.name}"[:NAME_MAX - 12]),
        rules=validate_rules({"all": [{"field": "activity", "op": "not_opened", "value": original.id}]}),
    )
    db.session.add(segment)
    copy = campaign_services.duplicate_campaign(campaign_id)
    copy.name = f"Resend of {original.name}"[:NAME_MAX]
    copy.lists = []
    copy.segments = [segment]
    db.session.flush()
    if subject is not None and subject.strip():
        campaign_services.update_campaign(copy.id, {"subject": subject})
    if delay_hours is not None:
        lifecycle.schedule(copy.id, utcnow() + timedelta(hours=delay_hours))
    return copy


def _unique_name(base: str) -> str:
    name, n = base, 1
    while db.session.scalar(select(Segment.id).where(Segment.name == name)) is not None:
        n += 1
        name = f"{base} ({n})"
    return name
