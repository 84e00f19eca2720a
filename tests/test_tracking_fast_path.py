"""The open pixel's fast path (mailapp/tracking/fast_pixel.py) against the Flask route it stands in
for: the same answer, the same open recorded, forged tokens refused, and the requests it leaves to
Flask."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask, request_started
from sqlalchemy import select
from werkzeug.test import Client, TestResponse

from mailapp.extensions import db
from mailapp.models import Delivery, OpenEvent
from mailapp.sending import tokens
from mailapp.tracking import buffer, fast_pixel, machine
from tests.test_tracking import READER, REMOTE, assert_pixel, count, open_path, stats, tampered
from tests.tracking_fixtures import READER_UA, empty_open_buffer, make_campaign, make_delivery, settle

__all__ = ["empty_open_buffer"]


def flask_only(app: Flask) -> Client:
    """A client of the app without its fast path: the `tracking.open_pixel` route answers."""
    assert isinstance(app.wsgi_app, fast_pixel.OpenPixelFastPath)
    return Client(app.wsgi_app.wsgi_app, TestResponse)


@contextmanager
def flask_requests(app: Flask) -> Iterator[list[str]]:
    """The paths of the requests Flask itself handled while the block ran."""
    seen: list[str] = []

    def started(sender: Flask, **extra: object) -> None:
        from flask import request

        seen.append(request.path)

    request_started.connect(started, app)
    try:
        yield seen
    finally:
        request_started.disconnect(started, app)


def answer(response: TestResponse) -> tuple[str, list[tuple[str, str]], bytes]:
    return response.status, list(response.headers.items()), response.get_data()


@pytest.mark.parametrize("kind", ["valid", "garbage", "empty", "tampered"])
def test_the_fast_path_answers_exactly_what_the_flask_route_answers(app, client, kind):
    delivery = make_delivery(make_campaign())
    token = tokens.make_token("open", delivery.id)
    path = {
        "valid": f"/o/{token}.gif",
        "garbage": "/o/nonsense.gif",
        "empty": "/o/.gif",
        "tampered": f"/o/{tampered(token)[2]}.gif",
    }[kind]
    with flask_requests(app) as handled_by_flask:
        fast = client.get(path, headers=READER)
    assert handled_by_flask == []
    assert_pixel(fast)
    assert answer(fast) == answer(flask_only(app).get(path, headers=READER))


def test_the_fast_path_records_the_same_open_as_the_flask_route(app, client):
    campaign = make_campaign()
    through_fast_path, through_flask = make_delivery(campaign), make_delivery(campaign)
    for agent in (READER_UA, machine.APPLE_MPP_USER_AGENT):
        client.get(open_path(through_fast_path.id), headers={"User-Agent": agent}, environ_base=REMOTE)
        flask_only(app).get(open_path(through_flask.id), headers={"User-Agent": agent}, environ_base=REMOTE)
    settle()

    def events(delivery: Delivery) -> list[tuple]:
        return [
            (event.campaign_id, event.user_agent, event.ip, event.is_machine)
            for event in db.session.scalars(
                select(OpenEvent).where(OpenEvent.delivery_id == delivery.id).order_by(OpenEvent.id)
            )
        ]

    assert events(through_fast_path) == events(through_flask) == [
        (campaign.id, READER_UA, "203.0.113.0", False),
        (campaign.id, machine.APPLE_MPP_USER_AGENT, "203.0.113.0", True),
    ]
    for delivery in (through_fast_path, through_flask):
        db.session.refresh(delivery)
        assert delivery.open_count == 2
        assert delivery.first_opened_at is not None
    s = stats(campaign.id)
    assert (s.opens, s.machine_opens, s.unique_opens) == (4, 2, 2)


def test_the_fast_path_refuses_forged_tokens_and_still_answers_the_gif(app, client):
    delivery = make_delivery(make_campaign())
    good = tokens.make_token("open", delivery.id)
    forged = [
        *tampered(good),
        tokens.make_token("unsubscribe", delivery.id),
        tokens.make_token("click", delivery.id, 0),
    ]
    with flask_requests(app) as handled_by_flask:
        for token in forged:
            assert_pixel(client.get(f"/o/{token}.gif", headers=READER))
    assert handled_by_flask == []
    settle()
    assert count(OpenEvent) == 0
    db.session.refresh(delivery)
    assert delivery.open_count == 0


def test_requests_the_fast_path_is_not_sure_of_go_to_flask(app, client):
    delivery = make_delivery(make_campaign())
    path = open_path(delivery.id)
    with flask_requests(app) as handled_by_flask:
        assert client.head(path, headers=READER).status_code == 200
        assert_pixel(client.get("/o/a/b/c.gif", headers=READER))
        assert_pixel(client.get("/o/%00.gif", headers=READER))
        assert client.post(path).status_code == 405
        assert client.get("/o/x.png").status_code == 404
    assert handled_by_flask == [path, "/o/a/b/c.gif", "/o/\x00.gif", path, "/o/x.png"]
    settle()
    # HEAD (link checkers send it) runs the GET view in Flask, which records nothing for it; the other
    # requests carry no valid token.
    assert count(OpenEvent) == 0


@pytest.mark.parametrize("redis_down", [False, True], ids=["configured store", "redis down"])
def test_an_open_outside_any_app_context_is_recorded(app, redis_down, monkeypatch):
    """gunicorn calls the fast path with no app context: a direct write (embedded default, or Redis
    down) pushes one of its own."""
    if redis_down:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead_port = probe.getsockname()[1]
        monkeypatch.setitem(app.config, "REDIS_URL", f"redis://127.0.0.1:{dead_port}/0")
    delivery = make_delivery(make_campaign())
    path = open_path(delivery.id)
    db.session.commit()  # the request's own session must not wait for this one's SQLite write lock
    answers: list[TestResponse | BaseException] = []

    def fetch() -> None:
        try:
            answers.append(Client(app, TestResponse).get(path, headers=READER))
        except BaseException as error:  # reported by the assertion below
            answers.append(error)
        finally:
            # The thread's own Redis connection, which would otherwise outlive it unclosed.
            if app.config["REDIS_URL"]:
                buffer.appender(buffer.client_for(app.config["REDIS_URL"])).close()

    thread = threading.Thread(target=fetch)
    thread.start()
    thread.join(timeout=30)
    assert len(answers) == 1
    assert isinstance(answers[0], TestResponse), answers
    assert_pixel(answers[0])
    if redis_down or not app.config["REDIS_URL"]:
        assert count(OpenEvent) == 1  # written by the request itself
    else:
        assert settle() == 1
    db.session.refresh(delivery)
    assert delivery.open_count == 1
    assert db.session.scalars(select(OpenEvent.user_agent)).one() == READER_UA

