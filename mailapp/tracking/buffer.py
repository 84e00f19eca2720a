"""The open buffer: with Redis configured, the pixel route appends each verified open to a Redis stream
(one XADD, no database work) and `flush_open_buffer` moves the stream into the database in bulk.

No open is lost: entries leave the stream only after the transaction that inserted them has committed.
A flush that dies between its commit and the XDEL replays the same entries next time; each event row
keeps its stream entry id in the unique `buffer_key` column, so a replay inserts and counts nothing
twice."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import cache

import redis
from flask import current_app

STREAM_KEY = "mailapp:tracking:opens"
FLUSH_LOCK_KEY = "mailapp:tracking:opens:flush-lock"
FLUSH_BATCH = 5000

log = logging.getLogger(__name__)


@cache
def _client(url: str) -> redis.Redis:
    # One connection pool per process; redis-py replaces it after a fork (gunicorn workers).
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def redis_client() -> redis.Redis | None:
    """The Redis connection when REDIS_URL is set; None on the embedded default."""
    url = current_app.config.get("REDIS_URL") or ""
    return _client(url) if url else None


def push_open(client: redis.Redis, delivery_id: int, at: datetime, user_agent: str, ip: str) -> None:
    """Append one open to the stream. The IP is already truncated: a full address never lands anywhere."""
    client.xadd(
        STREAM_KEY,
        {"d": delivery_id, "t": f"{at.timestamp():.6f}", "u": user_agent[:500], "i": ip},
    )


def parse_entry(entry_id: bytes, fields: dict[bytes, bytes]) -> dict | None:
    """A stream entry as the keyword arguments of an open, or None for an entry that cannot be read."""
    try:
        return {
            "delivery_id": int(fields[b"d"]),
            "at": datetime.fromtimestamp(float(fields[b"t"]), UTC),
            "user_agent": fields.get(b"u", b"").decode("utf-8", "replace"),
            "ip": fields.get(b"i", b"").decode("ascii", "replace"),
            "buffer_key": entry_id.decode("ascii"),
        }
    except (KeyError, ValueError, OverflowError):
        return None


def pending_count(client: redis.Redis) -> int:
    return int(client.xlen(STREAM_KEY))
