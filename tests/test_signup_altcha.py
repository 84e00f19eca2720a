"""ALTCHA proof of work on signup forms: the challenge the widget fetches, a solved one taken once, and
a missing, forged, wrong, replayed or expired one refused with a clear error and nothing written, on
the hosted form and the public API alike. Solutions are computed here with the altcha library."""

from __future__ import annotations

import base64
import json

import altcha
import pytest
from sqlalchemy import func, select

from mailapp.extensions import db
from mailapp.models import ConsentRecord, SignupForm, Subscriber
from mailapp.signup import proof_of_work
from tests.factories import SubscriberListFactory
from tests.test_signup import ORIGIN, form_fields, make_form, sign_up


@pytest.fixture(autouse=True)
def cheap_puzzles(app, monkeypatch):
    # A few PBKDF2 iterations per attempt: the checks are the same, the test spends no CPU time.
    monkeypatch.setitem(app.config, "ALTCHA_COST", 10)


def solved(client, slug: str = "news") -> str:
    answer = client.get(f"/s/{slug}/altcha")
    assert answer.status_code == 200
    challenge = altcha.Challenge.from_dict(answer.get_json())
    solution = altcha.solve_challenge(challenge, timeout=10)
    assert solution is not None
    return altcha.Payload(challenge, solution).to_base64()


def tampered(payload: str, change) -> str:
    data = json.loads(base64.b64decode(payload))
    change(data)
    return base64.b64encode(json.dumps(data).encode()).decode()


def signups() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(Subscriber))


def test_a_form_without_altcha_has_no_widget_and_no_challenge(client):
    make_form(double_opt_in=False)
    assert "altcha-widget" not in client.get("/s/news").get_data(as_text=True)
    assert client.get("/s/news/altcha").status_code == 404
    assert sign_up(client).status_code == 303
    assert signups() == 1


def test_the_hosted_page_shows_the_served_widget_and_lets_its_workers_run(client):
    make_form(altcha=True)
    page = client.get("/s/news")
    html = page.get_data(as_text=True)
    assert '<altcha-widget class="d-block mb-3" challenge="/s/news/altcha"' in html
    assert 'src="/static/vendor/altcha/altcha.min.js"' in html
    assert "worker-src 'self' blob:" in page.headers["Content-Security-Policy"]
    assert client.get("/static/vendor/altcha/altcha.min.js").status_code == 200
    challenge = client.get("/s/news/altcha")
    assert challenge.headers["Access-Control-Allow-Origin"] == "*"
    assert challenge.get_json()["parameters"]["algorithm"] == proof_of_work.ALGORITHM


def test_a_solved_challenge_is_taken_once(client):
    make_form(double_opt_in=False, altcha=True)
    payload = solved(client)
    assert sign_up(client, altcha=payload).status_code == 303
    assert signups() == 1
    replay = sign_up(client, email="bob@example.com", altcha=payload)
    assert replay.status_code == 422
    assert proof_of_work.SPENT in replay.get_data(as_text=True)
    assert signups() == 1


@pytest.mark.parametrize(
    ("make_payload", "message"),
    [
        (lambda payload: "", proof_of_work.MISSING),
        (lambda payload: "not base64 at all", proof_of_work.INVALID),
        (lambda payload: "A" * 5000, proof_of_work.INVALID),
        # Signed by someone else: an easier puzzle, the signature recomputed without our key.
        (lambda payload: tampered(payload, lambda data: data["challenge"]["parameters"].update(cost=1)),
         proof_of_work.INVALID),
        (lambda payload: tampered(payload, lambda data: data["challenge"].update(signature="00" * 32)),
         proof_of_work.INVALID),
        # The right challenge, a wrong answer.
        (lambda payload: tampered(payload, lambda data: data["solution"].update(
            counter=data["solution"]["counter"] + 1)), proof_of_work.INVALID),
    ],
    ids=["missing", "garbage", "too-long", "forged-cost", "forged-signature", "wrong-counter"],
)
def test_a_missing_forged_or_wrong_solution_is_a_form_error_and_writes_nothing(client, make_payload, message):
    make_form(altcha=True)
    response = sign_up(client, altcha=make_payload(solved(client)))
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert signups() == 0
    assert db.session.scalar(select(func.count()).select_from(ConsentRecord)) == 0


def test_an_expired_challenge_is_refused(app, client, monkeypatch):
    make_form(altcha=True)
    monkeypatch.setitem(app.config, "ALTCHA_EXPIRY_SECONDS", -1)
    response = sign_up(client, altcha=solved(client))
    assert response.status_code == 422
    assert proof_of_work.EXPIRED in response.get_data(as_text=True)
    assert signups() == 0


def test_the_public_api_checks_the_altcha_payload_too(client):
    make_form(double_opt_in=False, altcha=True)
    missing = client.post("/api/v1/public/subscribe", json={"form": "news", "email": "ana@example.com"},
                          headers={"Origin": ORIGIN})
    assert missing.status_code == 422
    assert missing.get_json()["error"]["details"] == [{"field": "altcha", "message": proof_of_work.MISSING}]
    payload = solved(client)
    body = {"form": "news", "email": "ana@example.com", "altcha": payload}
    assert client.post("/api/v1/public/subscribe", json=body, headers={"Origin": ORIGIN}).status_code == 202
    again = client.post("/api/v1/public/subscribe", json={**body, "email": "bob@example.com"})
    assert again.status_code == 422
    assert signups() == 1


def test_an_editor_turns_altcha_on_and_the_snippet_carries_the_widget(auth_client):
    subscriber_list = SubscriberListFactory()
    db.session.commit()
    response = auth_client.post_form("/signup-forms/new", {**form_fields(subscriber_list.id), "altcha": "y"})
    assert response.status_code == 302
    form = db.session.scalar(select(SignupForm))
    assert form.altcha is True
    page = auth_client.get(f"/signup-forms/{form.id}").get_data(as_text=True)
    # The pasted snippet loads the widget and its challenges from mailapp, by absolute address.
    assert "challenge=&#34;http://mailapp.test/s/garden/altcha&#34;" in page
    assert "src=&#34;http://mailapp.test/static/vendor/altcha/altcha.min.js&#34;" in page
