"""Login, logout, the login requirement, CLI users and tokens, and the API's bearer check."""

from sqlalchemy import select

from mailapp.models import ApiToken, User


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
