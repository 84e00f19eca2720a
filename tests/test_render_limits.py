"""Rendering has hard limits whatever the construct: hostile templates are refused or cut off within
seconds and with bounded memory, in validation, through the web, and in a send."""

from __future__ import annotations

import multiprocessing
import resource
import time
from typing import Any

import pytest

from mailapp.errors import TemplateError
from mailapp.layouts import limits, templating

BIG = "{% set big = 'x' * 4000000 %}"

# Each of these once held a worker for minutes or allocated hundreds of megabytes (or would have).
HOSTILE_TEMPLATES = {
    "left-associative power tower": "{{ 10**100**100**100**100 > 1 }}",
    "power of a power": "{{ 10**100**100 }}",
    "huge exponent in parentheses": "{{ 9 ** (9 ** 9) }}",
    "shift operator": "{{ 2<<10**8 }}",
    "center width": "{{ 'x'|center(400000000) }}",
    "center width computed": "{{ 'x'|center(10**9) }}",
    "format filter width": "{{ '%999999999d'|format(1) }}",
    "percent width": "{{ '%999999999s' % 'x' }}",
    "percent star width": "{{ '%*d' % (999999999, 1) }}",
    "str.format width": "{{ '{:>999999999}'.format(1) }}",
    "str.format nested width": "{{ '{:>{}}'.format(1, 999999999) }}",
    "str.format repeated field": "{{ ('{0}' * 1000000).format('x' * 4000) }}",
    "percent repeated field": "{{ ('%s' * 1000000) % (('x' * 4000,) * 1000000) }}",
    "join separator": "{{ range(100000)|join('x' * 4000) }}",
    "str.join separator": "{{ ('x' * 100000).join(range(100000)|map('string')) }}",
    "concat doubling in a namespace loop": (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
        "{{ ns.s|length }}"
    ),
    "concat of big values": BIG + "{{ big ~ big ~ big ~ big }}",
    "replace empty": "{{ ('x' * 1000000)|replace('', 'yyyy') }}",
    "str.replace empty": "{{ ('x' * 1000000).replace('', 'yyyy') }}",
    "indent": "{{ ('x\\n' * 1000000)|indent(400) }}",
    "wordwrap wrapstring": "{{ ('x ' * 1000000)|wordwrap(1, wrapstring='<br>' * 100) }}",
    "ljust": "{{ 'x'.ljust(999999999) }}",
    "zfill": "{{ '1'.zfill(999999999) }}",
    "expandtabs": "{{ ('\\t' * 1000000).expandtabs(1000) }}",
    "int to_bytes": "{{ (1).to_bytes(999999999, 'big') }}",
    "string repeat": "{{ 'x' * 999999999 }}",
    "list repeat": "{{ ['x' * 4000000] * 1000 }}",
    "nested list repeat": "{{ [['x' * 1000000] * 4] * 1000 }}",
    "list literal of big values": BIG + "{{ [big, big, big, big, big, big, big, big]|string }}",
    "printed list literal": BIG + "{% set l = [big, big, big, big, big, big, big, big] %}{{ l }}",
    "map center collected": "{{ range(100000)|map('center', 4000000)|list|length }}",
    "macro buffering a loop": (
        BIG + "{% macro m() %}{% for i in range(100000) %}{{ big }}{% endfor %}{% endmacro %}{{ m()|length }}"
    ),
    "set block buffering a loop": (
        BIG + "{% set y %}{% for i in range(1000) %}{{ big }}{% endfor %}{% endset %}{{ y|length }}"
    ),
    "output loop": BIG + "{% for i in range(100000) %}{{ big }}{% endfor %}",
    "nested ranges": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "nested ranges printing": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}"
    ),
    "recursive macro": "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
    "recursive loop": "{% for i in [1] recursive %}{{ loop([i]) }}{% endfor %}",
    "recursive loop over ranges": (
        "{% for i in range(3) recursive %}{% if loop.depth < 3 %}{{ loop(range(100000)) }}{% endif %}"
        "{% endfor %}"
    ),
    "slow but few steps (deadline)": (
        "{% for i in range(100000) %}{{ ('x' * 4000000).upper()|length }}{% endfor %}"
    ),
    "slice into many groups": "{{ range(10)|slice(999999999)|list }}",
    "sum of lists": "{{ range(100000)|map('string')|map('list')|sum(start=[])|length }}",
    "tojson of a big list": BIG + "{{ [big, big, big, big, big, big]|tojson }}",
    "huge range": "{{ range(10**9)|list }}",
}

