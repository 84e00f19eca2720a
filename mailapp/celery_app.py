"""Celery wired the Flask docs' way: every task runs inside an app context of the app that made it.
Also: beat's periodic ticks log at DEBUG, so an idle installation is quiet (QuietTicks), and so does
the pool's report of processes stopped with the worker (QuietStop); and a stop signal sent to the
worker's whole process group stops it promptly (leave_the_workers_process_group)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from celery import Celery, Task
from celery.signals import worker_process_init
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


# billiard's pool supervisor, which reports pool processes that died of a signal.
POOL_LOGGER = "multiprocessing"
_STOP_SIGNALS = ("signal 15 (SIGTERM)", "signal 2 (SIGINT)")


class QuietStop(logging.Filter):
    """Ctrl-C under honcho (or systemd's stop) signals the worker's whole process group: its pool
    processes die of the SIGTERM while the worker is already in its warm shutdown, and the pool's
    supervisor reports each as an ERROR. Expected then, so DEBUG; any other death stays an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        from celery.worker import state

        died_of_stop = (
            record.levelno == logging.ERROR
            and record.msg == "Process %r pid:%r exited with %r"
            and isinstance(record.args, tuple)
            and record.args[-1:] and record.args[-1] in _STOP_SIGNALS
        )
        # Celery's own test: a shutdown's exit code may be 0, so "set" means neither None nor False.
        stopping = any(
            flag is not None and flag is not False for flag in (state.should_stop, state.should_terminate)
        )
        if not died_of_stop or not stopping:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


@worker_process_init.connect
def leave_the_workers_process_group(**_: object) -> None:
    """A pool process moves to a process group of its own, so that only the worker's main process gets
    the SIGTERM that honcho (`make run`'s Ctrl-C) and other process managers send to a whole group.

    Killed by that signal, a pool process waiting for work dies holding the pool's shared queue lock.
    On the embedded default's database broker the worker runs billiard's plain Pool (the broker has no
    event loop for Celery's own pool), whose shutdown then waits for that lock forever: the worker
    hung until honcho's SIGKILL. Left alone, the pool processes finish the task in hand and exit on
    the main process's warm shutdown, as they do on a terminal's Ctrl-C (SIGINT, which they ignore).
    They still die with the main process (Celery sets their parent-death signal to SIGKILL), and a
    revoke or a time limit still signals them by process id.

    The solo pool (the `scheduler`) sends the same signal in the worker's own process, which must stay
    in the group its process manager signals."""
    from billiard.process import current_process

    if current_process().name == "MainProcess":
        return
    os.setpgid(0, 0)


def quiet_periodic_ticks(celery_app: Celery) -> None:
    ticks = QuietTicks(entry["task"] for entry in (celery_app.conf.beat_schedule or {}).values())
    for name in TICK_LOGGERS:
        logger = logging.getLogger(name)
        for existing in [f for f in logger.filters if isinstance(f, QuietTicks)]:
            logger.removeFilter(existing)  # one filter, of the latest app's schedule
        logger.addFilter(ticks)
    pool_logger = logging.getLogger(POOL_LOGGER)
    if not [f for f in pool_logger.filters if isinstance(f, QuietStop)]:
        pool_logger.addFilter(QuietStop())


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
