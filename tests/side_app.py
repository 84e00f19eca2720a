"""An app beside the suite's, for tests that need one configured otherwise."""

from __future__ import annotations

from typing import Any

from flask import Flask


def create_app_aside(config: Any) -> Flask:
    """create_app(config), leaving the suite's Celery app the default and the current one. create_app
    makes its own Celery app both, and shared tasks (the IMAP poll, say) run in the current one's Flask
    app: tests that come after would otherwise run tasks in this one."""
    from celery import _state

    from mailapp import create_app

    default_celery, current_celery = _state.default_app, _state.get_current_app()
    try:
        return create_app(config)
    finally:
        _state.default_app = default_celery
        _state._set_current_app(current_celery)
