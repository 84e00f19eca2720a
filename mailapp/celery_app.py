"""Celery wired the Flask docs' way: every task runs inside an app context of the app that made it."""

from __future__ import annotations

from celery import Celery, Task
from flask import Flask


def celery_init_app(app: Flask) -> Celery:
    from mailapp import sqla_broker

    # Before the first connection: the embedded default's sqla+sqlite:// broker gets our transport.
    sqla_broker.register()

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
