"""Invites, password reset and change, two-factor sign-in, deactivation, API tokens with roles and
expiry, and the audit log: through the pages, a real Celery worker and a real SMTP server."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, select

from mailapp.auth.services import create_api_token, create_user
from mailapp.models import ApiToken, AuditEntry, Invite, RecoveryCode, Role, User, UserSession, utcnow
from tests.conftest import CSRF_RE, TEST_PASSWORD

NEW_PASSWORD = "a brand new passphrase"
LINK_RE = re.compile(r"http://mailapp\.test(/\S+)")


def audit_actions(db) -> list[str]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def link_in(message) -> str:
    match = LINK_RE.search(message.message.get_content())
    assert match, message.message.get_content()
    return match.group(1)


@pytest.fixture
def mail_to(db, celery_worker, smtp_server):
    """Waits for the system mail (sent by the worker) to one address, so none arrives after the test."""

    def wait(address: str):
        # The worker logs the message in the database: end this test's transaction, which on SQLite
        # holds the write lock (BEGIN IMMEDIATE).
        db.session.rollback()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for message in smtp_server.messages:
                if message.to == address:
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no mail to {address}")

    return wait


def invite(auth_client, email: str, role: str = "editor"):
    return auth_client.post_form("/users/invite", {"email": email, "role": role}, token_page="/users/")


def test_an_invite_is_emailed_and_shown_and_its_link_makes_a_signed_in_user(
    app, db, auth_client, client, mail_to
):
    page = invite(auth_client, "new@example.com", "viewer")
    assert page.status_code == 200
    # The team table shows the stored roles, not the invite form's.
    assert '<option selected value="owner">' in page.get_data(as_text=True)
    shown = re.search(r'data-testid="invite-link">http://mailapp\.test(/\S+?)<', page.get_data(as_text=True))
    message = mail_to("new@example.com")
    assert link_in(message) == shown.group(1)

    invitee = app.test_client()
    form = invitee.get(shown.group(1))
    assert "You are invited as <strong>viewer</strong>" in form.get_data(as_text=True)
    token = invitee.csrf_token(shown.group(1))
    accepted = invitee.post(shown.group(1), data={
        "name": "New Person", "password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD, "csrf_token": token,
    })
    assert accepted.status_code == 302
    assert "viewer" in invitee.get("/").get_data(as_text=True)
    user = db.session.scalar(select(User).where(User.email == "new@example.com"))
    assert (user.role, user.name) == ("viewer", "New Person")
    # Single use: the same link now refuses.
    assert app.test_client().get(shown.group(1)).status_code == 400
    assert {"user.invite", "user.invite_accept", "auth.sign_in"} <= set(audit_actions(db))


def test_an_expired_or_forged_invite_link_is_refused(app, db, auth_client, mail_to):
    page = invite(auth_client, "late@example.com").get_data(as_text=True)
    mail_to("late@example.com")
    path = re.search(r'data-testid="invite-link">http://mailapp\.test(/\S+?)<', page).group(1)
    assert app.test_client().get(path[:-3] + "abc").status_code == 400
    assert app.test_client().get(path).status_code == 200
    db.session.scalar(select(Invite)).expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert app.test_client().get(path).status_code == 400


def test_an_invite_for_an_existing_user_is_a_form_error(auth_client, user, db):
    response = invite(auth_client, user.email)
    assert response.status_code == 409
    assert "already exists" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Invite)) == 0


def test_forgot_password_answers_the_same_for_unknown_addresses_and_resets_once(
    app, db, client, user, smtp_server, mail_to
):
    def ask(email):
        token = client.csrf_token("/forgot-password")
        return client.post("/forgot-password", data={"email": email, "csrf_token": token},
                           follow_redirects=True).get_data(as_text=True)

    unknown, known = ask("nobody@example.com"), ask(user.email)
    assert "If that address has an account" in unknown
    # The same page but for the form's fresh CSRF token, whose signature carries the second it was made.
    assert CSRF_RE.sub("", unknown) == CSRF_RE.sub("", known)
    path = link_in(mail_to(user.email))
    assert [message.to for message in smtp_server.messages] == [user.email]

    other_browser = app.test_client()
    assert other_browser.login(user.email).status_code == 302
    token = client.csrf_token(path)
    done = client.post(path, data={
        "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD, "csrf_token": token,
    })
    assert done.status_code == 302
    assert other_browser.get("/").status_code == 302  # signed out everywhere
    assert client.login(user.email, TEST_PASSWORD).status_code == 200  # the old password fails
    assert client.login(user.email, NEW_PASSWORD).status_code == 302
    assert app.test_client().get(path).status_code == 400  # the link died with the old password
    assert {"user.password_reset_request", "user.password_reset"} <= set(audit_actions(db))


def test_reset_requests_are_throttled(app, client, user, smtp_server, mail_to, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_ATTEMPTS_PER_ACCOUNT", 2)
    statuses = []
    for _ in range(4):
        token = client.csrf_token("/forgot-password")
        statuses.append(client.post("/forgot-password", data={"email": user.email, "csrf_token": token})
                        .status_code)
    assert statuses == [302, 302, 429, 429]
    mail_to(user.email)
    assert len(smtp_server.wait_for(2)) == 2


def test_changing_the_password_ends_the_other_sessions(app, db, auth_client, user):
    other = app.test_client()
    assert other.login(user.email).status_code == 302
    response = auth_client.post_form("/account/password", {
        "current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD,
    }, token_page="/account/password")
    assert response.status_code == 302
    assert other.get("/").status_code == 302
    assert auth_client.get("/").status_code == 200
    assert "user.password_change" in audit_actions(db)


def enrol(client) -> tuple[str, list[str]]:
    page = client.get("/account/two-factor/enrol").get_data(as_text=True)
    assert "<svg" in page
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', page).group(1)
    response = client.post_form("/account/two-factor/enrol", {"code": pyotp.TOTP(secret).now()},
                                token_page="/account/two-factor/enrol")
    codes = re.findall(r"<li>([0-9a-f]{5}-[0-9a-f]{5})</li>", response.get_data(as_text=True))
    return secret, codes


def test_two_factor_sign_in_needs_the_code_after_the_password_and_refuses_a_replay(
    app, db, auth_client, user
):
    secret, codes = enrol(auth_client)
    assert len(codes) == 10
    db.session.expire_all()
    stored = db.session.get(User, user.id)
    assert stored.totp_secret_sealed
    assert secret not in stored.totp_secret_sealed
    assert db.session.scalar(select(func.count()).select_from(RecoveryCode)) == 10

    browser = app.test_client()
    response = browser.login(user.email)
    assert response.headers["Location"].endswith("/login/code")
    assert browser.get("/").status_code == 302  # no session before the code
    sessions_before = db.session.scalar(select(func.count()).select_from(UserSession))
    # The code the enrolment took cannot be used again in its window.
    used = pyotp.TOTP(secret).now()
    replay = browser.post_form("/login/code", {"code": used}, token_page="/login/code")
    assert "already used" in replay.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(UserSession)) == sessions_before
    later = pyotp.TOTP(secret).at(time.time() + 30)
    assert browser.post_form("/login/code", {"code": later}, token_page="/login/code").status_code == 302
    assert browser.get("/").status_code == 200
    assert "auth.sign_in_failed" in audit_actions(db)


def test_a_recovery_code_signs_in_once_and_disabling_needs_a_code(app, db, auth_client, user):
    _, codes = enrol(auth_client)
    for expected in (302, 200):
        browser = app.test_client()
        browser.login(user.email)
        response = browser.post_form("/login/code", {"code": codes[0]}, token_page="/login/code")
        assert response.status_code == expected
    wrong = auth_client.post_form("/account/two-factor/disable", {"code": "000000"},
                                  token_page="/account/two-factor", follow_redirects=True)
    assert "wrong" in wrong.get_data(as_text=True)
    assert db.session.get(User, user.id).has_two_factor
    auth_client.post_form("/account/two-factor/disable", {"code": codes[1]}, token_page="/account/two-factor")
    db.session.expire_all()
    assert not db.session.get(User, user.id).has_two_factor
    assert {"user.two_factor_enable", "user.two_factor_disable"} <= set(audit_actions(db))


def test_the_second_step_expires(app, user, auth_client, monkeypatch):
    enrol(auth_client)
    browser = app.test_client()
    browser.login(user.email)
    monkeypatch.setitem(app.config, "TWO_FACTOR_STEP_SECONDS", -1)
    response = browser.get("/login/code")
    assert response.headers["Location"].endswith("/login")


def test_when_two_factor_is_required_users_without_it_can_only_enrol(app, db, auth_client, user):
    response = auth_client.post_form("/users/two-factor-policy", {"required": "y"}, token_page="/users/")
    assert response.status_code == 302
    create_user("plain@example.com", TEST_PASSWORD, role=Role.EDITOR)
    db.session.commit()
    plain = app.test_client()
    plain.login("plain@example.com")
    assert plain.get("/campaigns/").headers["Location"].endswith("/account/two-factor")
    assert plain.get("/account/two-factor").status_code == 200
    enrol(plain)
    assert plain.get("/campaigns/").status_code == 200


def test_deactivating_a_user_ends_their_sessions_and_tokens_and_sign_in(app, db, auth_client, client):
    member = create_user("leaver@example.com", TEST_PASSWORD, role=Role.EDITOR)
    db.session.commit()
    token = create_api_token(member.email, name="script")
    db.session.commit()
    browser = app.test_client()
    assert browser.login(member.email).status_code == 302
    response = auth_client.post_form(f"/users/{member.id}/deactivate", token_page="/users/")
    assert response.status_code == 302
    assert browser.get("/").status_code == 302
    assert client.get("/api/v1/lists", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert app.test_client().login(member.email).status_code == 200  # refused like a wrong password
    assert "user.deactivate" in audit_actions(db)


def test_the_last_owner_cannot_be_demoted_or_deactivated(db, auth_client, user):
    for url, data in ((f"/users/{user.id}/role", {"role": "viewer"}), (f"/users/{user.id}/deactivate", {})):
        page = auth_client.post_form(url, data, token_page="/users/", follow_redirects=True)
        assert "last owner" in page.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, user.id).role == "owner"


def test_an_owner_changes_a_role_and_the_export_grant(db, auth_client):
    member = create_user("member@example.com", TEST_PASSWORD, role=Role.EDITOR)
    db.session.commit()
    auth_client.post_form(
        f"/users/{member.id}/role", {"role": "viewer", "can_export": "y"}, token_page="/users/"
    )
    db.session.expire_all()
    changed = db.session.get(User, member.id)
    assert (changed.role, changed.can_export) == ("viewer", True)
    assert "user.role_change" in audit_actions(db)


def test_tokens_page_creates_a_token_shown_once_and_revokes_it(db, auth_client, client):
    page = auth_client.post_form("/account/tokens", {"name": "ci", "role": "viewer", "expires_in_days": "7"},
                                 token_page="/account/tokens").get_data(as_text=True)
    token = re.search(r'data-testid="new-token">(mk_[\w-]+)<', page).group(1)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/lists", headers=headers).status_code == 200
    assert client.post("/api/v1/lists", json={"name": "x"}, headers=headers).status_code == 403
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == "ci"))
    assert row.role == "viewer"
    assert row.expires_at is not None
    assert token not in auth_client.get("/account/tokens").get_data(as_text=True)
    auth_client.post_form(f"/account/tokens/{row.id}/revoke", token_page="/account/tokens")
    response = client.get("/api/v1/lists", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert [a for a in audit_actions(db) if a.startswith("token.")] == ["token.create", "token.revoke"]


def test_an_expired_token_is_refused_with_401(db, user, client):
    token = create_api_token(user.email, name="short", expires_at=utcnow() + timedelta(minutes=5))
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/lists", headers=headers).status_code == 200
    db.session.scalar(select(ApiToken)).expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert client.get("/api/v1/lists", headers=headers).status_code == 401


def test_last_used_is_written_at_most_once_a_minute(db, user, client):
    token = create_api_token(user.email, name="busy")
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    client.get("/api/v1/lists", headers=headers)
    db.session.expire_all()
    first = db.session.scalar(select(ApiToken.last_used_at))
    assert first is not None
    client.get("/api/v1/lists", headers=headers)
    db.session.expire_all()
    assert db.session.scalar(select(ApiToken.last_used_at)) == first
    db.session.scalar(select(ApiToken)).last_used_at = first - timedelta(seconds=61)
    db.session.commit()
    client.get("/api/v1/lists", headers=headers)
    db.session.expire_all()
    assert db.session.scalar(select(ApiToken.last_used_at)) > first


def test_the_cli_token_takes_a_role(runner, db, user):
    result = runner.invoke(args=["tokens", "create", user.email, "--role", "viewer"])
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(ApiToken.role)) == "viewer"


def test_the_audit_log_is_searchable_on_its_page_and_through_the_api(db, auth_client, api, user):
    auth_client.post_form("/lists", {"name": "Newsletter"}, token_page="/lists")
    api.post("/api/v1/lists", json={"name": "From a script"})
    entries = api.get("/api/v1/audit?action=list.").get_json()
    assert entries["total"] == 2
    newest = entries["items"][0]
    who = (newest["action"], newest["user_email"], newest["token_name"])
    assert who == ("list.create", user.email, "tests")
    assert api.get("/api/v1/audit?user=nobody").get_json()["total"] == 0
    assert api.get("/api/v1/audit?since=2999-01-01").get_json()["total"] == 0
    bad = api.get("/api/v1/audit?since=yesterday")
    assert bad.status_code == 422
    assert bad.get_json()["error"]["details"][0]["field"] == "since"
    page = auth_client.get("/audit/?action=list.create").get_data(as_text=True)
    assert "Newsletter" in page
    assert "From a script" in page


@pytest.mark.parametrize("kind", ["sign_in", "sign_in_failed"])
def test_sign_ins_and_failures_are_audited(db, client, user, kind):
    client.login(user.email, TEST_PASSWORD if kind == "sign_in" else "wrong")
    assert audit_actions(db) == [f"auth.{kind}"]
