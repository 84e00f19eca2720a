"""The embedded default's Celery broker: kombu's SQLAlchemy transport (`sqla+sqlite://`), made fit for a
worker, a beat and a web process sharing one SQLite file for months.

kombu's own transport has three habits this one changes:
- It hands every transport option to `create_engine`, so its `polling_interval` cannot be set (the
  engine rejects the unknown keyword). Here the transport's own options are taken out first.
- It never deletes a delivered message, it only hides it; every empty poll then walks all the hidden
  rows (the `visible != 0` test cannot use an index). A `make run` left idle grows by a row every beat
  tick, and after a few days the idle worker spends a tenth of a core on polling. Here a fetched
  message is deleted in the same transaction that claims it. Nothing ever read a hidden row again:
  unacknowledged messages are put back from the worker's memory, as new rows, on shutdown, exactly as
  before.
- It leaves SQLite in rollback-journal mode with a 5 s lock timeout. Here the file is in WAL mode, so
  the publishers (beat, web, the worker's own pool) do not queue behind each poll's commit.
- Asked to wait up to N seconds, it polls for all of them before it returns, and Celery's loop for
  such brokers waits 2 s at a time, checking between waits whether it should stop: a worker took up
  to 2 s to begin its shutdown. Here an empty look returns after one polling interval.

`register()` points the `sqla` and `sqlalchemy` URL prefixes at this transport; `celery_init_app` calls
it before the first connection.
"""

from __future__ import annotations

from json import loads
from queue import Empty
from time import monotonic, sleep
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import Engine, create_engine, event, text

# Options the virtual transport reads itself, and kombu's connection-retry options (which kombu's own
# transport already keeps away from the engine).
_TRANSPORT_OPTIONS = frozenset({
    "polling_interval", "queue_tablename", "message_tablename", "callback", "errback", "max_retries",
    "interval_start", "interval_step", "interval_max", "retry_errors",
})  # fmt: skip
# How long a SQLite publisher or poller waits for another process's write before it gives up.
SQLITE_LOCK_TIMEOUT_SECONDS = 30


class Channel(kombu_sqlalchemy.Channel):
    # Engines of our own: kombu's Channel caches them per URL in a class attribute, and one made by its
    # transport would come without the settings below.
    _engines: dict = {}

    def _engine_from_config(self):  # an Engine, as in kombu
        conninfo = self.connection.client
        options: dict[str, Any] = {
            key: value for key, value in conninfo.transport_options.items() if key not in _TRANSPORT_OPTIONS
        }
        if not conninfo.hostname.startswith("sqlite"):
            return create_engine(conninfo.hostname, **options)
        options.setdefault("connect_args", {}).setdefault("timeout", SQLITE_LOCK_TIMEOUT_SECONDS)
        engine = create_engine(conninfo.hostname, **options)
        event.listen(engine, "connect", _sqlite_wal)
        _delete_hidden_messages(engine, self.message_tablename)
        return engine

    def _get(self, queue: str) -> dict:
        queue_id = self._get_or_create(queue).id
        session = self.session
        if session.bind.name == "sqlite":
            session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        message_cls = self.message_cls
        try:
            message = (
                session.query(message_cls)
                .with_for_update()
                .filter(message_cls.queue_id == queue_id)
                # Rows hidden by kombu's own transport, left in a file it used before, are skipped.
                .filter(message_cls.visible != False)  # noqa: E712 - a SQL expression
                .order_by(message_cls.sent_at, message_cls.id)
                .limit(1)
                .first()
            )
            if message is None:
                raise Empty()
            payload = message.payload
            session.delete(message)
            return loads(bytes_to_str(payload))
        finally:
            session.commit()


class Transport(kombu_sqlalchemy.Transport):
    Channel = Channel

    def drain_events(self, connection, timeout: float | None = None) -> None:
        """One look for a message; none there, one polling interval's sleep, then return, as kombu lets
        a transport return early with nothing delivered (its callers loop until their own timeout). The
        timeout elapsed, socket.timeout as kombu's. Without a timeout: kombu's, waiting for a message."""
        if timeout is None or not self.polling_interval:
            return super().drain_events(connection, timeout=timeout)
        started = monotonic()
        try:
            self.cycle.get(self._deliver, timeout=timeout)
            return None
        except Empty:
            pass
        left = timeout - (monotonic() - started)
        if left <= 0:
            raise TimeoutError()  # socket.timeout, as kombu raises it
        sleep(min(self.polling_interval, left))
        return None


def _sqlite_wal(dbapi_connection, connection_record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def register() -> None:
    """Make `sqla+...` and `sqlalchemy+...` broker URLs use this transport, in this process."""
    for alias in ("sqla", "sqlalchemy"):
        TRANSPORT_ALIASES[alias] = f"{__name__}:Transport"


def _delete_hidden_messages(engine: Engine, tablename: str) -> None:
    """Rows kombu's own transport hid instead of deleting, in a file it used before: never read again,
    but every poll would walk them."""
    with engine.begin() as connection:
        if engine.dialect.has_table(connection, tablename):
            connection.execute(text(f"DELETE FROM {tablename} WHERE visible = 0"))  # noqa: S608 - our name
