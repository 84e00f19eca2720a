"""Celery wired the Flask docs' way: every task runs inside an app context of the app that made it.
Also: beat's periodic ticks log at DEBUG, so an idle installation is quiet (see QuietTicks)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import Celery, Task
from flask import Flask

# Where Celery logs the three lines every periodic tick costs: beat's "Scheduler: Sending due task",
# the worker's "Task ... received" and the tracer's "Task ... succeeded in".
TICK_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")


class QuietTicks(logging.Filter):
    """Beat's ticks (the dispatcher every second, the sweeper, the counter folding, the open-event
    flush) each log a send, a receipt and a success at INFO: some 200 lines a minute of an idle
    installation, in which `make run`'s sign-in details and any real event drown. Their lines are
    logged at DEBUG instead: shown with --loglevel DEBUG, dropped otherwise. Failures, retries and
    what the tasks log themselves (a sweep that released leases, say) keep their level."""

    def __init__(self, task_names: Iterable[str]) -> None:
        super().__init__()
        self.task_names = frozenset(task_names)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or self._task_of(record) not in self.task_names:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)

    @staticmethod
    def _task_of(record: logging.LogRecord) -> str | None:
        data = getattr(record, "data", None)  # the worker's and the tracer's context
        if isinstance(data, dict):
            return data.get("name")
        if record.name == "celery.beat" and isinstance(record.args, tuple) and len(record.args) == 2:
            return str(record.args[1])  # ("entry name", "task name")
        return None


def quiet_periodic_ticks(celery_app: Celery) -> None:
    ticks = QuietTicks(entry["task"] for entry in (celery_app.conf.beat_schedule or {}).values())
    for name in TICK_LOGGERS:
        logger = logging.getLogger(name)
        for existing in [f for f in logger.filters if isinstance(f, QuietTicks)]:
            logger.removeFilter(existing)  # one filter, of the latest app's schedule
        logger.addFilter(ticks)


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
    quiet_periodic_ticks(celery_app)
    app.extensions["celery"] = celery_app
    return celery_app
