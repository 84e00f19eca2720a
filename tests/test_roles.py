"""Roles, enforced everywhere: sweeps over the whole URL map for each role (owner, editor, viewer, viewer
with the export grant) and each API token role. Every endpoint answers 403 (the "Your role (...)
cannot ..." page, or the API's error shape with code `forbidden`) when the role is below the need
declared for it in mailapp/auth/permissions.py, and something else when the role is enough. An
endpoint with no declaration is refused to everyone, so the owner's sweep names it."""

from __future__ import annotations

import itertools
from urllib.parse import urlparse

import pytest
from werkzeug.routing import Rule

from mailapp.auth import permissions
from mailapp.auth.permissions import need_for
from mailapp.auth.services import create_api_token, create_user
from mailapp.models import Role, User
from tests.auth_fixtures import throwaway_app
from tests.conftest import TEST_PASSWORD
from tests.test_security import (
    PUBLIC_ENDPOINTS,
    PUBLIC_SIGNUP_ENDPOINTS,
    PUBLIC_WEBHOOK_ENDPOINTS,
    all_rules,
    build_urls,
    is_api,
    methods_of,
    seeded_ids,
)

__all__ = ["seeded_ids"]

# The user's own account pages: every signed-in user may use them, whatever the role.
OWN_ACCOUNT_WRITES = {
    "auth.change_password_page", "auth.two_factor_enrol", "auth.two_factor_disable", "auth.create_token",
    "auth.revoke_token_page", "auth.logout", "auth.account",
}
# Signing out would end the sweep's session; it needs no role beyond being signed in.
SKIPPED = {"auth.logout"}


def _signed_in(app, email: str, role: Role, *, can_export: bool = False, db):
    user = create_user(email, TEST_PASSWORD, role=role)
    user.can_export = can_export
    db.session.commit()
    client = app.test_client()
    assert client.login(email).status_code == 302
    return client


@pytest.fixture
def role_clients(app, db, user):
    """A signed-in client per role; the `user` fixture is the owner."""
    owner = app.test_client()
    assert owner.login(user.email).status_code == 302
    return {
        "viewer": _signed_in(app, "viewer@example.com", Role.VIEWER, db=db),
        "viewer+export": _signed_in(app, "exporter@example.com", Role.VIEWER, can_export=True, db=db),
        "editor": _signed_in(app, "editor@example.com", Role.EDITOR, db=db),
        "owner": owner,
    }


def role_of(label: str) -> tuple[Role, bool]:
    return Role(label.split("+")[0]), label.endswith("+export")


def page_role_failures(app, rules: list[Rule], client, label: str, ids) -> tuple[int, list[str]]:
    """(requests made, answers that disagree with the declared need for this role)."""
    role, can_export = role_of(label)
    token = client.csrf_token("/account/password")
    checked, failures = 0, []
    for rule in rules:
        if is_api(rule) and rule.endpoint.startswith("api."):
            continue
        if rule.endpoint in PUBLIC_ENDPOINTS or rule.endpoint in SKIPPED:
            continue
        for url, method in itertools.product(build_urls(rule, ids), methods_of(rule)):
            need = need_for(rule.endpoint, method, app.view_functions.get(rule.endpoint))
            if need is not None and need.is_public:
                continue
            allowed = need is not None and need.allows(role, can_export=can_export)
            response = client.open(url, method=method, headers={"X-CSRFToken": token})
            body = response.get_data(as_text=True)
            checked += 1
            where = f"{method} {url} ({rule.endpoint}) as {label}"
            location = urlparse(response.headers.get("Location", "")).path
            if need is None:
                failures.append(f"{where}: no role declared (answered {response.status_code})")
            elif allowed and (response.status_code == 403 or location == "/login"):
                failures.append(f"{where}: refused ({response.status_code})")
            elif not allowed and (response.status_code != 403 or f"Your role ({role}) cannot" not in body):
                failures.append(f"{where}: {response.status_code}, not the 403 page")
    return checked, failures


def api_role_failures(app, rules: list[Rule], client, token: str, role: Role, ids) -> tuple[int, list[str]]:
    headers = {"Authorization": f"Bearer {token}"}
    checked, failures = 0, []
    for rule in rules:
        if not is_api(rule) or rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        for url, method in itertools.product(build_urls(rule, ids), methods_of(rule)):
            need = need_for(rule.endpoint, method, app.view_functions.get(rule.endpoint))
            allowed = need is not None and need.allows(role)
            response = client.open(url, method=method, headers=headers)
            code = ((response.get_json(silent=True) or {}).get("error") or {}).get("code")
            checked += 1
            where = f"{method} {url} ({rule.endpoint}) with a {role} token"
            if need is None:
                failures.append(f"{where}: no role declared (answered {response.status_code} {code})")
            elif allowed and response.status_code in (401, 403):
                failures.append(f"{where}: refused ({response.status_code} {code})")
            elif not allowed and (response.status_code != 403 or code != "forbidden"):
                failures.append(f"{where}: {response.status_code} {code}, not 403 forbidden")
    return checked, failures


def test_every_page_answers_each_role_as_its_declared_need_says(app, role_clients, seeded_ids):
    # Least first: the higher roles' allowed writes (deletes) must not hide the lower roles' refusals.
    for label in ("viewer", "viewer+export", "editor", "owner"):
        checked, failures = page_role_failures(app, all_rules(app), role_clients[label], label, seeded_ids)
        assert not failures, "\n".join(failures)
        assert checked > 40


