"""Rendering has hard limits whatever the construct: hostile templates are refused or cut off within
seconds and with bounded memory, in validation, through the web, and in a send."""

from __future__ import annotations

import multiprocessing
import resource
import threading
import time
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import func, select, text, update

from mailapp.errors import TemplateError
from mailapp.layouts import isolation
from mailapp.layouts import services as layout_services
from mailapp.models import Layout, Subscriber
from mailapp.sending import ledger, limits, render, tasks, templating
from tests.factories import LayoutFactory
from tests.test_sending import deliveries, make_campaign, wait_for_status

# Within the old repeat cap (1,000,000), so that only what is done with it can be refused.
BIG = "{% set big = 'x' * 1000000 %}"

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
    "concat of big values": BIG + "{{ big ~ big ~ big ~ big ~ big }}",
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
        "{% for i in range(100000) %}{{ ('x' * 1000000).upper()|length }}{% endfor %}"
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


@pytest.mark.backend_free
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
    except Exception as error:  # reported to the test, which fails on it
        outcome = f"other error: {error!r}"
    elapsed = time.monotonic() - started
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    connection.send((outcome, elapsed, grown_kb / 1024))
    connection.close()


@pytest.mark.backend_free
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


# -- in the web process -------------------------------------------------------------------------------

POWER_TOWER = "<p>{{ 10**100**100**100**100 > 1 }}</p>"
SLOW_LAYOUT = "{% for i in range(100000) %}{{ ('x' * 4000000).upper()|length }}{% endfor %}"


def test_saving_a_hostile_layout_in_the_dashboard_is_refused_quickly(auth_client, db) -> None:
    for html in (POWER_TOWER, SLOW_LAYOUT):
        started = time.monotonic()
        response = auth_client.post_form("/layouts/new", {"name": "Hostile", "html": html})
        assert time.monotonic() - started < MAX_SECONDS
        assert response.status_code == 422
        assert "Over a render limit" in response.get_data(as_text=True)
    assert auth_client.get("/layouts/").status_code == 200  # and the app still answers
    assert db.session.scalar(select(func.count()).select_from(Layout)) == 0


def test_the_app_answers_other_requests_while_a_hostile_layout_is_refused(app, db, auth_client, user) -> None:
    answers: list[int] = []
    posting = threading.Event()
    email = user.email

    def save_hostile_layout() -> None:  # another browser, in a thread as under a threaded server
        with app.app_context():
            browser = app.test_client()
            assert browser.login(email).status_code == 302
            token = browser.csrf_token("/layouts/new")
            posting.set()
            form = {"name": "Hostile", "html": SLOW_LAYOUT, "csrf_token": token}
            answers.append(browser.post("/layouts/new", data=form).status_code)
            db.session.remove()

    db.session.rollback()  # this test's own transaction would hold the SQLite write lock
    saving = threading.Thread(target=save_hostile_layout)
    saving.start()
    assert posting.wait(10)
    time.sleep(0.5)  # the hostile render is running now (it takes its full 2 s)
    started = time.monotonic()
    listing = auth_client.get("/layouts/")
    answered_in = time.monotonic() - started
    db.session.rollback()  # the listing ran in this test's app context, whose transaction stays open
    saving.join()
    assert listing.status_code == 200
    assert answered_in < 1.0, f"the listing waited {answered_in:.1f} s behind the hostile render"
    assert answers == [422]


def test_saving_a_hostile_layout_through_the_api_is_a_clear_422(api, db) -> None:
    started = time.monotonic()
    response = api.post("/api/v1/layouts", json={"name": "Hostile", "html": SLOW_LAYOUT})
    assert time.monotonic() - started < MAX_SECONDS
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "template_error"
    assert "RENDER_TIMEOUT_SECONDS" in error["details"][0]["message"]
    assert api.get("/api/v1/layouts").status_code == 200


def test_previewing_an_unsaved_hostile_layout_is_refused_quickly(auth_client) -> None:
    started = time.monotonic()
    response = auth_client.post_form("/layouts/preview", {"html": POWER_TOWER})
    assert time.monotonic() - started < MAX_SECONDS
    assert "Over a render limit" in response.get_data(as_text=True)


def test_a_hostile_subject_is_refused_with_the_campaign_form_errors(app) -> None:
    with pytest.raises(TemplateError, match="Over a render limit"):
        layout_services.check_subject("{{ 'x'|center(10**9) }}")


def _sleep_forever() -> None:
    while True:
        time.sleep(1)


def _allocate_a_gigabyte() -> int:
    return len(bytearray(2**30))


def test_a_web_render_that_never_ends_is_killed_at_its_deadline(app, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "RENDER_TIMEOUT_SECONDS", 0.5)
    started = time.monotonic()
    with pytest.raises(TemplateError, match="took longer than"):
        isolation.run_isolated(_sleep_forever)
    assert time.monotonic() - started < 0.5 + 2.0 + 1.0


def test_a_web_render_that_allocates_too_much_memory_is_refused(app) -> None:
    with pytest.raises(TemplateError, match="RENDER_MEMORY_BYTES"):
        isolation.run_isolated(_allocate_a_gigabyte)


def test_a_web_render_does_not_hold_the_sqlite_write_lock(app, db) -> None:
    if db.engine.dialect.name != "sqlite":
        pytest.skip("only SQLite takes its write lock when a transaction begins")
    db.session.scalar(select(func.count()).select_from(Layout))  # begins a transaction, as a request does
    engine = db.engine
    waited: list[float] = []

    def write_meanwhile() -> None:  # what a sweeper tick does while the render runs
        time.sleep(0.3)
        started = time.monotonic()
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM layouts WHERE id = -1"))
        waited.append(time.monotonic() - started)

    writer = threading.Thread(target=write_meanwhile)
    writer.start()
    isolation.run_isolated(time.sleep, 1.5)
    writer.join()
    assert len(waited) == 1
    assert waited[0] < 0.5, f"the writer waited {waited[0]:.1f} s for the lock"


