"""The open buffer's group commit (mailapp/tracking/buffer.py, `GroupCommit`) against the real Redis:
concurrent opens each land in the stream exactly once, requests that arrive while a batch is in flight
share the next round trip, a request answers only after Redis acknowledged its open, and a write that
fails fails every open of its batch (the pixel then writes them to the database, as it always has).

To hold Redis's replies back, or to cut the connection, the writer talks to Redis through a small TCP
relay: the fault and the timing are injected there, Redis itself is real."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from mailapp.tracking import buffer
from tests.tracking_fixtures import empty_open_buffer

__all__ = ["empty_open_buffer"]


class RedisRelay:
    """A loopback TCP relay in front of Redis. Requests always pass; replies pass only while
    `replies_flow` is set. With `cut_next_request` set, the next request bytes a connection sends are
    dropped and the connection is closed instead, as a Redis that died would."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.replies_flow = threading.Event()
        self.replies_flow.set()
        self.cut_next_request = threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            self._spawn(self._requests, client, upstream)
            self._spawn(self._replies, upstream, client)

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        while chunk := _receive(client):
            if self.cut_next_request.is_set():
                self.cut_next_request.clear()
                break
            upstream.sendall(chunk)
        for sock in (client, upstream):
            _shut(sock)

    def _replies(self, upstream: socket.socket, client: socket.socket) -> None:
        while chunk := _receive(upstream):
            self.replies_flow.wait()
            try:
                client.sendall(chunk)
            except OSError:
                break

    def close(self) -> None:
        self.replies_flow.set()
        _shut(self.listener)  # wakes the blocked accept()
        self.listener.close()
        for sock in self.sockets:
            _shut(sock)
        for thread in self.threads:
            thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def _receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already shut
        sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def redis_url(app) -> str:
    if not app.config["REDIS_URL"]:
        pytest.skip("the open buffer needs Redis: covered by the PostgreSQL + Redis pass")
    return app.config["REDIS_URL"]


