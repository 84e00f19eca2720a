"""The open buffer: with Redis configured, the pixel (its WSGI fast path, or the Flask route for the
requests the fast path leaves to Flask) appends each verified open to a Redis stream (one XADD, no
database work) and `flush_open_buffer` moves the stream into the database in bulk.

No open is lost:
- the pixel answers only after Redis has acknowledged the XADD (if Redis fails, the open is written to
  the database instead);
- entries leave the stream only after the transaction that inserted them has committed. A flush that
  dies between its commit and the XDEL replays the same entries next time; each event row keeps its
  stream entry id in the unique `buffer_key` column, so a replay inserts and counts nothing twice.

The XADDs go through `StreamAppender`, one plain connection per process that speaks the one RESP
command it needs: redis-py's general path (pool checkout, retries, reply parsing) costs several times
the CPU of the rest of the pixel request, and the pixel's budget is set against a bare GIF route.

Group commit (`GroupCommit`): the requests of a process share the round trip to Redis. A request that
finds no write in flight becomes the writer: it sends every open queued at that moment as one
pipelined batch of XADDs, reads the batch's replies and wakes the requests of the batch. Requests that
arrive meanwhile queue up; the first of them writes the next batch when the current one is
acknowledged. Each request still answers only after Redis has acknowledged its own XADD (or says it
could not, and the caller writes the open to the database as before). The writer is a request thread,
not a thread of its own: with no concurrency a request writes its open at once, as it always did, and
nothing has to be started again after gunicorn forks its workers."""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import redis
from flask import current_app