def test_every_api_endpoint_answers_each_token_role_as_its_declared_need_says(
    app, db, user, client, seeded_ids
):
    tokens = {role: create_api_token(user.email, name=str(role), role=role) for role in Role}
    db.session.commit()
    for role in (Role.VIEWER, Role.EDITOR, Role.OWNER):
        checked, failures = api_role_failures(app, all_rules(app), client, tokens[role], role, seeded_ids)
        assert not failures, "\n".join(failures)
        assert checked > 30


def test_every_endpoint_declares_its_need(app):
    undeclared = [
        f"{rule.endpoint} {method}"
        for rule in all_rules(app) for method in methods_of(rule)
        if need_for(rule.endpoint, method, app.view_functions.get(rule.endpoint)) is None
    ]
    assert undeclared == []


def test_only_the_allow_listed_endpoints_are_declared_public(app):
    public = {
        rule.endpoint for rule in all_rules(app) for method in methods_of(rule)
        if (need := need_for(rule.endpoint, method, app.view_functions.get(rule.endpoint))) and need.is_public
    }
    assert {endpoint for endpoint in public if not endpoint.startswith("tracking.")} == (
        set(PUBLIC_ENDPOINTS) | set(PUBLIC_WEBHOOK_ENDPOINTS) | set(PUBLIC_SIGNUP_ENDPOINTS)
    )


def test_a_viewer_changes_nothing_but_their_own_account(app):
    """Independent of the table's areas: every state-changing endpoint a viewer may use is one of the
    user's own account pages (or a preview or a segment count, which store nothing)."""
    writable = set()
    for rule in all_rules(app):
        for method in set(methods_of(rule)) - permissions.READ_METHODS:
            need = need_for(rule.endpoint, method, app.view_functions.get(rule.endpoint))
            if need is not None and not need.is_public and need.allows(Role.VIEWER):
                writable.add(rule.endpoint)
    stores_nothing = {"layouts.preview_draft", "api.api_count_segment", "segments.count"}
    assert writable <= OWN_ACCOUNT_WRITES | stores_nothing


def test_owner_only_areas_and_exports(app):
    def need(endpoint: str, method: str = "GET"):
        return need_for(endpoint, method, app.view_functions.get(endpoint))

    for endpoint in ("users.index", "audit.index", "api.audit_log", "devinbox.index"):
        assert need(endpoint).role is Role.OWNER, endpoint
    for endpoint in ("subscribers.export_list", "reports.deliveries_csv", "api.api_export"):
        assert not need(endpoint).allows(Role.VIEWER)
        assert need(endpoint).allows(Role.VIEWER, can_export=True)


def test_a_refused_page_says_which_role_cannot_do_what(app, role_clients, seeded_ids):
    response = role_clients["viewer"].post_form(f"/campaigns/{seeded_ids['campaign_id']}/delete")
    assert response.status_code == 403
    assert "Your role (viewer) cannot make this change in campaigns" in response.get_data(as_text=True)


def test_a_demoted_owners_tokens_are_capped_at_the_new_role(app, db, user, client, seeded_ids):
    token = create_api_token(user.email, name="ci", role=Role.OWNER)
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/audit", headers=headers).status_code == 200
    create_user("other-owner@example.com", TEST_PASSWORD, role=Role.OWNER)
    db.session.get(User, user.id).role = Role.VIEWER.value
    db.session.commit()
    response = client.get("/api/v1/audit", headers=headers)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
    assert client.get("/api/v1/campaigns", headers=headers).status_code == 200
    created = client.post("/api/v1/lists", json={"name": "x"}, headers=headers)
    assert created.status_code == 403


def test_a_token_cannot_be_created_above_its_users_role(db, user):
    from mailapp.errors import ValidationError

    create_user("editor@example.com", TEST_PASSWORD, role=Role.EDITOR)
    with pytest.raises(ValidationError, match="higher role"):
        create_api_token("editor@example.com", name="x", role=Role.OWNER)


def test_the_role_sweeps_catch_an_undeclared_route(app, monkeypatch):
    """A throwaway app with a page in an area nobody declared and an API route in an undeclared module:
    both are refused even to the owner, and the sweeps name both."""
    from flask import Blueprint

    from mailapp.extensions import db

    careless = throwaway_app(app)
    careless_area = Blueprint("careless_area", __name__)
    careless_area.add_url_rule("/", "index", lambda: "careless")
    careless.register_blueprint(careless_area, url_prefix="/careless-area")
    # Named into the api blueprint, so its bearer check runs; its module is this test's: undeclared.
    careless.add_url_rule("/api/v1/forgotten", "api.forgotten", lambda: {"items": []})
    with careless.app_context():
        owner = create_user("careless-owner@example.com", TEST_PASSWORD, role=Role.OWNER)
        db.session.commit()
        token = create_api_token(owner.email, name="t")
        db.session.commit()
        client = careless.test_client()
        assert client.login(owner.email).status_code == 302
        new_rules = [rule for rule in careless.url_map.iter_rules() if "careless-area" in rule.rule
                     or "forgotten" in rule.rule]
        _, pages = page_role_failures(careless, new_rules, client, "owner", {})
        _, apis = api_role_failures(careless, new_rules, client, token, Role.OWNER, {})
    assert [line.split(" (")[0] for line in pages] == ["GET /careless-area/"]
    assert [line.split(" (")[0] for line in apis] == ["GET /api/v1/forgotten"]