# Generous: a refused template must never come near a gunicorn timeout, nor hold hundreds of MB.
MAX_SECONDS = 5.0
MAX_MEMORY_GROWTH_MB = 120


def _validate_measured(source: str, connection: Any) -> None:
    """In a child process: validate, and report how long it took and how much its peak RSS grew."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    try:
        templating.validate_template(source)
        outcome = "accepted"
    except TemplateError as error:
        outcome = error.details[0]["message"] if error.details else error.message
    elapsed = time.monotonic() - started
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    connection.send((outcome, elapsed, grown_kb / 1024))
    connection.close()


def validate_in_child(source: str) -> tuple[str, float, float]:
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_validate_measured, args=(source, sending))
    child.start()
    try:
        if not receiving.poll(60):
            pytest.fail(f"validation did not finish in 60 s: {source!r}")
        return receiving.recv()
    finally:
        child.kill()
        child.join()


def test_there_are_at_least_twenty_hostile_templates() -> None:
    assert len(HOSTILE_TEMPLATES) >= 20


@pytest.mark.parametrize("source", HOSTILE_TEMPLATES.values(), ids=HOSTILE_TEMPLATES.keys())
def test_a_hostile_template_is_refused_quickly_with_bounded_memory(source: str) -> None:
    outcome, elapsed, grown_mb = validate_in_child(source)
    assert outcome != "accepted", f"accepted: {source!r}"
    assert elapsed < MAX_SECONDS, f"took {elapsed:.1f} s: {outcome}"
    assert grown_mb < MAX_MEMORY_GROWTH_MB, f"peak memory grew by {grown_mb:.0f} MB: {outcome}"


# Macros are refused by validation ("Unknown variable"), so these go straight to the sandbox: the budget
# must hold even for what the static checks happen to catch first.
HOSTILE_RENDERS = {
    "recursive macro": "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
    "macro buffering a loop": (
        BIG + "{% macro m() %}{% for i in range(100000) %}{{ big }}{% endfor %}{% endmacro %}{{ m()|length }}"
    ),
    "macro called in a loop": (
        "{% macro m() %}{% for i in range(100000) %}.{% endfor %}{% endmacro %}"
        "{% for i in range(100000) %}{{ m()|length }}{% endfor %}"
    ),
    "call block recursion": (
        "{% macro m() %}{% call m() %}{{ caller() }}{% endcall %}{% endmacro %}{{ m() }}"
    ),
}


def _render_measured(source: str, connection: Any) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    try:
        templating.html_environment().from_string(source).render(templating.sample_context())
        outcome = "rendered"
    except limits.RenderLimitExceeded as error:
        outcome = f"refused: {error}"
    except Exception as error:  # noqa: BLE001 - reported to the test, which fails on it
        outcome = f"other error: {error!r}"
    elapsed = time.monotonic() - started
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    connection.send((outcome, elapsed, grown_kb / 1024))
    connection.close()


@pytest.mark.parametrize("source", HOSTILE_RENDERS.values(), ids=HOSTILE_RENDERS.keys())
def test_the_render_budget_stops_a_hostile_macro(source: str) -> None:
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_render_measured, args=(source, sending))
    child.start()
    try:
        assert receiving.poll(60), "the render did not finish in 60 s"
        outcome, elapsed, grown_mb = receiving.recv()
    finally:
        child.kill()
        child.join()
    assert outcome.startswith("refused: "), outcome
    assert elapsed < MAX_SECONDS, f"took {elapsed:.1f} s: {outcome}"
    assert grown_mb < MAX_MEMORY_GROWTH_MB, f"peak memory grew by {grown_mb:.0f} MB: {outcome}"
