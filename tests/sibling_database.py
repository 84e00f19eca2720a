"""A fresh PostgreSQL database beside the suite's own (`<DATABASE_URL's database>_<suffix>`), for tests
that run the app as separate processes and must not share, or empty, the suite's tables, and for
migration tests that need an empty database."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from flask import Flask
from sqlalchemy import create_engine, make_url, text

from config import database_url


def create_sibling_database(configured_url: str, suffix: str) -> tuple[str, Callable[[], None]]:
    """Drop and create `<database>_<suffix>` on the server of `configured_url`; returns its URL and the
    function that drops it again."""
    server_url = make_url(database_url(configured_url))
    name = f"{server_url.database}_{suffix}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    drop()
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop_and_dispose() -> None:
        drop()
        admin.dispose()

    return server_url.set(database=name).render_as_string(hide_password=False), drop_and_dispose


@contextlib.contextmanager
def app_on_fresh_database(app: Flask, tmp_path: Path, name: str, *, sqlite: bool = False) -> Iterator[Flask]:
    """An app of its own on an empty database: an SQLite file under tmp_path when `sqlite` is asked for or
    the suite runs on SQLite, else a sibling PostgreSQL database `<suite database>_<name>`, dropped after.
    Its Celery app becomes neither the default nor the current one (tests go on using the suite's)."""
    from config import TestConfig
    from mailapp.extensions import db
    from tests.side_app import create_app_aside

    drop = None
    config = TestConfig()
    suite_url = app.config["SQLALCHEMY_DATABASE_URI"]
    if sqlite or not suite_url.startswith("postgresql"):
        config.SQLALCHEMY_DATABASE_URI = f"sqlite:///{tmp_path / f'{name}.sqlite'}"
    else:
        config.SQLALCHEMY_DATABASE_URI, drop = create_sibling_database(suite_url, name)
    config.CELERY_BROKER_URL = app.config["CELERY_BROKER_URL"]
    fresh = create_app_aside(config)
    try:
        yield fresh
    finally:
        with fresh.app_context():
            db.session.remove()
            db.engine.dispose()
        if drop is not None:
            drop()
