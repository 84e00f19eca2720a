"""The embedded default's broker transport (mailapp/sqla_broker.py), on a real SQLite file through kombu:
its polling interval can be set, a fetched message leaves no row behind, an unacknowledged one comes
back, rows hidden by kombu's own transport are cleared, and the file is in WAL mode. Runs in both
passes: it makes its own broker file whatever CELERY_BROKER_URL says."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection
from kombu.transport import sqlalchemy as kombu_sqlalchemy

from mailapp import sqla_broker


@pytest.fixture
def broker_file(tmp_path: Path) -> Path:
    sqla_broker.register()  # create_app did already; this test does not rely on it
    return tmp_path / "broker.sqlite"


@pytest.fixture
def connection(broker_file: Path) -> Iterator[Connection]:
    with Connection(f"sqla+sqlite:///{broker_file}", transport_options={"polling_interval": 0.05}) as conn:
        yield conn


def _rows(broker_file: Path) -> list[tuple[int, bool]]:
    with sqlite3.connect(broker_file) as database:
        return database.execute("SELECT id, visible FROM kombu_message ORDER BY id").fetchall()


def test_the_sqla_prefix_gets_our_transport_and_its_polling_interval(connection: Connection) -> None:
    assert isinstance(connection.transport, sqla_broker.Transport)
    # kombu's own transport would hand polling_interval to create_engine, which rejects it.
    assert connection.transport.polling_interval == 0.05
    queue = connection.SimpleQueue("polling")
    queue.put({"n": 1})
    assert queue.get(timeout=5).payload == {"n": 1}
    queue.close()


def test_fetched_messages_come_in_order_and_leave_no_row(connection: Connection, broker_file: Path) -> None:
    queue = connection.SimpleQueue("work")
    for number in range(5):
        queue.put({"n": number})
    assert len(_rows(broker_file)) == 5
    received = []
    for _ in range(5):
        message = queue.get(timeout=5)
        received.append(message.payload["n"])
        message.ack()
    assert received == [0, 1, 2, 3, 4]
    assert _rows(broker_file) == []
    queue.close()


def test_an_unacknowledged_message_is_back_after_its_consumer_closes(broker_file: Path) -> None:
    url = f"sqla+sqlite:///{broker_file}"
    with Connection(url) as first:
        queue = first.SimpleQueue("work")
        queue.put({"n": 1})
        assert queue.get(timeout=5).payload == {"n": 1}  # and never acknowledged
        assert _rows(broker_file) == []
        queue.close()
    with Connection(url) as second:
        queue = second.SimpleQueue("work")
        message = queue.get(timeout=5)
        assert message.payload == {"n": 1}
        message.ack()
        queue.close()
    assert _rows(broker_file) == []


def test_rows_hidden_by_kombus_transport_are_cleared_and_the_file_is_in_wal_mode(broker_file: Path) -> None:
    # kombu's transport marks what it delivers invisible and keeps it: every empty poll walks those rows.
    with Connection(f"sqlite:///{broker_file}", transport=kombu_sqlalchemy.Transport) as stock:
        queue = stock.SimpleQueue("work")
        for number in range(3):
            queue.put({"n": number})
        for _ in range(3):
            queue.get(timeout=5).ack()
        queue.put({"n": "pending"})
        queue.close()
    assert [visible for _, visible in _rows(broker_file)] == [0, 0, 0, 1]

    with Connection(f"sqla+sqlite:///{broker_file}") as ours:
        queue = ours.SimpleQueue("work")
        message = queue.get(timeout=5)
        assert message.payload == {"n": "pending"}, "a message waiting in the old file is still delivered"
        message.ack()
        queue.close()
    assert _rows(broker_file) == []
    with sqlite3.connect(broker_file) as database:
        assert database.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_empty_look_returns_after_one_polling_interval(connection: Connection) -> None:
    # Celery's loop for polling brokers asks for 2 s at a time and checks for a stop request between
    # asks: a worker stopped by Ctrl-C began its shutdown up to 2 s late.
    connection.SimpleQueue("idle").close()
    started = time.monotonic()
    connection.drain_events(timeout=30)
    assert time.monotonic() - started < 10  # one polling interval (0.05 s), whatever the machine's load
    with pytest.raises(TimeoutError):
        connection.drain_events(timeout=0)


def test_a_simple_queue_still_waits_its_whole_timeout_for_a_message(connection: Connection) -> None:
    queue = connection.SimpleQueue("late")
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        queue.get(timeout=0.3)
    assert time.monotonic() - started >= 0.3
    queue.close()