STREAM_KEY = "mailapp:tracking:opens"
FLUSH_LOCK_KEY = "mailapp:tracking:opens:flush-lock"
FLUSH_BATCH = 5000
# The most opens one pipelined write carries: bounds the writer's buffers whatever the thread count.
MAX_GROUP = 512

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
    """XADD STREAM_KEY * e <payload>, one or many at once, on a plain TCP connection of one process.
    Not thread-safe: `GroupCommit` lets one thread at a time use it."""

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
        self.replies: _ReplyReader | None = None
        self.command_head = b"*5\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n$1\r\ne\r\n" % (
            len(STREAM_KEY),
            STREAM_KEY.encode(),
        )

    def _connect(self) -> tuple[socket.socket, _ReplyReader]:
        sock = socket.create_connection((self.host, self.port), timeout=2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(5)
        replies = _ReplyReader(sock)
        try:
            if self.password:
                auth = [self.username.encode()] if self.username else []
                sock.sendall(_resp(b"AUTH", *auth, str(self.password).encode()))
                _raise_for(replies.next())
            if self.db:
                sock.sendall(_resp(b"SELECT", str(self.db).encode()))
                _raise_for(replies.next())
        except BaseException:
            sock.close()
            raise
        return sock, replies

    def append(self, payload: bytes) -> None:
        _raise_for(self.append_many([payload])[0])

    def append_many(self, payloads: list[bytes]) -> list[BufferUnavailable | None]:
        """XADD every payload in one pipelined round trip. Returns, in order, None for each entry Redis
        acknowledged and the error for each it did not: an entry whose reply never came counts as not
        acknowledged (it may still be in the stream, as with a single XADD whose reply was lost)."""
        if not self.plain_tcp:
            return self._append_through_redis_py(payloads)
        outcomes: list[BufferUnavailable | None] = []
        try:
            if self.sock is None or self.replies is None:
                self.sock, self.replies = self._connect()
            head = self.command_head
            commands = [b"%s$%d\r\n%s\r\n" % (head, len(payload), payload) for payload in payloads]
            self.sock.sendall(b"".join(commands))
            for _ in payloads:
                reply = self.replies.next()
                outcomes.append(reply if isinstance(reply, BufferUnavailable) else None)
        except (OSError, ValueError, BufferUnavailable) as error:
            self.close()
            failure = BufferUnavailable(str(error) or type(error).__name__)
            outcomes += [failure] * (len(payloads) - len(outcomes))
        return outcomes

    def _append_through_redis_py(self, payloads: list[bytes]) -> list[BufferUnavailable | None]:
        pipeline = self.client.pipeline(transaction=False)
        for payload in payloads:
            pipeline.xadd(STREAM_KEY, {"e": payload})
        try:
            results = pipeline.execute(raise_on_error=False)
        except redis.RedisError as error:
            return [BufferUnavailable(str(error))] * len(payloads)
        return [BufferUnavailable(str(found)) if isinstance(found, Exception) else None for found in results]

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.replies = None


def _raise_for(reply: bytes | BufferUnavailable | None) -> None:
    if isinstance(reply, BufferUnavailable):
        raise reply


class _ReplyReader:
    """RESP replies read one after another from a socket: +simple, :integer and $bulk come back as
    bytes, an -error reply as a BufferUnavailable (the connection stays in step); a closed connection
    or a reply of another kind raises BufferUnavailable."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = bytearray()

    def next(self) -> bytes | BufferUnavailable:
        while True:
            line_end = self.data.find(b"\r\n")
            if line_end >= 0:
                kind, head = self.data[:1], bytes(self.data[1:line_end])
                if kind in (b"+", b":", b"-"):
                    del self.data[: line_end + 2]
                    return BufferUnavailable(head.decode("utf-8", "replace")) if kind == b"-" else head
                if kind != b"$":
                    raise BufferUnavailable(f"unexpected reply from Redis: {bytes(self.data[:40])!r}")
                end = line_end + 2 + int(head)
                if len(self.data) >= end + 2:
                    value = bytes(self.data[line_end + 2 : end])
                    del self.data[: end + 2]
                    return value
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BufferUnavailable("Redis closed the connection")
            self.data += chunk


@dataclass(eq=False)
class _QueuedOpen:
    payload: bytes
    # Held until the writer releases it; made only for a request that waits (a bare lock is several
    # times cheaper than an Event, and the writer of a batch waits on nothing).
    wake: threading.Lock | None = None
    # Set before `wake` is released when the batch is written: None once Redis acknowledged the entry.
    error: BufferUnavailable | None = None
    # Set before `wake` is released when this request is to write the next batch instead.
    writes_next: bool = False

    def wait(self) -> None:
        if self.wake is not None:
            self.wake.acquire()

    def release(self) -> None:
        if self.wake is not None:
            self.wake.release()


class GroupCommit:
    """The process's appends to the open stream, grouped: see the module's docstring. `batches` and
    `appended` count what was written, for tests and benchmarks to see the grouping."""

    def __init__(self, connection: StreamAppender) -> None:
        self.connection = connection
        self.queue: list[_QueuedOpen] = []
        self.writing = False  # a request is writing a batch; the queued ones wait for it
        self.lock = threading.Lock()
        self.io = threading.Lock()  # the connection: the writer's, or close()'s
        self.batches = 0
        self.appended = 0

    def append(self, payload: bytes) -> None:
        """Return once Redis has acknowledged this open's XADD; raise BufferUnavailable if it did not."""
        queued = _QueuedOpen(payload)
        with self.lock:
            writes_now = not self.writing
            if not writes_now:
                queued.wake = threading.Lock()
                queued.wake.acquire()
            self.queue.append(queued)
            self.writing = True
        if not writes_now:
            # The current writer wakes this request with its outcome, or to write the next batch. The
            # wait ends: every step of a write is bounded by the connection's timeouts.
            queued.wait()
            if not queued.writes_next:
                _raise_for(queued.error)
                return
        # This request heads the queue: the batch it writes holds its own open.
        self._write_next_batch()
        _raise_for(queued.error)

    def _write_next_batch(self) -> None:
        batch: list[_QueuedOpen] = []
        outcomes: list[BufferUnavailable | None] = []
        try:
            with self.lock:
                batch, self.queue = self.queue[:MAX_GROUP], self.queue[MAX_GROUP:]
            with self.io:
                outcomes = self.connection.append_many([queued.payload for queued in batch])
            self.batches += 1
            self.appended += len(batch)
        finally:
            with self.lock:
                successor = self.queue[0] if self.queue else None
                self.writing = successor is not None
            unfinished = BufferUnavailable("the open was not written")  # only if append_many raised
            outcomes += [unfinished] * (len(batch) - len(outcomes))
            for queued, outcome in zip(batch, outcomes, strict=True):
                queued.error = outcome
                queued.release()
            if successor is not None:
                successor.writes_next = True
                successor.release()

    def close(self) -> None:
        """Close the connection (the next write opens another)."""
        with self.io:
            self.connection.close()


_writers: dict[int, GroupCommit] = {}
_writers_lock = threading.Lock()


def _forget_writers_after_fork() -> None:
    # A forked child (a gunicorn worker) must not share its parent's socket, and a lock another thread
    # held at the fork would never be released in the child.
    global _writers_lock
    _writers.clear()
    _writers_lock = threading.Lock()


def _close_writers() -> None:
    for writer in list(_writers.values()):
        writer.close()


os.register_at_fork(after_in_child=_forget_writers_after_fork)
atexit.register(_close_writers)


def appender(client: redis.Redis) -> GroupCommit:
    """The process's group-commit writer for this client, made on first use (after a fork, in the
    child: see `_forget_writers_after_fork`)."""
    writer = _writers.get(id(client))
    if writer is None or writer.connection.client is not client:
        with _writers_lock:
            writer = _writers.get(id(client))
            if writer is None or writer.connection.client is not client:
                writer = _writers[id(client)] = GroupCommit(StreamAppender(client))
    return writer


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