@pytest.fixture
def stream(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def relay(redis_url: str) -> Iterator[RedisRelay]:
    relay = RedisRelay(redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"])
    yield relay
    relay.close()


@pytest.fixture
def relayed_writer(relay: RedisRelay, redis_url: str) -> Iterator[buffer.GroupCommit]:
    db = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs.get("db", 0)
    writer = buffer.GroupCommit(buffer.StreamAppender(redis.Redis.from_url(f"redis://127.0.0.1:{relay.port}/{db}")))
    yield writer
    writer.close()


def stream_payloads(stream: redis.Redis) -> list[bytes]:
    return [fields[b"e"] for _, fields in stream.xrange(buffer.STREAM_KEY)]


def append_in_threads(
    writer: buffer.GroupCommit, payloads: list[bytes]
) -> tuple[list[threading.Thread], dict]:
    """One thread per payload, each appending it; the returned dict maps payload -> None or the error,
    filled as the appends return."""
    outcomes: dict[bytes, BaseException | None] = {}

    def append(payload: bytes) -> None:
        try:
            writer.append(payload)
            outcomes[payload] = None
        except buffer.BufferUnavailable as error:
            outcomes[payload] = error

    threads = [threading.Thread(target=append, args=(payload,)) for payload in payloads]
    for thread in threads:
        thread.start()
    return threads, outcomes


def wait_for(predicate, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "an append never returned"


def test_concurrent_opens_are_each_in_the_stream_once_and_share_round_trips(redis_url, stream):
    writer = buffer.GroupCommit(buffer.StreamAppender(redis.Redis.from_url(redis_url)))
    per_thread, threads_count = 40, 16
    failures: list[BaseException] = []

    def request_thread(n: int) -> None:
        for k in range(per_thread):
            try:
                writer.append(b"open %d-%d" % (n, k))
            except BaseException as error:  # reported by the assertion below
                failures.append(error)

    threads = [threading.Thread(target=request_thread, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    join(threads)
    writer.close()
    assert failures == []
    expected = Counter(b"open %d-%d" % (n, k) for n in range(threads_count) for k in range(per_thread))
    assert Counter(stream_payloads(stream)) == expected  # every open once: none lost, none doubled
    assert writer.appended == len(expected)
    assert writer.batches < writer.appended / 2, (writer.batches, writer.appended)


def test_a_request_answers_only_after_redis_acknowledged_its_batch(relay, relayed_writer, stream):
    relayed_writer.append(b"connect")  # the connection (and its SELECT) set up while replies flow
    relay.replies_flow.clear()
    first, first_outcome = append_in_threads(relayed_writer, [b"first"])
    wait_for(lambda: stream.xlen(buffer.STREAM_KEY) == 2, "Redis to take the first open")
    time.sleep(0.05)
    assert first_outcome == {}  # in the stream, but not acknowledged yet: the request still waits
    # Opens that arrive while a batch is in flight queue up for the next round trip.
    later_payloads = [b"later %d" % n for n in range(20)]
    later, later_outcomes = append_in_threads(relayed_writer, later_payloads)
    wait_for(lambda: len(relayed_writer.queue) == 20, "the later opens to queue")
    assert stream.xlen(buffer.STREAM_KEY) == 2  # not written before the first batch is acknowledged
    assert later_outcomes == {}
    relay.replies_flow.set()
    join(first + later)
    assert first_outcome == {b"first": None}
    assert later_outcomes == dict.fromkeys(later_payloads)
    assert (relayed_writer.batches, relayed_writer.appended) == (3, 22)  # connect, first, the 20 together
    assert Counter(stream_payloads(stream)) == Counter([b"connect", b"first", *later_payloads])


def test_a_failed_write_fails_every_open_of_its_batch(relay, relayed_writer, stream):
    relayed_writer.append(b"connect")
    relay.replies_flow.clear()
    first, first_outcome = append_in_threads(relayed_writer, [b"first"])
    wait_for(lambda: stream.xlen(buffer.STREAM_KEY) == 2, "Redis to take the first open")
    doomed_payloads = [b"doomed %d" % n for n in range(10)]
    doomed, doomed_outcomes = append_in_threads(relayed_writer, doomed_payloads)
    wait_for(lambda: len(relayed_writer.queue) == 10, "the next batch to queue")
    relay.cut_next_request.set()  # the next batch never reaches Redis: its connection dies
    relay.replies_flow.set()
    join(first + doomed)
    assert first_outcome == {b"first": None}
    assert set(doomed_outcomes) == set(doomed_payloads)
    assert all(isinstance(error, buffer.BufferUnavailable) for error in doomed_outcomes.values())
    assert Counter(stream_payloads(stream)) == Counter([b"connect", b"first"])
    # The next open opens a new connection and is written.
    relayed_writer.append(b"after")
    assert stream_payloads(stream)[-1] == b"after"


def test_replies_are_read_in_step_and_an_error_reply_fails_only_its_own_open():
    """Redis answers a refused XADD with an -error and carries on with the pipeline; replies may arrive
    split anywhere. (A socket pair stands in for Redis here: Redis refuses no XADD of this stream.)"""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        replies = b"$15\r\n1700000000000-0\r\n-WRONGTYPE no stream\r\n+OK\r\n$15\r\n1700000000000-1\r\n"
        reader = buffer._ReplyReader(ours)
        for cut in (3, 20, 21, 50):
            theirs.sendall(replies[:cut])
            replies = replies[cut:]
        theirs.sendall(replies)
        first, refused, simple, last = (reader.next() for _ in range(4))
        assert (first, simple, last) == (b"1700000000000-0", b"OK", b"1700000000000-1")
        assert isinstance(refused, buffer.BufferUnavailable)
        assert str(refused) == "WRONGTYPE no stream"
        theirs.close()
        with pytest.raises(buffer.BufferUnavailable, match="closed"):
            reader.next()