# -- in the send path ----------------------------------------------------------------------------------

# Cheap for the sample subscriber (no `n`) and for most readers; 10**10 loop steps for one with n=100000.
COSTLY_FOR_ONE = (
    "<html><body><p>Hello {{ subscriber.name }}</p>"
    "{% set n = subscriber.attributes.get('n', 0) %}"
    "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}{{ message }}"
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)


def test_a_delivery_whose_render_blows_its_budget_fails_alone_and_the_campaign_finishes(
    app, db, smtp_server, celery_worker
) -> None:
    layout_services.check_layout_html(COSTLY_FOR_ONE)  # passes the save-time check
    campaign, people = make_campaign(count=5, layout=LayoutFactory(html=COSTLY_FOR_ONE))
    db.session.execute(
        update(Subscriber).where(Subscriber.id == people[2].id).values(attributes={"n": 100000})
    )
    db.session.commit()
    started = time.monotonic()
    tasks.enqueue_sending(campaign.id)
    wait_for_status(campaign.id, "sent", timeout=60)
    assert time.monotonic() - started < 30
    rows = {row.email: row for row in deliveries(campaign.id)}
    failed = rows.pop(people[2].email)
    assert failed.status == "failed"
    assert "Over a render limit" in failed.error
    assert failed.attempts == 0
    assert {row.status for row in rows.values()} == {"sent"}
    assert sorted(message.to for message in smtp_server.messages) == sorted(rows)


def test_a_row_that_cannot_be_built_does_not_add_to_a_run_of_relay_refusals(
    app, db, smtp_server, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "SEND_MAX_CONSECUTIVE_FAILURES", 3)
    monkeypatch.setitem(app.config, "RENDER_MAX_STEPS", 10_000)
    campaign, people = make_campaign(count=6, layout=LayoutFactory(html=COSTLY_FOR_ONE))
    smtp_server.script_replies(people[0].email, ["554 5.7.1 Rejected"])
    db.session.execute(update(Subscriber).where(Subscriber.id == people[1].id).values(attributes={"n": 1000}))
    db.session.commit()
    smtp_server.script_replies(people[2].email, ["554 5.7.1 Rejected"])
    tasks.send_batch.run(campaign.id)
    # Two refusals by the relay and one bad row are not three relay failures in a row.
    assert wait_for_status(campaign.id, "sent", timeout=1).status == "sent"
    rows = {row.email: row for row in deliveries(campaign.id)}
    assert "RENDER_MAX_STEPS" in rows[people[1].email].error
    assert ledger.campaign_stats(campaign.id)["failed"] == 3
    assert sorted(message.to for message in smtp_server.messages) == sorted(p.email for p in people[3:])


def test_a_layout_that_fails_for_everyone_pauses_the_campaign(app, db, smtp_server, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "SEND_MAX_CONSECUTIVE_FAILURES", 3)
    monkeypatch.setitem(app.config, "RENDER_MAX_STEPS", 10_000)
    campaign, people = make_campaign(count=6, layout=LayoutFactory(html=COSTLY_FOR_ONE))
    db.session.execute(
        update(Subscriber).where(Subscriber.id.in_([p.id for p in people])).values(attributes={"n": 1000})
    )
    db.session.commit()
    tasks.send_batch.run(campaign.id)
    paused = wait_for_status(campaign.id, "paused", timeout=1)
    assert "3 messages in a row could not be built" in paused.status_reason
    assert "RENDER_MAX_STEPS" in paused.status_reason
    assert smtp_server.messages == []


def test_send_tasks_have_soft_and_hard_time_limits_above_the_run_length(app) -> None:
    send_batch = app.extensions["celery"].tasks["mailapp.sending.tasks.send_batch"]
    assert app.config["SEND_RUN_SECONDS"] < send_batch.soft_time_limit < send_batch.time_limit
    assert send_batch.time_limit < app.config["SEND_LEASE_SECONDS"] or app.config["TESTING"]


def test_a_send_task_at_its_soft_time_limit_fails_the_stuck_row_and_hands_back_the_rest(
    app, db, smtp_server, monkeypatch
) -> None:
    campaign, people = make_campaign(count=4, layout=LayoutFactory(html=COSTLY_FOR_ONE))
    stuck = people[1]
    real_render = render.CampaignRenderer.render

    def render_until_the_limit(self, recipient, **kwargs):
        if recipient.email == stuck.email:
            raise SoftTimeLimitExceeded  # what Celery raises in the task at its soft limit
        return real_render(self, recipient, **kwargs)

    monkeypatch.setattr(render.CampaignRenderer, "render", render_until_the_limit)
    queued: list[int] = []
    monkeypatch.setattr(tasks.send_batch, "delay", queued.append)
    answer = tasks.send_batch.run(campaign.id)
    assert answer["continued"] is True
    assert queued == [campaign.id]  # a fresh task carries on
    rows = {row.email: row for row in deliveries(campaign.id)}
    assert rows[people[0].email].status == "sent"
    assert rows[stuck.email].status == "failed"
    assert "SEND_TASK_SOFT_TIME_LIMIT" in rows[stuck.email].error
    assert {rows[p.email].status for p in people[2:]} == {"pending"}
    assert all(row.leased_until is None for row in rows.values())
