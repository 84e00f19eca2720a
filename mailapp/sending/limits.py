"""Hard limits on one template render: output size, steps, integer size, call depth and a deadline.

A layout is user code run for every recipient. The sandbox keeps it from reaching outside the template;
this module keeps it from spending unbounded CPU or memory inside it. Every render (see
`sandbox._BudgetedTemplate`) runs with a fresh `RenderBudget`; the sandbox charges it for each
operator, filter, call and loop iteration, and refuses, before computing it, any value that would be
larger than the limits allow (a string of more than `max_output` characters, an integer of more than
`max_int_bits` bits). Anything over budget raises `RenderLimitExceeded`, which says which limit."""

from __future__ import annotations

import contextlib
import contextvars
import re
import string
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from flask import current_app, has_app_context
from jinja2.exceptions import SecurityError


class RenderLimitExceeded(SecurityError):
    """A render went over one of its limits (output, steps, integer size, depth, time)."""


@dataclass(frozen=True)
class RenderLimits:
    # The longest string (or the most items plus characters in a list) any value may have, and the
    # longest rendered output. At least LAYOUT_MAX_BYTES, since a layout may print itself whole.
    max_output: int = 4 * 1024 * 1024
    # Operators, filters, calls and loop iterations per render.
    max_steps: int = 2_000_000
    # Integers beyond this many bits are refused before they are computed (10**1000 is 3,322 bits).
    max_int_bits: int = 4096
    # Nested calls (macros calling macros, recursive loops).
    max_depth: int = 64
    # Wall clock per render; None: no deadline.
    timeout_seconds: float | None = 2.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RenderLimits:
        timeout = float(config.get("RENDER_TIMEOUT_SECONDS", cls.timeout_seconds) or 0)
        return cls(
            max_output=int(config.get("RENDER_MAX_OUTPUT_BYTES", cls.max_output)),
            max_steps=int(config.get("RENDER_MAX_STEPS", cls.max_steps)),
            timeout_seconds=timeout if timeout > 0 else None,
        )

    def without_deadline(self) -> RenderLimits:
        return replace(self, timeout_seconds=None)


DEFAULT_LIMITS = RenderLimits()

# Printed text collected inside macros, {% set %} blocks and {% call %} blocks, summed over the render:
# a macro that prints a large value in a loop would otherwise build its whole output before any check.
_BUFFERED_OUTPUT_FACTOR = 4

_active_limits: contextvars.ContextVar[RenderLimits | None] = contextvars.ContextVar(
    "mailapp_render_limits", default=None
)
_active_budget: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar(
    "mailapp_render_budget", default=None
)


@contextlib.contextmanager
def render_limits(limits: RenderLimits) -> Iterator[None]:
    """Renders inside this block use these limits (instead of the app's configured ones)."""
    token = _active_limits.set(limits)
    try:
        yield
    finally:
        _active_limits.reset(token)


def current_limits() -> RenderLimits:
    limits = _active_limits.get()
    if limits is not None:
        return limits
    if not has_app_context():
        return DEFAULT_LIMITS
    # Read per render (the subject is rendered for every message), so cached per app and settings.
    config = current_app.config
    key = tuple(config.get(name) for name in _SETTINGS)
    cached = _limits_by_settings.get(key)
    if cached is None:
        cached = _limits_by_settings[key] = RenderLimits.from_config(config)
    return cached


_SETTINGS = ("RENDER_MAX_OUTPUT_BYTES", "RENDER_MAX_STEPS", "RENDER_TIMEOUT_SECONDS")
_limits_by_settings: dict[tuple[Any, ...], RenderLimits] = {}


class RenderBudget:
    """What one render may still spend."""

    __slots__ = ("limits", "steps_left", "deadline", "depth", "buffered_left")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.steps_left = limits.max_steps
        self.deadline = (
            time.monotonic() + limits.timeout_seconds if limits.timeout_seconds is not None else None
        )
        self.depth = 0
        self.buffered_left = limits.max_output * _BUFFERED_OUTPUT_FACTOR

    def step(self, cost: int = 1) -> None:
        self.steps_left -= cost
        if self.steps_left < 0:
            raise RenderLimitExceeded(
                f"the template does too much work: more than {self.limits.max_steps:,} operations, "
                "calls and loop iterations (RENDER_MAX_STEPS)."
            )
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise RenderLimitExceeded(
                f"the template took longer than {self.limits.timeout_seconds:g} s to render "
                "(RENDER_TIMEOUT_SECONDS)."
            )

    def check_length(self, length: int, what: str = "a value") -> None:
        if length > self.limits.max_output:
            raise RenderLimitExceeded(
                f"{what} would be {length:,} characters long; at most {self.limits.max_output:,} are "
                "allowed (RENDER_MAX_OUTPUT_BYTES)."
            )

    def check_int_bits(self, bits: int) -> None:
        if bits > self.limits.max_int_bits:
            raise RenderLimitExceeded(
                f"a number would have about {bits:,} bits; at most {self.limits.max_int_bits:,} are allowed."
            )

    def check_value(self, value: Any, what: str = "a value") -> Any:
        """The value, when it is within the limits (checked after computing it: for results whose size
        cannot grow by more than a small factor over checked inputs)."""
        if isinstance(value, int):
            self.check_int_bits(value.bit_length())
        elif isinstance(value, str):
            self.check_length(len(value), what)
        else:
            self.check_length(size_of(value, self), what)
        return value

    def charge_buffered(self, length: int) -> None:
        self.buffered_left -= length
        if self.buffered_left < 0:
            raise RenderLimitExceeded(
                "the template's macros and blocks print more than "
                f"{self.limits.max_output * _BUFFERED_OUTPUT_FACTOR:,} characters in all "
                "(RENDER_MAX_OUTPUT_BYTES)."
            )

    def enter_call(self) -> None:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise RenderLimitExceeded(
                f"calls are nested more than {self.limits.max_depth} deep (a macro or loop that calls "
                "itself without end?)."
            )


