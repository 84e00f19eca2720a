"""Sign-in throttling: per client address and per account, counted across processes (Redis when the
suite runs on it, else the database), with the client address taken from proxies only when trusted."""

from __future__ import annotations

import multiprocessing

import pytest
from sqlalchemy import select

from config import TestConfig
from tests.auth_fixtures import throwaway_app
from tests.conftest import CSRF_RE, TEST_PASSWORD

# Long enough that no test straddles two windows of the fixed-window count.
WINDOW_SECONDS = 3600
LIMIT = 5


@pytest.fixture(autouse=True)
def _small_limits(app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_THROTTLE_WINDOW_SECONDS", WINDOW_SECONDS)
    monkeypatch.setitem(app.config, "LOGIN_MAX_ATTEMPTS_PER_ADDRESS", LIMIT)
    monkeypatch.setitem(app.config, "LOGIN_MAX_ATTEMPTS_PER_ACCOUNT", LIMIT)


WRONG_PASSWORD = "wrong password"


def attempt(client, email: str, password: str = WRONG_PASSWORD, address: str = "127.0.0.1", **kwargs):
    token = client.csrf_token("/login")
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": address}, **kwargs,
    )


def test_one_account_is_throttled_whatever_address_the_attempts_come_from(app, user):
    statuses = [
        attempt(app.test_client(), user.email, address=f"10.0.0.{n}").status_code for n in range(LIMIT)
    ]
    assert statuses == [200] * LIMIT
    refused = attempt(app.test_client(), user.email, address="10.0.1.1")
    assert refused.status_code == 429
    assert "Too many sign-in attempts. Try again in" in refused.get_data(as_text=True)


def test_a_throttled_attempt_does_not_even_check_the_password(app, user):
    for n in range(LIMIT):
        attempt(app.test_client(), user.email, address=f"10.0.0.{n}")
    client = app.test_client()
    right_password = attempt(client, user.email, password=TEST_PASSWORD, address="10.0.2.1")
    assert right_password.status_code == 429
    assert client.get("/").status_code == 302  # not signed in


def test_the_account_count_ignores_case_and_tells_nothing_about_existence(app, user):
    for n in range(LIMIT):
        attempt(app.test_client(), user.email.upper(), address=f"10.0.0.{n}")
    assert attempt(app.test_client(), user.email, address="10.0.3.1").status_code == 429
    for n in range(LIMIT):
        attempt(app.test_client(), "nobody@example.com", address=f"10.1.0.{n}")
    unknown = attempt(app.test_client(), "nobody@example.com", address="10.1.1.1")
    known = attempt(app.test_client(), user.email, address="10.1.1.2")
    assert unknown.status_code == known.status_code == 429


def test_one_address_is_throttled_whatever_accounts_it_tries(client, user):
    statuses = [attempt(client, f"guess{n}@example.com").status_code for n in range(LIMIT + 1)]
    assert statuses == [200] * LIMIT + [429]
    assert attempt(client, user.email, password=TEST_PASSWORD).status_code == 429


def test_a_forged_forwarded_for_header_does_not_reset_the_count_without_trusted_proxies(client, app):
    assert app.config["TRUSTED_PROXIES"] == 0
    statuses = [
        attempt(client, f"guess{n}@example.com", headers={"X-Forwarded-For": f"192.0.2.{n}"}).status_code
        for n in range(LIMIT + 1)
    ]
    assert statuses[-1] == 429


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_count(app):
    proxied = throwaway_app(
        app, TRUSTED_PROXIES=1, LOGIN_THROTTLE_WINDOW_SECONDS=WINDOW_SECONDS,
        LOGIN_MAX_ATTEMPTS_PER_ADDRESS=LIMIT, LOGIN_MAX_ATTEMPTS_PER_ACCOUNT=100,
    )
    try:
        with proxied.app_context():
            client = proxied.test_client()

            def through_proxy(client_address: str, n: int) -> int:
                headers = {"X-Forwarded-For": client_address}
                return attempt(client, f"guess{n}@example.com", headers=headers).status_code

            first = [through_proxy("198.51.100.1", n) for n in range(LIMIT + 1)]
            second = [through_proxy("198.51.100.2", n) for n in range(LIMIT)]
    finally:
        with proxied.app_context():
            from mailapp.extensions import db

            db.session.remove()
            db.engine.dispose()
    assert first == [200] * LIMIT + [429]
    assert second == [200] * LIMIT


def _sign_in_attempts(settings: dict, attempts: int, start, results) -> None:
    """In a process of its own: an app like the suite's, `attempts` wrong sign-ins as fast as it can."""
    from mailapp import create_app

    config = TestConfig()
    for name, value in settings.items():
        setattr(config, name, value)
    app = create_app(config)
    with app.app_context():
        client = app.test_client()
        token = CSRF_RE.search(client.get("/login").get_data(as_text=True)).group(1)
        form = {"email": "target@example.com", "password": WRONG_PASSWORD, "csrf_token": token}
        start.wait(timeout=60)
        # An address no other test signs in from: the count under test is these attempts' alone.
        address = {"REMOTE_ADDR": "203.0.113.77"}
        statuses = [
            client.post("/login", data=form, environ_base=address).status_code for _ in range(attempts)
        ]
    results.put(statuses)


def test_the_count_is_shared_by_every_process(app, db):
    """Two processes (spawned: each builds its own app, as a gunicorn worker does) hammer the same
    account from the same address at the same time: together they let through no more than the limit."""
    db.session.rollback()  # the SQLite write lock must be free for the other processes
    settings = {
        name: app.config[name]
        for name in (
            "SQLALCHEMY_DATABASE_URI", "CELERY_BROKER_URL", "REDIS_URL", "LOGIN_THROTTLE_WINDOW_SECONDS",
            "LOGIN_MAX_ATTEMPTS_PER_ADDRESS", "LOGIN_MAX_ATTEMPTS_PER_ACCOUNT",
        )
    }
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    arguments = (settings, LIMIT * 2, start, results)
    processes = [context.Process(target=_sign_in_attempts, args=arguments) for _ in range(2)]
    for process in processes:
        process.start()
    try:
        statuses = [results.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
    assert all(process.exitcode == 0 for process in processes)
    let_through = sum(status != 429 for per_process in statuses for status in per_process)
    assert let_through == LIMIT, statuses


def test_counts_of_windows_long_over_are_deleted(app, db):
    from mailapp.auth.throttle import DatabaseAttemptCounter
    from mailapp.models import LoginAttempt

    counter = DatabaseAttemptCounter()
    assert counter.add("a" * 64, 0, 60) == 1
    assert counter.add("a" * 64, 0, 60) == 2
    assert counter.add("b" * 64, 60, 60) == 1
    assert counter.add("c" * 64, 120, 60) == 1  # the window at 0 is now two windows back
    db.session.commit()
    kept = db.session.execute(select(LoginAttempt.key_hash, LoginAttempt.window_start)).all()
    assert sorted((key[0], start) for key, start in kept) == [("b", 60), ("c", 120)]
