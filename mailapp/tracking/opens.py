"""Recording opens: read a pixel token, buffer the open in Redis or write it, and flush the buffer.

The writes follow the steps in counters.py, in one transaction.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, case, or_, select, text, update

from mailapp.db_setup import is_postgres
from mailapp.extensions import db
from mailapp.models import Delivery, OpenEvent
from mailapp.sending import tokens
from mailapp.tracking import buffer, machine
from mailapp.tracking.counters import (
    _bump_campaign_stats,
    _engaged_deliveries,
    _insert_ignoring_conflicts,
    _lock_campaign_stats,
)

log = logging.getLogger(__name__)

# A transparent 1x1 GIF.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def early_seconds() -> float:
    return float(current_app.config.get("TRACKING_EARLY_SECONDS", machine.DEFAULT_EARLY_SECONDS))


@dataclass(frozen=True)
class OpenHit:
    """One open to record. From a pixel request, it carries what the token binds: campaign_id and
    subscriber_id (v2), or v1_token; the open then counts only if the delivery row is the one the
    token was issued for. A hit with neither is one its maker vouches for (tests, tools)."""

    delivery_id: int
    at: datetime
    user_agent: str
    ip: str
    buffer_key: str | None = None
    campaign_id: int | None = None
    subscriber_id: int = 0
    v1_token: bool = False

    def names(self, campaign_id: int, subscriber_id: int | None, accepts_v1_tokens: bool) -> bool:
        if self.campaign_id is None and not self.v1_token:
            return True
        claims = tokens.TokenClaims(self.delivery_id, None, self.campaign_id, self.subscriber_id)
        return claims.names(campaign_id, subscriber_id, accepts_v1_tokens)


def read_open(
    token: str, user_agent: str | None, remote_addr: str | None, *, secret_key: str | None = None
) -> OpenHit | None:
    """The open a pixel request stands for, with the IP already truncated; None for a bad token, which
    records nothing. `secret_key` defaults to the current app's (the fast path has no app context)."""
    try:
        claims = tokens.read_token("open", token, secret_key=secret_key)
    except tokens.BadToken:
        return None
    return OpenHit(
        claims.delivery_id,
        datetime.fromtimestamp(time.time(), UTC),
        (user_agent or "")[:500],
        machine.truncate_ip(remote_addr),
        campaign_id=claims.campaign_id,
        subscriber_id=claims.subscriber_id,
        v1_token=claims.campaign_id is None,
    )


def buffer_open(client: buffer.redis.Redis, hit: OpenHit) -> bool:
    """Append the open to the Redis buffer; False (and logged) when Redis could not take it, so the
    caller writes it to the database instead."""
    try:
        buffer.push_open(
            client, hit.delivery_id, hit.at.timestamp(), hit.user_agent, hit.ip,
            campaign_id=hit.campaign_id, subscriber_id=hit.subscriber_id, v1_token=hit.v1_token,
        )
    except buffer.BufferUnavailable:
        log.exception("open buffer unavailable; writing the open directly")
        return False
    return True


def accept_open(token: str, user_agent: str | None, remote_addr: str | None) -> bool:
    """The pixel route's one call. A bad token records nothing. With Redis the open is appended to the
    buffer; otherwise (or if Redis fails) it is written to the session, and True says the caller must
    commit."""
    hit = read_open(token, user_agent, remote_addr)
    if hit is None:
        return False
    client = buffer.redis_client()
    if client is not None and buffer_open(client, hit):
        return False
    record_opens([hit])
    return True


def record_opens(hits: list[OpenHit]) -> int:
    """Insert open events in bulk and bump the counters by what was inserted. Opens of deliveries that
    no longer exist, or whose row is not the one the token was issued for, are dropped. Returns the
    number of events inserted. The caller commits."""
    if not hits:
        return 0
    deliveries = {
        row.id: row
        for row in db.session.execute(
            select(
                Delivery.id,
                Delivery.campaign_id,
                Delivery.subscriber_id,
                Delivery.accepts_v1_tokens,
                Delivery.sent_at,
                (Delivery.open_count + Delivery.click_count).label("events"),
            ).where(Delivery.id.in_(sorted({hit.delivery_id for hit in hits})))
        )
    }
    window = early_seconds()
    rows: list[dict[str, Any]] = []
    for hit in hits:
        delivery = deliveries.get(hit.delivery_id)
        if delivery is None or not hit.names(
            delivery.campaign_id, delivery.subscriber_id, delivery.accepts_v1_tokens
        ):
            continue
        kind = machine.classify_open(hit.user_agent)
        rows.append(
            {
                "delivery_id": hit.delivery_id,
                "campaign_id": delivery.campaign_id,
                "at": hit.at,
                "user_agent": hit.user_agent[:500],
                "ip": hit.ip,
                "is_machine": kind.is_machine or machine.is_early(hit.at, delivery.sent_at, window),
                "via_proxy": kind.via_proxy,
                "buffer_key": hit.buffer_key,
            }
        )
    if not rows:
        return 0
    _lock_campaign_stats(row["campaign_id"] for row in rows)
    # A recipient with no open or click recorded yet cannot have engaged: only the others are probed.
    engaged = _engaged_deliveries(
        row["delivery_id"] for row in rows if not row["is_machine"] and deliveries[row["delivery_id"]].events
    )
    inserted = _insert_open_rows(rows)
    _apply_open_counters(inserted, engaged)
    return len(inserted)


