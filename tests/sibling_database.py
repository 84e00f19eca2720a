"""A fresh PostgreSQL database beside the suite's own (`<DATABASE_URL's database>_<suffix>`), for tests
that run the app as separate processes and must not share, or empty, the suite's tables."""

from __future__ import annotations

from collections.abc import Callable

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