def start_render() -> tuple[RenderBudget, contextvars.Token[RenderBudget | None]]:
    """A fresh budget for a render that begins now; pass the token to end_render when it ends. (Not a
    context manager: this runs for every message's subject, and a generator-based one costs more than
    the rest of a small render.)"""
    budget = RenderBudget(current_limits())
    return budget, _active_budget.set(budget)


def end_render(token: contextvars.Token[RenderBudget | None]) -> None:
    _active_budget.reset(token)


def current_budget() -> RenderBudget:
    """The running render's budget; outside a render (Jinja folding constants while compiling), a fresh
    one, so the same limits apply to what it folds."""
    budget = _active_budget.get()
    return budget if budget is not None else RenderBudget(current_limits().without_deadline())


def size_of(value: Any, budget: RenderBudget | None = None) -> int:
    """About how many characters the value prints as: a string's length, a number's digits, and for a
    list, tuple or dict its items' sizes, nested, plus one for each item (the separators). Each item
    looked at costs a step, so sizing shared nested lists cannot take long."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, int):
        return value.bit_length() // 3 + 1
    if not isinstance(value, list | tuple | dict | set | frozenset):
        return 0
    budget = budget or current_budget()
    limit = budget.limits.max_output
    total = 0
    pending: list[Any] = [value]
    while pending:
        container = pending.pop()
        budget.step(len(container))
        items = [*container.keys(), *container.values()] if isinstance(container, dict) else container
        for item in items:
            if isinstance(item, str | bytes):
                total += len(item) + 1
            elif isinstance(item, list | tuple | dict | set | frozenset):
                total += 1
                pending.append(item)
            else:
                total += 8
        if total > limit:
            break  # over the limit already: the caller refuses it
    return total


class BoundedBuffer(list):
    """The list a macro or block collects its output in, charging each piece to the budget."""

    __slots__ = ()

    def append(self, item: Any) -> None:
        current_budget().charge_buffered(len(item) if isinstance(item, str) else 1)
        list.append(self, item)

    def extend(self, items: Iterable[Any]) -> None:
        pieces = list(items)
        current_budget().charge_buffered(sum(len(item) if isinstance(item, str) else 1 for item in pieces))
        list.extend(self, pieces)


def guarded_iteration(iterable: Any) -> Iterator[Any]:
    """A loop's items, one step each."""
    budget = current_budget()
    for item in iterable:
        budget.step()
        yield item


def guarded_items(iterable: Iterable[Any], budget: RenderBudget, what: str) -> Iterator[Any]:
    """A filter's lazily produced items: one step each, and their text counted against the output
    limit, so `range(...)|map('center', n)|list` stops before it holds too much."""
    produced = 0
    for item in iterable:
        budget.step()
        produced += size_of(item, budget) + 1
        budget.check_length(produced, what)
        yield item


# -- estimates before computing ------------------------------------------------------------------------

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")
_NUMBER = re.compile(r"\d+")


def int_args(args: Iterable[Any]) -> list[int]:
    return [arg for arg in args if isinstance(arg, int)]


def check_percent_format(budget: RenderBudget, template: str, values: Any) -> None:
    """`template % values` (also the `format` filter): refuse widths and precisions that would build a
    huge string, and more output than the limit allows, before formatting."""
    fields = 0
    for match in _PERCENT_SPEC.finditer(template):
        if match.group(3) == "%":
            continue
        fields += 1
        for number in (match.group(1), match.group(2)):
            if number == "*":
                args = values if isinstance(values, tuple) else (values,)
                for width in int_args(args):
                    budget.check_length(abs(width), "a formatting width")
            elif number:
                budget.check_length(int(number), "a formatting width")
    if isinstance(values, tuple | list):
        largest = max((size_of(value, budget) for value in values), default=0)
    elif isinstance(values, Mapping):
        largest = max((size_of(value, budget) for value in values.values()), default=0)
    else:
        largest = size_of(values, budget)
    budget.check_length(len(template) + fields * largest, "the formatted text")


def check_brace_format(budget: RenderBudget, template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
                       ) -> None:
    """`template.format(...)`: the same for str.format's `{:>999999}` widths and repeated fields."""
    fields = 0
    nested = False
    for _, field_name, spec, _ in string.Formatter().parse(template):
        if field_name is None:
            continue
        fields += 1
        for number in _NUMBER.findall(spec or ""):
            budget.check_length(int(number), "a formatting width")
        nested = nested or "{" in (spec or "")
    if nested:
        for width in int_args((*args, *kwargs.values())):
            budget.check_length(abs(width), "a formatting width")
    largest = max((size_of(value, budget) for value in (*args, *kwargs.values())), default=0)
    budget.check_length(len(template) + fields * max(largest, 32), "the formatted text")


def check_replace(budget: RenderBudget, text: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    occurrences = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        occurrences = min(occurrences, count)
    budget.check_length(len(text) + occurrences * max(0, len(new) - len(old)), "the replaced text")


def check_join(budget: RenderBudget, separator: Any, items: list[Any]) -> None:
    budget.step(len(items))
    total = sum(len(item) if isinstance(item, str) else size_of(item, budget) + 32 for item in items)
    if isinstance(separator, str):
        total += len(separator) * max(0, len(items) - 1)
    budget.check_length(total, "the joined text")
