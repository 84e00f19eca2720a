"""Sign-in throttling per client address and per account, counted across every process of the
installation: in Redis (INCR + EXPIRE) when REDIS_URL is set, else in the database's login_attempts
table (one upsert per count).

Counting is a fixed window: each attempt adds one to the counter of the current window for its
address and for its account, atomically, and is refused when either count is over its limit. Counting
first and checking the result, rather than checking then counting, is what keeps concurrent attempts in
several processes from all slipping through on the same last free slot. The account is the email as
typed, lower-cased, whether or not such a user exists, so a refusal tells nothing about accounts."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from flask import current_app
from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from mailapp.errors import TooManyAttemptsError
from mailapp.extensions import db
from mailapp.models import LoginAttempt

REDIS_KEY_PREFIX = "mailapp:login:"


class AttemptCounter(Protocol):
    def add(self, key_hash: str, window_start: int, window_seconds: int) -> int:
        """Count one attempt for the key in the window starting at `window_start`; the new count."""


class RedisAttemptCounter:
    def __init__(self, url: str) -> None:
        self.client = _redis_client(url)

    def add(self, key_hash: str, window_start: int, window_seconds: int) -> int:
        key = f"{REDIS_KEY_PREFIX}{key_hash}:{window_start}"
        pipeline = self.client.pipeline(transaction=True)
        pipeline.incr(key)
        pipeline.expire(key, window_seconds + 60)
        count, _ = pipeline.execute()
        return int(count)

    def reset(self) -> None:
        for key in self.client.scan_iter(match=f"{REDIS_KEY_PREFIX}*", count=1000):
            self.client.delete(key)


class DatabaseAttemptCounter:
    """Counts in the request's session: the caller commits, and must, before checking the password, so
    that the count stands even when the sign-in fails."""

    def add(self, key_hash: str, window_start: int, window_seconds: int) -> int:
        dialect = db.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(LoginAttempt).values(key_hash=key_hash, window_start=window_start, attempts=1)
        statement = statement.on_conflict_do_update(
            index_elements=[LoginAttempt.key_hash, LoginAttempt.window_start],
            set_={"attempts": LoginAttempt.attempts + 1},
        ).returning(LoginAttempt.attempts)
        count = db.session.scalar(statement)
        # Windows before the previous one are over for every key. Rows another attempt is deleting
        # right now are skipped (PostgreSQL; SQLite has one writer anyway): two deletes taking the
        # same rows in different orders could deadlock, and one of them would fail its sign-in.
        over = (
            select(LoginAttempt.key_hash, LoginAttempt.window_start)
            .where(LoginAttempt.window_start < window_start - window_seconds)
            .with_for_update(skip_locked=True)
        )
        db.session.execute(
            delete(LoginAttempt).where(tuple_(LoginAttempt.key_hash, LoginAttempt.window_start).in_(over))
        )
        return int(count)


@cache
def _redis_client(url: str):  # redis.Redis
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def _key_hash(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


@dataclass(frozen=True)
class LoginThrottle:
    max_per_address: int
    max_per_account: int
    window_seconds: int
    counter: AttemptCounter

    @classmethod
    def for_app(cls) -> LoginThrottle:
        config = current_app.config
        redis_url = config.get("REDIS_URL") or ""
        return cls(
            max_per_address=config["LOGIN_MAX_ATTEMPTS_PER_ADDRESS"],
            max_per_account=config["LOGIN_MAX_ATTEMPTS_PER_ACCOUNT"],
            window_seconds=max(1, config["LOGIN_THROTTLE_WINDOW_SECONDS"]),
            counter=RedisAttemptCounter(redis_url) if redis_url else DatabaseAttemptCounter(),
        )

    def count_attempt(self, address: str, email: str, *, purpose: str = "") -> None:
        """Count a sign-in attempt; TooManyAttemptsError when the address or the account is over its
        limit for this window (the attempt still counts: hammering on does not reopen the door).
        `purpose` keeps separate counts for other doors (two-factor codes, reset requests)."""
        now = time.time()
        window_start = int(now // self.window_seconds) * self.window_seconds
        prefix = f"{purpose}:" if purpose else ""
        by_address = self.counter.add(
            _key_hash(f"{prefix}address", address), window_start, self.window_seconds
        )
        by_account = self.counter.add(
            _key_hash(f"{prefix}account", email.strip().lower()), window_start, self.window_seconds
        )
        if by_address > self.max_per_address or by_account > self.max_per_account:
            retry_after = max(1, math.ceil(window_start + self.window_seconds - now))
            raise TooManyAttemptsError(
                f"Too many sign-in attempts. Try again in {retry_after} seconds.",
                details=[{"retry_after": retry_after}],
            )


def reset_counts() -> None:
    """Forget every count (tests). The database's counts go with its tables."""
    redis_url = current_app.config.get("REDIS_URL") or ""
    if redis_url:
        RedisAttemptCounter(redis_url).reset()
