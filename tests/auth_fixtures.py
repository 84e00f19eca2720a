"""Helpers for the sign-in tests: a second app, built like the suite's but with other settings."""

from __future__ import annotations

from flask import Flask

from config import TestConfig
from tests.side_app import create_app_aside


def throwaway_app(app: Flask, **settings: object) -> Flask:
    """An app on the suite app's database and broker, with `settings` on top of TestConfig. Its Celery
    app becomes neither the default nor the current one (the suite's worker keeps publishing to the
    suite's)."""
    config = TestConfig()
    config.SQLALCHEMY_DATABASE_URI = app.config["SQLALCHEMY_DATABASE_URI"]
    config.CELERY_BROKER_URL = app.config["CELERY_BROKER_URL"]
    config.REDIS_URL = app.config["REDIS_URL"]
    for name, value in settings.items():
        setattr(config, name, value)
    created = create_app_aside(config)
    created.test_client_class = type(app.test_client())
    return created