def _insert_open_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows actually inserted: a replayed buffer entry (same buffer_key) is skipped."""
    table = OpenEvent.__table__
    if all(row["buffer_key"] is None for row in rows):
        db.session.execute(table.insert(), rows)
        return rows
    statement = (
        _insert_ignoring_conflicts(table)
        .on_conflict_do_nothing(index_elements=["buffer_key"])
        .returning(table.c.buffer_key)
    )
    keys = set(db.session.scalars(statement, rows))
    return [row for row in rows if row["buffer_key"] in keys]


def _apply_open_counters(rows: list[dict[str, Any]], engaged_before: set[int]) -> None:
    per_delivery: dict[int, list] = {}
    per_campaign: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    newly_engaged: set[int] = set()
    for row in rows:
        counts = per_delivery.setdefault(row["delivery_id"], [0, row["at"]])
        counts[0] += 1
        counts[1] = min(counts[1], row["at"])
        campaign = per_campaign[row["campaign_id"]]
        campaign["opens"] += 1
        if row["is_machine"]:
            campaign["machine_opens"] += 1
            continue
        if row["via_proxy"] is not None:
            campaign["proxy_opens"] += 1
        if row["delivery_id"] not in engaged_before and row["delivery_id"] not in newly_engaged:
            newly_engaged.add(row["delivery_id"])
            campaign["unique_opens"] += 1
    _bump_delivery_open_counters(per_delivery)
    for campaign_id, increments in sorted(per_campaign.items()):
        _bump_campaign_stats(campaign_id, **increments)


def _bump_delivery_open_counters(per_delivery: dict[int, list]) -> None:
    """open_count += n and first_opened_at = the earliest open, for many deliveries at once."""
    items = sorted(per_delivery.items())
    if is_postgres():
        # One statement for the whole batch: arrays unnested into a join.
        db.session.execute(
            text(
                "UPDATE deliveries AS d SET open_count = d.open_count + v.n, "
                "first_opened_at = LEAST(COALESCE(d.first_opened_at, v.first_at), v.first_at) "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:counts AS integer[]), "
                "CAST(:firsts AS timestamp[])) AS v(id, n, first_at) WHERE d.id = v.id"
            ),
            {
                "ids": [delivery_id for delivery_id, _ in items],
                "counts": [counts[0] for _, counts in items],
                "firsts": [counts[1].replace(tzinfo=None) for _, counts in items],
            },
        )
        return
    table = Delivery.__table__
    first = bindparam("first_at", type_=table.c.first_opened_at.type)
    db.session.execute(
        update(table)
        .where(table.c.id == bindparam("delivery_id"))
        .values(
            open_count=table.c.open_count + bindparam("n"),
            first_opened_at=case(
                (or_(table.c.first_opened_at.is_(None), table.c.first_opened_at > first), first),
                else_=table.c.first_opened_at,
            ),
        ),
        [
            {"delivery_id": delivery_id, "n": counts[0], "first_at": counts[1]}
            for delivery_id, counts in items
        ],
    )


def flush_open_buffer(*, wait: bool = True, max_events: int | None = None) -> int:
    """Move buffered opens into the database, committing batch by batch and removing each batch from
    the stream only after its commit. wait=False gives up at once if another flush holds the lock
    (the beat task); wait=True waits for it (tests, benchmarks, flush on demand). Returns how many
    events were inserted."""
    client = buffer.redis_client()
    if client is None:
        return 0
    lock = client.lock(buffer.FLUSH_LOCK_KEY, timeout=300, blocking_timeout=60 if wait else None)
    if not lock.acquire(blocking=wait):
        return 0
    inserted = 0
    handled = 0
    try:
        while max_events is None or handled < max_events:
            entries = client.xrange(buffer.STREAM_KEY, min="-", max="+", count=buffer.FLUSH_BATCH)
            if not entries:
                break
            hits = [
                OpenHit(**parsed)
                for entry_id, fields in entries
                if (parsed := buffer.parse_entry(entry_id, fields)) is not None
            ]
            try:
                inserted += record_opens(hits)
                db.session.commit()
            except Exception:
                db.session.rollback()
                raise
            client.xdel(buffer.STREAM_KEY, *[entry_id for entry_id, _ in entries])
            handled += len(entries)
    finally:
        try:
            lock.release()
        except buffer.redis.exceptions.LockError:
            log.warning("the open flush outlived its lock; a concurrent flush may have replayed entries")
    return inserted


def buffered_open_count() -> int:
    client = buffer.redis_client()
    return buffer.pending_count(client) if client is not None else 0
