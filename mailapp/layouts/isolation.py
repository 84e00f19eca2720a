"""Template renders of a web request (save, validate, preview, subject checks) run in a short-lived child
process, capped in memory and CPU and killed at its deadline, so that no template, not even one the
render budget (sending/limits.py) misses, can hold a web worker, its memory, or the SQLite write lock.

Children are forked from a forkserver: a clean single-threaded process started once per web process
with the template code already imported, so a child starts in milliseconds and never inherits the web
worker's threads, locks or database connections."""

from __future__ import annotations

import contextlib
import functools
import math
import multiprocessing
import multiprocessing.spawn
import os
import resource
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from mailapp.errors import MailappError, TemplateError
from mailapp.extensions import db
from mailapp.sending import limits

# Time for the child to start and hand back its answer, on top of the render's own deadline.
_START_GRACE_SECONDS = 2.0
# With no render deadline configured (RENDER_TIMEOUT_SECONDS=0), the child is still killed after this.
_NO_DEADLINE_SECONDS = 30.0

# The children's name: their start skips re-running the parent's main script (see below).
_RENDER_PROCESS_NAME = "mailapp-render"
_stdlib_preparation_data = multiprocessing.spawn.get_preparation_data


def _preparation_data(name: str) -> dict[str, Any]:
    """What a child is told to do before it runs its target. By default it runs the parent's main
    script again (gunicorn's, flask's, pytest's): 0.2 s or more per render, for a child whose
    target (`_child_main` below) is imported by name and needs nothing from that script. Only the
    render children skip it; any other process is left as multiprocessing made it."""
    data = _stdlib_preparation_data(name)
    if name == _RENDER_PROCESS_NAME:
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


@functools.cache
def _process_context() -> Any:
    """One forkserver per process, started on first use."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mailapp.layouts.isolation", "mailapp.sending.templating"])
    multiprocessing.spawn.get_preparation_data = _preparation_data
    return context


def run_isolated(function: Callable[..., Any], *args: Any) -> Any:
    """function(*args) in a child process under the app's render limits; what it returns or the
    MailappError it raises. A child over its time or memory is killed and reported as a
    TemplateError."""
    render_limits = limits.RenderLimits.from_config(current_app.config)
    memory_bytes = int(current_app.config["RENDER_MEMORY_BYTES"])
    _release_idle_transaction()
    context = _process_context()
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(
        target=_child_main, args=(sending, function, args, render_limits, memory_bytes), daemon=True,
        name=_RENDER_PROCESS_NAME,
    )
    child.start()
    sending.close()
    wait = (render_limits.timeout_seconds or _NO_DEADLINE_SECONDS) + _START_GRACE_SECONDS
    try:
        if not receiving.poll(wait):
            raise _refused(f"the template took longer than {wait:g} s to render (RENDER_TIMEOUT_SECONDS).")
        try:
            kind, payload = receiving.recv()
        except EOFError:
            raise _refused(_memory_reason(memory_bytes)) from None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiving.close()
    if kind == "ok":
        return payload
    error_class, message, details = payload
    raise error_class(message, details)


def _refused(reason: str) -> TemplateError:
    message = f"Over a render limit: {reason}"
    return TemplateError(f"The template fails to render: {message}", [{"line": None, "message": message}])


def _memory_reason(memory_bytes: int) -> str:
    return f"rendering the template used more than {memory_bytes // 2**20} MB (RENDER_MEMORY_BYTES)."


def _child_main(connection: Connection, function: Callable[..., Any], args: tuple[Any, ...],
                render_limits: limits.RenderLimits, memory_bytes: int) -> None:
    _cap_resources(render_limits, memory_bytes)
    try:
        with limits.render_limits(render_limits):
            answer: tuple[str, Any] = ("ok", function(*args))
    except MailappError as error:
        answer = ("error", (type(error), error.message, error.details))
    except MemoryError:
        refused = _refused(_memory_reason(memory_bytes))
        answer = ("error", (TemplateError, refused.message, refused.details))
    except Exception as error:  # whatever broke, the parent reports it as a template error
        message = f"The template fails to render: {error}"
        answer = ("error", (TemplateError, message, [{"line": None, "message": message}]))
    connection.send(answer)
    connection.close()


def _cap_resources(render_limits: limits.RenderLimits, memory_bytes: int) -> None:
    """Address space: what the child already maps plus the allowance; CPU: the deadline, rounded up,
    as a last resort should the parent not kill it."""
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * page
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (mapped + memory_bytes, mapped + memory_bytes))
    if render_limits.timeout_seconds:
        seconds = math.ceil(render_limits.timeout_seconds) + 1
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))


# -- not holding the SQLite write lock while a render runs -----------------------------------------------
# On SQLite every transaction takes the write lock when it begins (db_setup._begin_immediate), and a
# request's first query (loading the signed-in user) begins one. A request that has written nothing yet
# ends that transaction before a render, so the dispatcher and the sweeper can write meanwhile.

_WROTE = "mailapp_wrote_in_transaction"


@event.listens_for(Session, "after_flush")
def _note_flush(session: Session, flush_context: Any) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _note_write(state: ORMExecuteState) -> None:
    if not state.is_select:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_transaction_end")
def _forget_writes(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_WROTE, None)


def _release_idle_transaction() -> None:
    session = db.session()
    if db.engine.dialect.name != "sqlite" or not session.in_transaction():
        return
    if session.new or session.dirty or session.deleted or session.info.get(_WROTE):
        return
    session.commit()  # nothing to write: this only ends the transaction and its lock
