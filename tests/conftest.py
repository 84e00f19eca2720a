"""Fixtures: the app (schema from the migrations), a test client that logs in and carries CSRF tokens,
an API client, a real SMTP server, and a real Celery worker.

The database is the embedded SQLite default, or whatever DATABASE_URL names (CI's second pass points
it at PostgreSQL); the broker likewise follows CELERY_BROKER_URL (Redis in CI's second pass)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from flask import Flask, g, has_app_context
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from config import TestConfig, database_url
from tests.smtp import SMTPTestServer

TEST_PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def pytest_report_header() -> list[str]:
    return [
        f"database: {os.environ.get('DATABASE_URL') or 'embedded SQLite'}",
        f"broker: {os.environ.get('CELERY_BROKER_URL') or 'embedded sqla+sqlite'}",
    ]


class MailappClient(FlaskClient):
    """A test client that can sign in and post forms with their CSRF token."""

    def open(self, *args, **kwargs):
        # A test's requests share its app context and so Flask's `g`, where Flask-Login caches the
        # signed-in user and Flask-WTF the session's CSRF token: left there, the next request, of any
        # client, would be taken for that user and handed that token.
        if has_app_context():
            for cached in ("_login_user", "csrf_token"):
                g.pop(cached, None)
        return super().open(*args, **kwargs)

    def csrf_token(self, page: str = "/login") -> str:
        html = self.get(page).get_data(as_text=True)
        match = CSRF_RE.search(html)
        assert match, f"no csrf_token on {page}"
        return match.group(1)

    def login(self, email: str, password: str = TEST_PASSWORD):
        token = self.csrf_token("/login")
        return self.post("/login", data={"email": email, "password": password, "csrf_token": token})

    def post_form(self, url: str, data: dict | None = None, **kwargs):
        """POST a form the way a browser does, with a CSRF token taken from a page of the session."""
        payload = dict(data or {})
        payload.setdefault("csrf_token", self.csrf_token(kwargs.pop("token_page", "/")))
        return self.post(url, data=payload, **kwargs)


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def _flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SMTPTestServer]:
    server = SMTPTestServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory, smtp_server: SMTPTestServer) -> Iterator[Flask]:
    from flask_migrate import upgrade

    from mailapp import create_app

    workdir = tmp_path_factory.mktemp("mailapp")
    config = TestConfig()
    db_url = database_url(os.environ.get("DATABASE_URL") or f"sqlite:///{workdir / 'test.sqlite'}")
    broker_url = os.environ.get("CELERY_BROKER_URL") or f"sqla+sqlite:///{workdir / 'broker.sqlite'}"
    if db_url.startswith("postgresql"):
        _reset_postgres(db_url)
    if broker_url.startswith("redis"):
        _flush_redis(broker_url)
    config.SQLALCHEMY_DATABASE_URI = db_url
    config.CELERY_BROKER_URL = broker_url
    config.REDIS_URL = broker_url if broker_url.startswith("redis") else ""
    config.MAIL_SERVER = "127.0.0.1"
    config.MAIL_PORT = smtp_server.port
    config.PUBLIC_URL = "http://mailapp.test"
    config.DEVINBOX_DIR = str(workdir / "devinbox")
    config.UPLOAD_DIR = str(workdir / "uploads")
    config.INSTANCE_DIR = str(workdir / "instance")

    app = create_app(config)
    app.test_client_class = MailappClient
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        from mailapp.extensions import db

        db.engine.dispose()


@pytest.fixture(autouse=True)
def _app_context(app: Flask, smtp_server: SMTPTestServer) -> Iterator[None]:
    """Every test runs in an app context, and leaves an empty database and mailbox behind."""
    from mailapp.auth.throttle import reset_counts
    from mailapp.extensions import db

    with app.app_context():
        yield
        db.session.rollback()
        db.session.remove()
        _empty_tables(db)
        reset_counts()
    smtp_server.reset()


def _empty_tables(db) -> None:
    tables = [table.name for table in reversed(db.metadata.sorted_tables)]  # children before parents
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # A TRUNCATE of every table costs PostgreSQL new files for each table and index, a quarter
            # of a second per test; most tests touch a few tables. So: one probe for the tables that
            # hold rows, a DELETE of those, and the sequences that were used set back to 1 (what
            # TRUNCATE ... RESTART IDENTITY did, so ids still start at 1 in every test).
            probe = " UNION ALL ".join(
                f"SELECT '{table}' WHERE EXISTS (SELECT 1 FROM {table})" for table in tables
            )
            holding_rows = set(connection.execute(text(probe)).scalars())
            for table in tables:
                if table in holding_rows:
                    connection.execute(text(f"DELETE FROM {table}"))  # table names from metadata
            connection.execute(text(
                "SELECT setval(format('%I.%I', schemaname, sequencename), 1, false) FROM pg_sequences"
                " WHERE schemaname = current_schema() AND last_value IS NOT NULL"
            ))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))  # table names from metadata


@pytest.fixture
def db(app: Flask):
    from mailapp.extensions import db as database

    return database


@pytest.fixture
def client(app: Flask) -> MailappClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


@pytest.fixture
def user(db):
    from mailapp.auth.services import create_user

    created = create_user("marketer@example.com", TEST_PASSWORD, is_admin=True)
    db.session.commit()
    return created


@pytest.fixture
def auth_client(client: MailappClient, user) -> MailappClient:
    response = client.login(user.email)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


class APIClient:
    """Calls /api/v1 with a bearer token."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, url: str, **kwargs):
        return self.client.get(url, headers=self.headers, **kwargs)

    def post(self, url: str, **kwargs):
        return self.client.post(url, headers=self.headers, **kwargs)

    def patch(self, url: str, **kwargs):
        return self.client.patch(url, headers=self.headers, **kwargs)

    def delete(self, url: str, **kwargs):
        return self.client.delete(url, headers=self.headers, **kwargs)


@pytest.fixture
def api(client: MailappClient, user, db) -> APIClient:
    from mailapp.auth.services import create_api_token

    token = create_api_token(user.email, name="tests")
    db.session.commit()
    return APIClient(client, token)


@pytest.fixture(scope="session")
def celery_worker(app: Flask) -> Iterator[object]:
    """A real Celery worker, in threads of this process, consuming from the test broker."""
    from celery.contrib.testing.worker import start_worker

    celery_app = app.extensions["celery"]
    with start_worker(
        celery_app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=30
    ) as worker:
        yield worker


def is_postgres() -> bool:
    url = os.environ.get("DATABASE_URL", "")
    return urlparse(url).scheme.startswith("postgresql")
