"""Engine settings per database: WAL and a busy timeout on SQLite, so web, worker and beat can share
one file without tripping over `database is locked`."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine


def is_postgres() -> bool:
    from mailapp.extensions import db

    return db.engine.dialect.name == "postgresql"


def configure_engine_events(app: Flask) -> None:
    from mailapp.extensions import db

    with app.app_context():
        engine: Engine = db.engine
        if engine.dialect.name != "sqlite":
            return

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            # Let SQLAlchemy, not pysqlite, decide when transactions begin (see _begin_immediate).
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection) -> None:
            # A deferred transaction that later writes can fail at once with "database is locked"
            # when another process committed in between; taking the write lock up front makes it
            # wait (busy_timeout) instead.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
