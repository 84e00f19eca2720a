"""The open buffer: with Redis configured, the pixel (its WSGI fast path, or the Flask route for the
requests the fast path leaves to Flask) appends each verified open to a Redis stream (one XADD, no
database work) and `flush_open_buffer` moves the stream into the database in bulk.

No open is lost:
- the pixel answers only after Redis has acknowledged the XADD (if Redis fails, the open is written to
  the database instead);
- entries leave the stream only after the transaction that inserted them has committed. A flush that
  dies between its commit and the XDEL replays the same entries next time; each event row keeps its
  stream entry id in the unique `buffer_key` column, so a replay inserts and counts nothing twice.

The XADD goes through `StreamAppender`, a connection of each thread's own that speaks the one RESP
command it needs: redis-py's general path (pool checkout, retries, reply parsing) costs several times
the CPU of the rest of the pixel request, and the pixel's budget is set against a bare GIF route."""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, datetime
from functools import cache

import redis
from flask import current_app

STREAM_KEY = "mailapp:tracking:opens"
FLUSH_LOCK_KEY = "mailapp:tracking:opens:flush-lock"
FLUSH_BATCH = 5000

log = logging.getLogger(__name__)


class BufferUnavailable(Exception):
    """Redis could not take the open; the caller writes it to the database instead."""


@cache
def _client(url: str) -> redis.Redis:
    # One connection pool per process; redis-py replaces it after a fork (gunicorn workers).
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def client_for(url: str) -> redis.Redis:
    """The process's Redis client for this URL (the pixel's fast path has no app context to ask)."""
    return _client(url)


def redis_client() -> redis.Redis | None:
    """The Redis connection when REDIS_URL is set; None on the embedded default."""
    url = current_app.config.get("REDIS_URL") or ""
    return _client(url) if url else None


def _resp(*parts: bytes) -> bytes:
    chunks = [b"*%d\r\n" % len(parts)]
    for part in parts:
        chunks += [b"$%d\r\n" % len(part), part, b"\r\n"]
    return b"".join(chunks)


class StreamAppender:
    """XADD STREAM_KEY * e <payload> on a plain TCP connection owned by one thread of one process."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        # TLS (rediss://) and Unix sockets go through redis-py: this plain-TCP path is only the fast one.
        self.plain_tcp = client.connection_pool.connection_class is redis.connection.Connection
        settings = client.connection_pool.connection_kwargs
        self.host = settings.get("host", "127.0.0.1")
        self.port = int(settings.get("port", 6379))
        self.db = int(settings.get("db", 0) or 0)
        self.username = settings.get("username")
        self.password = settings.get("password")
        self.sock: socket.socket | None = None
        self.command_head = b"*5\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n$1\r\ne\r\n" % (
            len(STREAM_KEY),
            STREAM_KEY.encode(),
        )

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(5)
        try:
            if self.password:
                auth = [self.username.encode()] if self.username else []
                sock.sendall(_resp(b"AUTH", *auth, str(self.password).encode()))
                _read_reply(sock)
            if self.db:
                sock.sendall(_resp(b"SELECT", str(self.db).encode()))
                _read_reply(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def append(self, payload: bytes) -> None:
        if not self.plain_tcp:
            try:
                self.client.xadd(STREAM_KEY, {"e": payload})
            except redis.RedisError as error:
                raise BufferUnavailable(str(error)) from error
            return
        try:
            if self.sock is None:
                self.sock = self._connect()
            self.sock.sendall(b"%s$%d\r\n%s\r\n" % (self.command_head, len(payload), payload))
            _read_reply(self.sock)
        except (OSError, ValueError, BufferUnavailable) as error:
            self.close()
            raise BufferUnavailable(str(error)) from error

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _read_reply(sock: socket.socket) -> bytes:
    """One RESP reply: +simple or $bulk; an -error raises BufferUnavailable."""
    data = sock.recv(512)
    while True:
        if not data:
            raise BufferUnavailable("Redis closed the connection")
        line_end = data.find(b"\r\n")
        if line_end >= 0:
            kind = data[:1]
            if kind == b"-":
                raise BufferUnavailable(data[1:line_end].decode("utf-8", "replace"))
            if kind == b"+":
                return data[1:line_end]
            if kind == b"$":
                size = int(data[1:line_end])
                end = line_end + 2 + size
                if len(data) >= end + 2:
                    return data[line_end + 2 : end]
            else:
                raise BufferUnavailable(f"unexpected reply from Redis: {data[:40]!r}")
        data += sock.recv(512)


_appenders = threading.local()


def appender(client: redis.Redis) -> StreamAppender:
    """This thread's appender (a new one after a fork: a socket must not be shared across processes)."""
    current = getattr(_appenders, "value", None)
    if current is None or current[0] != os.getpid() or current[1] is not client:
        if current is not None and current[0] == os.getpid():
            current[2].close()  # the app's Redis changed (tests point it elsewhere)
        current = (os.getpid(), client, StreamAppender(client))
        _appenders.value = current
    return current[2]


def push_open(
    client: redis.Redis, delivery_id: int, at: float, user_agent: str, ip: str, *,
    campaign_id: int | None = None, subscriber_id: int = 0, v1_token: bool = False,
) -> None:
    """Append one open to the stream. The IP is already truncated: a full address never lands anywhere.
    The user agent goes last, so it may hold any character. The first field names the delivery as the
    token did, for the flush to check against the row: `id:campaign:subscriber` for a v2 token, the
    bare id for a v1 token (as every entry written before v2), `id:` for an open with no token."""
    if campaign_id is not None:
        target = f"{delivery_id}:{campaign_id}:{subscriber_id}"
    else:
        target = f"{delivery_id}" if v1_token else f"{delivery_id}:"
    payload = f"{target}|{at:.6f}|{ip}|{user_agent[:500]}".encode("utf-8", "replace")
    appender(client).append(payload)


def parse_entry(entry_id: bytes, fields: dict[bytes, bytes]) -> dict | None:
    """A stream entry as the keyword arguments of an open, or None for an entry that cannot be read."""
    try:
        target, at, ip, user_agent = fields[b"e"].decode("utf-8", "replace").split("|", 3)
        delivery, *binding = target.split(":")
        if binding not in ([], [""]) and len(binding) != 2:
            return None
        bound = len(binding) == 2
        return {
            "delivery_id": int(delivery),
            "at": datetime.fromtimestamp(float(at), UTC),
            "user_agent": user_agent,
            "ip": ip,
            "buffer_key": entry_id.decode("ascii"),
            "campaign_id": int(binding[0]) if bound else None,
            "subscriber_id": int(binding[1]) if bound else 0,
            "v1_token": not binding,
        }
    except (KeyError, ValueError, OverflowError):
        return None


def pending_count(client: redis.Redis) -> int:
    return int(client.xlen(STREAM_KEY))
