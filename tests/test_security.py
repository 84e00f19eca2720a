"""Security sweeps over the whole URL map: every non-public endpoint refuses the anonymous, every
state-changing form needs its CSRF token, every page carries the security headers, and uploaded HTML
is only ever shown in a sandboxed iframe whose content route sends `Content-Security-Policy: sandbox`.

The sweeps enumerate app.url_map, so a route added tomorrow is checked without anyone writing a test:
a route without @login_required answers the anonymous with its page (200) or a 404/405 instead of the
redirect to /login, and the sweep fails naming it."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urlparse

import pytest
from flask import Flask
from sqlalchemy import select, text
from werkzeug.routing import AnyConverter, FloatConverter, IntegerConverter, Rule, UUIDConverter

from config import TestConfig
from mailapp.models import Delivery
from tests.factories import (
    CampaignFactory,
    LayoutFactory,
    SubscriberFactory,
    SubscriberListFactory,
)
from tests.side_app import create_app_aside

# Endpoints anyone may reach, each with the reason. Everything else must demand a login (pages) or a
# bearer token (/api/). Add to this list only what a stranger must be able to open.
PUBLIC_ENDPOINTS = {
    "auth.login": "the sign-in page itself",
    "auth.login_code": "the sign-in's second step (the two-factor code): no session before it is passed",
    "auth.forgot_password": "asks for a reset link; answers the same whether or not the address exists",
    "auth.reset_password_page": "opened from the reset email; its signed, single-use token is the check",
    "users.accept_invite": "opened from the invite email; its signed, single-use token is the check",
    "static": "the app's own CSS and JS",
    "bootstrap.static": "Bootstrap's CSS and JS, served locally by Bootstrap-Flask",
    "api.openapi_json": "the API's OpenAPI document: what the README says, no data of the installation",
    "favicon": "the browser tab's icon, which browsers fetch before anyone signs in",
    "media.image": "layout images shown in sent messages; the URL holds the content's SHA-256",
    # (its CORS preflight, api.api_public_subscribe_preflight, answers OPTIONS only: no sweep sends it)
    "api.api_public_subscribe": "websites post signups with their own code (rate-limited, CORS by form)",
}
# Signup pages for visitors and readers: the hosted form (snippets on other sites post to it, so no
# CSRF token can be had), the emailed confirmation link and the preference center, whose signed token
# is the authority. GETs change nothing (tests/test_signup.py).
PUBLIC_SIGNUP_ENDPOINTS = {
    "signup.hosted_form": "the hosted signup page",
    "signup.hosted_submit": "a signup, from the hosted page or a snippet on the marketer's site",
    "signup.thanks": "the hosted thank-you page",
    "signup.altcha_challenge": "a signed ALTCHA challenge for the form's widget (stores nothing)",
    "signup.confirm_page": "the double opt-in link's page (signed, expiring token)",
    "signup.confirm": "the button on that page",
    "signup.preferences": "the preference center (the delivery's signed token)",
    "signup.preferences_save": "its form",
}
# The tracking blueprint's links sit in sent emails and are opened by recipients who have no account:
# open pixel, click redirect, unsubscribe, view in browser. Their signed token is the authentication.
PUBLIC_TRACKING_PREFIXES = ("/o/", "/c/", "/u/", "/v/")
# Email providers post bounces and complaints here; each request proves itself with the provider's
# signature or credentials (tests/webhooks/), never a session, so CSRF does not apply.
PUBLIC_WEBHOOK_ENDPOINTS = {
    "webhooks.ses_notification": "/webhooks/ses",
    "webhooks.sendgrid_events": "/webhooks/sendgrid",
    "webhooks.postmark_bounce": "/webhooks/postmark",
    "webhooks.mailgun_event": "/webhooks/mailgun",
}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def is_public(rule: Rule) -> bool:
    if rule.endpoint in PUBLIC_ENDPOINTS or rule.endpoint in PUBLIC_SIGNUP_ENDPOINTS:
        return True
    if PUBLIC_WEBHOOK_ENDPOINTS.get(rule.endpoint) == rule.rule:
        return True
    return rule.endpoint.startswith("tracking.") and rule.rule.startswith(PUBLIC_TRACKING_PREFIXES)


def is_api(rule: Rule) -> bool:
    return rule.rule.startswith("/api/")


def methods_of(rule: Rule) -> list[str]:
    return sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})


def build_urls(rule: Rule, ids: dict[str, int | str]) -> list[str]:
    """The rule's URLs with dummy arguments: a seeded row's id where the argument names one, else 1 for
    numbers and "x" for strings; one URL per choice of an `any(...)` argument."""
    choices: dict[str, list[object]] = {}
    for name, converter in rule._converters.items():
        if isinstance(converter, IntegerConverter | FloatConverter):
            choices[name] = [ids.get(name, 1)]
        elif isinstance(converter, UUIDConverter):
            choices[name] = [uuid.UUID(int=1)]
        elif isinstance(converter, AnyConverter):
            choices[name] = sorted(converter.items)
        else:
            choices[name] = [ids.get(name, "x")]
    urls = []
    for combination in itertools.product(*choices.values()):
        built = rule.build(dict(zip(choices, combination, strict=True)), append_unknown=False)
        assert built is not None, f"cannot build {rule.rule} from {combination}"
        urls.append(built[1])
    return urls


def all_rules(app: Flask) -> list[Rule]:
    return sorted(app.url_map.iter_rules(), key=lambda rule: (rule.rule, rule.endpoint))


@pytest.fixture
def seeded_ids(app, user, db) -> Iterator[dict[str, int | str]]:
    """One row of each kind (and one dev-inbox message), so routes with ids reach a real object rather
    than a 404."""
    from mailapp.devinbox.store import inbox_for_app

    subscriber = SubscriberFactory()
    mailing_list = SubscriberListFactory(subscribers=[subscriber])
    layout = LayoutFactory()
    campaign = CampaignFactory(layout=layout)
    delivery = Delivery(campaign_id=campaign.id, subscriber_id=subscriber.id, email=subscriber.email)
    db.session.add(delivery)
    db.session.commit()
    inbox = inbox_for_app(app)
    message = (
        b"Subject: Hello\r\nFrom: news@example.com\r\nTo: ana@example.com\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <script>alert(1)</script></p>\r\n"
    )
    ids: dict[str, int | str] = {
        "list_id": mailing_list.id,
        "subscriber_id": subscriber.id,
        "layout_id": layout.id,
        "campaign_id": campaign.id,
        "delivery_id": delivery.id,
        "user_id": user.id,
        "message_id": inbox.save(message),
    }
    db.session.rollback()  # reading the ids began a transaction; on SQLite it holds the write lock
    yield ids
    inbox.delete_all()


def snapshot(db, ignore: frozenset[str] | set[str] = frozenset()) -> dict[str, list[tuple]]:
    """Every row of every table (but those in `ignore`), to prove a refused request wrote nothing."""
    state = {}
    for table in db.metadata.sorted_tables:
        if table.name in ignore:
            continue
        rows = db.session.execute(select(table)).all()
        state[table.name] = sorted(tuple(str(value) for value in row) for row in rows)
    db.session.rollback()
    return state


def test_public_allow_list_names_real_endpoints(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert set(PUBLIC_ENDPOINTS) | set(PUBLIC_SIGNUP_ENDPOINTS) <= endpoints


def anonymous_failures(rules: list[Rule], client, ids: dict[str, int | str]) -> tuple[int, list[str]]:
    """(requests made, those answered other than 302 to /login for pages or 401 JSON for the API)."""
    # Forms carry a CSRF token from the anonymous session, so the request gets past CSRF and it is the
    # login requirement that must answer.
    token = client.csrf_token("/login")
    checked, failures = 0, []
    for rule in rules:
        if is_public(rule):
            continue
        for url, method in itertools.product(build_urls(rule, ids), methods_of(rule)):
            response = client.open(url, method=method, headers={"X-CSRFToken": token})
            response.get_data()
            checked += 1
            if is_api(rule):
                body = response.get_json(silent=True) or {}
                code = (body.get("error") or {}).get("code")
                if response.status_code != 401 or code != "unauthorized":
                    failures.append(f"{method} {url} ({rule.endpoint}): {response.status_code} {code}")
            else:
                location = urlparse(response.headers.get("Location", "")).path
                if response.status_code != 302 or location != "/login":
                    status = response.status_code
                    failures.append(f"{method} {url} ({rule.endpoint}): {status} to {location!r}")
    return checked, failures


def csrf_failures(rules: list[Rule], client, ids: dict[str, int | str]) -> tuple[int, list[str]]:
    """(requests made, state-changing form requests without a token that were not refused with 400)."""
    checked, failures = 0, []
    for rule in rules:
        if (is_api(rule) or rule.endpoint.startswith("tracking.") or rule.endpoint in PUBLIC_WEBHOOK_ENDPOINTS
                or rule.endpoint in PUBLIC_SIGNUP_ENDPOINTS):
            continue
        methods = sorted(set(methods_of(rule)) & STATE_CHANGING)
        for url, method in itertools.product(build_urls(rule, ids), methods):
            response = client.open(url, method=method, data={"name": "changed", "confirm": "y"})
            checked += 1
            if response.status_code != 400 or "CSRF token" not in response.get_data(as_text=True):
                failures.append(f"{method} {url} ({rule.endpoint}): {response.status_code}")
    return checked, failures


def test_every_non_public_endpoint_refuses_the_anonymous(app, client, seeded_ids):
    checked, failures = anonymous_failures(all_rules(app), client, seeded_ids)
    assert not failures, "reachable without signing in:\n" + "\n".join(failures)
    assert checked >= 3


def test_every_state_changing_form_needs_a_csrf_token(app, db, auth_client, seeded_ids):
    before = snapshot(db)
    checked, failures = csrf_failures(all_rules(app), auth_client, seeded_ids)
    assert not failures, "accepted without a CSRF token:\n" + "\n".join(failures)
    assert checked >= 2
    assert snapshot(db) == before
    # Sign-out too needs the token: the session survives the forged POST /logout.
    assert auth_client.get("/").status_code == 200


def test_the_sweeps_catch_a_route_added_without_protection(app, monkeypatch):
    """A throwaway app with one page wrongly declared public, one CSRF-exempt form and one open API
    route: the same sweeps name all three (so the tests above can fail)."""

    from mailapp.auth import permissions
    from mailapp.web_extensions import csrf

    config = TestConfig()
    config.SQLALCHEMY_DATABASE_URI = app.config["SQLALCHEMY_DATABASE_URI"]
    config.CELERY_BROKER_URL = app.config["CELERY_BROKER_URL"]
    careless = create_app_aside(config)

    @careless.post("/campaigns/<int:campaign_id>/forgotten")
    @csrf.exempt
    def forgotten(campaign_id: int) -> str:
        return "done"

    # Every page is signed-in only unless declared public: a careless declaration is the way to open one.
    monkeypatch.setitem(permissions.ENDPOINT_NEEDS, "forgotten", permissions.PUBLIC)

    # Under /api/ but outside the api blueprint, so its bearer check does not run.
    careless.add_url_rule("/api/v1/forgotten", "forgotten_api", lambda: {"items": []})
    careless.test_client_class = type(app.test_client())
    with careless.app_context():
        new_rules = [rule for rule in careless.url_map.iter_rules() if "forgotten" in rule.rule]
        _, anonymous = anonymous_failures(new_rules, careless.test_client(), {})
        _, forged = csrf_failures(new_rules, careless.test_client(), {})
    assert sorted(line.split(" (")[0] for line in anonymous) == [
        "GET /api/v1/forgotten", "POST /campaigns/1/forgotten"
    ]
    assert [line.split(" (")[0] for line in forged] == ["POST /campaigns/1/forgotten"]


class _IframeFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.iframes: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "iframe":
            self.iframes.append(dict(attrs))


def html_pages(app: Flask, client, ids: dict[str, int | str]):
    """(url, endpoint, response) of every page a signed-in user can open that answers 200 HTML."""
    for rule in all_rules(app):
        if "GET" not in (rule.methods or set()) or is_api(rule) or is_public(rule):
            continue
        for url in build_urls(rule, ids):
            response = client.get(url)
            # Read every body, downloads too: a streamed response must finish inside this request.
            response.get_data()
            response.close()
            if response.mimetype == "text/html" and response.status_code == 200:
                yield url, rule.endpoint, response


def _csp_directives(header: str) -> dict[str, str]:
    directives = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            directives[name.lower()] = value.strip()
    return directives


def test_every_page_sends_the_security_headers(app, auth_client, seeded_ids):
    checked, failures = 0, []
    for url, _endpoint, response in html_pages(app, auth_client, seeded_ids):
        checked += 1
        csp = _csp_directives(response.headers.get("Content-Security-Policy", ""))
        if response.headers.get("X-Content-Type-Options") != "nosniff":
            failures.append(f"{url}: no X-Content-Type-Options: nosniff")
        if "sandbox" in csp:
            continue  # uploaded HTML shown in a frame: checked by the iframe test below
        if csp.get("script-src") != "'self'":
            failures.append(f"{url}: script-src is {csp.get('script-src')!r}")
        if "frame-ancestors" not in csp:
            failures.append(f"{url}: no frame-ancestors")
        if csp.get("object-src") != "'none'":
            failures.append(f"{url}: object-src is {csp.get('object-src')!r}")
    assert not failures, "\n".join(failures)
    assert checked >= 2


def test_anonymous_answers_carry_the_headers_too(client):
    for url in ("/login", "/"):
        response = client.get(url)
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_uploaded_html_is_only_shown_in_sandboxed_frames(app, auth_client, seeded_ids):
    """Every iframe on every page is sandboxed without allow-scripts/allow-same-origin, and the route it
    loads sends a CSP `sandbox` of its own, so opening the frame's URL directly is just as inert."""
    frames: dict[str, str] = {}
    failures = []
    for url, endpoint, response in html_pages(app, auth_client, seeded_ids):
        finder = _IframeFinder()
        finder.feed(response.get_data(as_text=True))
        for iframe in finder.iframes:
            sandbox = iframe.get("sandbox")
            if sandbox is None:
                failures.append(f"{url}: iframe {iframe.get('src')} has no sandbox attribute")
            elif {"allow-scripts", "allow-same-origin"} & set(sandbox.split()):
                failures.append(f"{url}: iframe sandbox={sandbox!r} lets its content run or escape")
            if iframe.get("src"):
                frames[iframe["src"]] = endpoint
    for src, page in frames.items():
        response = auth_client.get(src)
        csp = _csp_directives(response.headers.get("Content-Security-Policy", ""))
        if "sandbox" not in csp or "allow-scripts" in csp.get("sandbox", ""):
            policy = response.headers.get("Content-Security-Policy")
            failures.append(f"{src} (framed by {page}): CSP is {policy!r}")
    assert not failures, "\n".join(failures)
    # The pages that show uploaded or received HTML must have been among those checked.
    for page in ("layouts.edit", "devinbox.show", "campaigns.show"):
        if page in app.view_functions:
            assert page in frames.values(), f"{page} shows no framed preview"


def test_snapshot_sees_writes(db):
    """The CSRF sweep's "nothing changed" check must be able to see a change."""
    before = snapshot(db)
    LayoutFactory()
    assert snapshot(db) != before
    assert db.session.scalar(text("SELECT count(*) FROM layouts")) == 1
