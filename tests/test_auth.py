"""Login, logout, the login requirement, CLI users and tokens, and the API's bearer check."""

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from mailapp.auth.next_url import safe_next_path
from mailapp.models import ApiToken, User
from tests.auth_fixtures import throwaway_app
from tests.conftest import TEST_PASSWORD


def test_pages_redirect_anonymous_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_login_with_right_password_reaches_dashboard(auth_client):
    page = auth_client.get("/")
    assert page.status_code == 200
    assert "Dashboard" in page.get_data(as_text=True)


def test_login_with_wrong_password_is_refused(client, user):
    response = client.login(user.email, "wrong password")
    assert response.status_code == 200
    assert "Wrong email or password" in response.get_data(as_text=True)


def test_login_without_csrf_token_is_refused(client, user):
    response = client.post("/login", data={"email": user.email, "password": "correct horse battery"})
    assert response.status_code == 400


def test_passwords_are_hashed_with_scrypt(user):
    assert user.password_hash.startswith("scrypt:")


def test_session_cookie_is_httponly_and_lax(client, user):
    response = client.login(user.email)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_logins_are_throttled(client, user):
    statuses = [client.login(user.email, "wrong").status_code for _ in range(12)]
    assert 429 in statuses


def test_cli_creates_user_and_token(runner, db):
    result = runner.invoke(args=["users", "create", "cli@example.com", "--password", "longenough1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["tokens", "create", "cli@example.com"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    stored = db.session.scalars(select(ApiToken)).one()
    assert token not in stored.token_hash
    assert db.session.scalar(select(User.email)) == "cli@example.com"


def test_ensure_admin_generates_a_password_once(runner, db, monkeypatch):
    monkeypatch.delenv("MAILAPP_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("MAILAPP_ADMIN_EMAIL", "boss@example.com")
    first = runner.invoke(args=["users", "ensure-admin"])
    assert "Generated password" in first.output
    second = runner.invoke(args=["users", "ensure-admin"])
    assert "already exists" in second.output


def test_api_refuses_missing_and_forged_tokens(client, api):
    assert client.get("/api/v1/lists").status_code == 401
    forged = client.get("/api/v1/lists", headers={"Authorization": "Bearer mk_forged"})
    assert forged.status_code == 401
    assert forged.get_json()["error"]["code"] == "unauthorized"


# -- where sign-in leads: `next` must stay on this site ----------------------------------------------


def sign_in_with_next(client, email: str, next_value: str):
    token = client.csrf_token("/login")
    return client.post(
        "/login", query_string={"next": next_value},
        data={"email": email, "password": TEST_PASSWORD, "csrf_token": token},
    )


@pytest.mark.parametrize(
    "next_value",
    [
        "/\t/evil.example/x",  # what ?next=/%09/evil.example/x decodes to: browsers drop the tab
        "//evil.example/x",
        "/\\evil.example/x",  # browsers read the backslash as a slash
        "\\\\evil.example/x",
        "https://evil.example/x",
        "http:/evil.example",
        "javascript:alert(1)",
        "/\r\n/evil.example",
        "/\n/evil.example",
        "evil.example/x",
        " //evil.example",
        "//[::1",
    ],
)
def test_sign_in_never_leads_off_the_site(client, user, next_value):
    response = sign_in_with_next(client, user.email, next_value)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_a_nul_in_next_is_refused_and_leads_nowhere(client, user):
    # Every query string with a NUL is a 422 before the view runs: the sign-in neither happens nor
    # redirects.
    response = sign_in_with_next(client, user.email, "/\x00x")
    assert response.status_code == 422
    assert "Location" not in response.headers


def test_a_newline_in_next_neither_fails_nor_splits_the_response(client, user):
    response = sign_in_with_next(client, user.email, "/campaigns/\r\nSet-Cookie: evil=1")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/campaigns/")
    assert not any("evil" in cookie for cookie in response.headers.getlist("Set-Cookie"))
    assert client.get_cookie("evil") is None


@pytest.mark.parametrize("next_value", ["/campaigns/", "/reports/?page=2", "/subscribers#top"])
def test_sign_in_returns_to_the_page_asked_for(client, user, next_value):
    response = sign_in_with_next(client, user.email, next_value)
    assert response.status_code == 302
    assert response.headers["Location"] == next_value


def test_the_login_redirect_for_a_closed_page_brings_the_user_back(client, user):
    login_url = client.get("/campaigns/").headers["Location"]
    next_value = parse_qs(urlsplit(login_url).query)["next"][0]
    assert sign_in_with_next(client, user.email, next_value).headers["Location"] == "/campaigns/"


@given(next_value=st.text(max_size=40))
@settings(max_examples=300, deadline=None)
def test_safe_next_path_keeps_only_paths_a_browser_reads_as_this_site(next_value):
    kept = safe_next_path(next_value)
    if kept is None:
        return
    # What a browser makes of it: the tabs and newlines gone, backslashes read as slashes.
    as_browser_reads = urlsplit(kept.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/"))
    assert not as_browser_reads.scheme
    assert not as_browser_reads.netloc
    assert as_browser_reads.path.startswith("/")
    assert not as_browser_reads.path.startswith("//")
    assert all(ord(char) >= 0x20 for char in kept)


# -- server-side sessions ----------------------------------------------------------------------------


def copy_cookie(source, target, name: str) -> None:
    cookie = source.get_cookie(name)
    assert cookie is not None, f"no {name} cookie"
    target.set_cookie(name, cookie.value)


def sign_in_remembered(client, email: str, password: str = TEST_PASSWORD):
    token = client.csrf_token("/login")
    return client.post(
        "/login", data={"email": email, "password": password, "remember": "y", "csrf_token": token}
    )


def test_a_copied_session_cookie_stops_working_after_sign_out(app, user):
    browser, thief = app.test_client(), app.test_client()
    assert browser.login(user.email).status_code == 302
    copy_cookie(browser, thief, "session")
    assert thief.get("/").status_code == 200

    browser.post_form("/logout")

    assert browser.get("/").status_code == 302
    refused = thief.get("/")
    assert refused.status_code == 302
    assert urlsplit(refused.headers["Location"]).path == "/login"


def test_a_copied_remember_cookie_stops_working_after_sign_out(app, user):
    browser, thief = app.test_client(), app.test_client()
    assert sign_in_remembered(browser, user.email).status_code == 302
    copy_cookie(browser, thief, "remember_token")
    assert thief.get("/").status_code == 200  # signed in by the remember cookie alone

    browser.post_form("/logout")

    fresh_thief = app.test_client()
    copy_cookie(thief, fresh_thief, "remember_token")
    assert fresh_thief.get("/").status_code == 302


def test_signing_out_one_browser_keeps_the_others_signed_in(app, user):
    laptop, phone = app.test_client(), app.test_client()
    laptop.login(user.email)
    phone.login(user.email)
    laptop.post_form("/logout")
    assert laptop.get("/").status_code == 302
    assert phone.get("/").status_code == 200


def test_each_sign_in_gets_a_new_remember_cookie(app, user):
    first, second = app.test_client(), app.test_client()
    sign_in_remembered(first, user.email)
    sign_in_remembered(second, user.email)
    assert first.get_cookie("remember_token").value != second.get_cookie("remember_token").value


def test_a_session_is_refused_once_its_server_side_lifetime_is_over(app, db, auth_client):
    from mailapp.models import UserSession

    assert auth_client.get("/").status_code == 200
    db.session.execute(update(UserSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    db.session.commit()
    assert auth_client.get("/").status_code == 302


def test_a_session_cookie_from_before_server_side_sessions_is_refused(app, user):
    """The old cookies named just the user id; signed with the right key, they must still open nothing."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = str(user.id)
        session["_fresh"] = True
    assert client.get("/").status_code == 302


def test_remember_cookie_lasts_at_most_thirty_days_and_is_httponly_and_lax(app, client, user):
    assert app.config["REMEMBER_COOKIE_DURATION"] <= timedelta(days=30)
    response = sign_in_remembered(client, user.email)
    remember = next(
        value for value in response.headers.getlist("Set-Cookie") if value.startswith("remember_token=")
    )
    attributes = {part.strip().split("=")[0].lower(): part for part in remember.split(";")}
    assert "httponly" in attributes
    assert attributes["samesite"].strip() == "SameSite=Lax"
    expires = parsedate_to_datetime(attributes["expires"].split("=", 1)[1])
    assert expires <= datetime.now(UTC) + timedelta(days=30, minutes=1)


def test_cookies_are_secure_when_the_public_url_is_https(app):
    https_app = throwaway_app(app, PUBLIC_URL="https://news.example.com")
    assert https_app.config["SESSION_COOKIE_SECURE"] is True
    assert https_app.config["REMEMBER_COOKIE_SECURE"] is True
    with https_app.app_context():
        from mailapp.auth.services import create_user
        from mailapp.extensions import db

        create_user("secure@example.com", TEST_PASSWORD)
        db.session.commit()
        client = https_app.test_client()
        response = sign_in_remembered(client, "secure@example.com")
        db.session.remove()
    cookies = response.headers.getlist("Set-Cookie")
    assert {cookie.split("=")[0] for cookie in cookies} >= {"session", "remember_token"}
    for cookie in cookies:
        assert "; Secure" in cookie, cookie
        assert "SameSite=Lax" in cookie, cookie
    assert app.config["SESSION_COOKIE_SECURE"] is False  # http://mailapp.test


# -- changing and resetting passwords ----------------------------------------------------------------


def change_password(client, current: str, new: str, confirm: str | None = None):
    return client.post_form(
        "/account/password",
        {"current_password": current, "new_password": new, "confirm_password": confirm or new},
        token_page="/account/password",
    )


def test_changing_the_password_signs_out_every_other_browser_and_remember_cookie(app, user):
    here, elsewhere, remembered = app.test_client(), app.test_client(), app.test_client()
    here.login(user.email)
    elsewhere.login(user.email)
    sign_in_remembered(remembered, user.email)
    remember_only = app.test_client()
    copy_cookie(remembered, remember_only, "remember_token")
    assert remember_only.get("/").status_code == 200
    stolen = app.test_client()
    copy_cookie(here, stolen, "session")

    response = change_password(here, TEST_PASSWORD, "a brand new password")

    assert response.status_code == 302
    assert here.get("/").status_code == 200  # the browser that changed it stays signed in
    for other in (elsewhere, remembered, stolen):
        assert other.get("/").status_code == 302
    fresh = app.test_client()
    copy_cookie(remember_only, fresh, "remember_token")
    assert fresh.get("/").status_code == 302
    assert app.test_client().login(user.email, "a brand new password").status_code == 302
    assert "Wrong email or password" in app.test_client().login(user.email).get_data(as_text=True)


def test_the_change_password_page_is_reached_from_the_account_page_in_the_navigation(auth_client):
    page = auth_client.get("/").get_data(as_text=True)
    assert 'href="/account/"' in page
    assert 'href="/account/password"' in auth_client.get("/account/").get_data(as_text=True)
    assert auth_client.get("/account/password").status_code == 200


@pytest.mark.parametrize(
    ("current", "new", "confirm", "field_error"),
    [
        ("wrong password", "a brand new password", None, "The current password is wrong."),
        (TEST_PASSWORD, "short", None, "Password must be at least 8 characters."),
        (TEST_PASSWORD, "a brand new password", "another new password", "The two new passwords differ."),
    ],
)
def test_a_refused_password_change_says_why_and_changes_nothing(
    app, db, auth_client, user, current, new, confirm, field_error
):
    other = app.test_client()
    other.login(user.email)
    before = user.password_hash
    response = change_password(auth_client, current, new, confirm)
    assert response.status_code == 200
    assert field_error in response.get_data(as_text=True)
    db.session.refresh(user)
    assert user.password_hash == before
    assert other.get("/").status_code == 200


def test_cli_set_password_resets_it_and_signs_the_user_out_everywhere(app, runner, user):
    browser = app.test_client()
    sign_in_remembered(browser, user.email)
    typed = "reset password 1\nreset password 1\n"
    result = runner.invoke(args=["users", "set-password", user.email], input=typed)
    assert result.exit_code == 0, result.output
    assert "reset password 1" not in result.output  # the prompt hides what is typed
    assert browser.get("/").status_code == 302
    assert app.test_client().login(user.email, "reset password 1").status_code == 302


def test_cli_set_password_takes_the_password_as_an_option(app, runner, user):
    arguments = ["users", "set-password", "MARKETER@example.com", "--password", "scripted pw 2"]
    result = runner.invoke(args=arguments)
    assert result.exit_code == 0, result.output
    assert app.test_client().login(user.email, "scripted pw 2").status_code == 302


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("nobody@example.com", "long enough 1", "No user with email nobody@example.com."),
        ("marketer@example.com", "short", "Password must be at least 8 characters."),
    ],
)
def test_cli_set_password_refuses_bad_input_plainly(runner, user, db, email, password, message):
    before = user.password_hash
    result = runner.invoke(args=["users", "set-password", email, "--password", password])
    assert result.exit_code == 1
    assert message in result.output
    db.session.refresh(user)
    assert user.password_hash == before


def test_an_unknown_email_takes_as_long_to_refuse_as_a_wrong_password(app, user, monkeypatch):
    """Both run one scrypt check: counted, not timed, so the test does not depend on the machine's load."""
    import mailapp.auth.services as services

    checks = []
    real_check = services.check_password_hash

    def counting_check(stored: str, password: str) -> bool:
        checks.append(stored.split("$")[0])
        return real_check(stored, password)

    monkeypatch.setattr(services, "check_password_hash", counting_check)
    assert services.authenticate(user.email, "wrong password") is None
    assert services.authenticate("nobody@example.com", "wrong password") is None
    assert checks == [app.config["PASSWORD_HASH_METHOD"]] * 2
