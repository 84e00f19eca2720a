"""Settings an installation must not share with any other: its secret key (random, made on first run,
kept in the instance folder) and the dev inbox (on by itself only when served from loopback)."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from config import apply_derived_settings, config_from_env, load_or_create_secret_key
from tests.auth_fixtures import throwaway_app

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter with the operator's environment: no SECRET_KEY unless given, the
    embedded default under tmp_path."""
    environment = {
        key: value for key, value in os.environ.items()
        if key not in {"SECRET_KEY", "MAILAPP_ENV", "DEVINBOX_ENABLED", "PUBLIC_URL"}
    }
    environment.update(
        MAILAPP_INSTANCE_DIR=str(tmp_path / "instance"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'mailapp.sqlite'}",
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
        REDIS_URL="",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
        timeout=120, check=False,
    )


def test_the_secret_key_is_made_on_first_use_private_and_then_reused(tmp_path):
    instance = tmp_path / "instance"  # not there yet: made on first use
    key = load_or_create_secret_key(instance)
    key_file = instance / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key) == 64
    int(key, 16)
    assert load_or_create_secret_key(instance) == key
    assert [path.name for path in instance.iterdir()] == ["secret_key"]  # no temporary file left


def test_two_installations_never_share_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("MAILAPP_ENV", "development")
    first = config_from_env(tmp_path / "one").SECRET_KEY
    second = config_from_env(tmp_path / "two").SECRET_KEY
    assert len(first) == len(second) == 64
    assert first != second


def test_processes_starting_together_agree_on_one_key(tmp_path):
    instance = tmp_path / "instance"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        keys = pool.map(load_or_create_secret_key, [instance] * 8)
    assert len(set(keys)) == 1
    assert (instance / "secret_key").read_text() == keys[0]


def test_an_unusable_key_file_is_reported_not_used(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "secret_key").write_text("")
    with pytest.raises(RuntimeError, match="holds no usable secret key"):
        load_or_create_secret_key(instance)


def test_the_app_without_secret_key_signs_with_the_instance_key_and_no_constant(tmp_path):
    code = (
        "import config; from wsgi import app; "
        "print(config.DevelopmentConfig.SECRET_KEY); print(app.secret_key)"
    )
    first = run_python(code, tmp_path)
    assert first.returncode == 0, first.stderr
    class_key, app_key = first.stdout.split()[-2:]
    assert class_key == "None"  # no key written into the source
    key_file = tmp_path / "instance" / "secret_key"
    assert app_key == key_file.read_text()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = run_python(code, tmp_path)
    assert again.stdout.split()[-1] == app_key  # web, worker and beat processes get the same key


def test_production_still_refuses_to_start_without_secret_key(tmp_path):
    started = run_python("import wsgi", tmp_path, MAILAPP_ENV="production")
    assert started.returncode != 0
    assert "SECRET_KEY must be set when MAILAPP_ENV=production" in started.stderr
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_production_refuses_to_start_with_an_http_public_url(tmp_path):
    started = run_python(
        "import wsgi", tmp_path, MAILAPP_ENV="production", SECRET_KEY="k" * 64, PUBLIC_URL="http://news.example.com"
    )
    assert started.returncode != 0
    assert "PUBLIC_URL must be an https:// address when MAILAPP_ENV=production" in started.stderr
    assert "ALLOW_HTTP_PUBLIC_URL=1" in started.stderr


@pytest.mark.parametrize(
    ("public_url", "allow_http", "starts"),
    [
        ("https://news.example.com", None, True),
        ("HTTPS://news.example.com/", None, True),
        ("http://news.example.com", None, False),
        ("http://news.example.com", "1", True),
        ("http://news.example.com", "0", False),
        (None, None, False),  # production must say where it is: the default is http://127.0.0.1:5000
    ],
)
def test_production_accepts_http_public_url_only_when_allowed(monkeypatch, public_url, allow_http, starts):
    monkeypatch.setenv("MAILAPP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 64)
    for name, value in (("PUBLIC_URL", public_url), ("ALLOW_HTTP_PUBLIC_URL", allow_http)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    if starts:
        assert config_from_env() is not None
    else:
        with pytest.raises(RuntimeError, match="PUBLIC_URL must be an https:// address"):
            config_from_env()


@pytest.mark.parametrize(
    ("public_url", "explicit", "enabled"),
    [
        ("http://127.0.0.1:5000", None, True),
        ("http://localhost:5000", None, True),
        ("http://[::1]:5000", None, True),
        ("http://127.8.9.10", None, True),
        ("https://news.example.com", None, False),
        ("http://mailapp.test", None, False),
        ("http://10.0.0.5:5000", None, False),
        ("http://127.0.0.1.example.com", None, False),
        ("https://news.example.com", True, True),
        ("http://127.0.0.1:5000", False, False),
    ],
)
def test_the_dev_inbox_is_on_by_itself_only_on_a_loopback_public_url(public_url, explicit, enabled):
    settings = {"PUBLIC_URL": public_url, "DEVINBOX_ENABLED": explicit}
    apply_derived_settings(settings)
    assert settings["DEVINBOX_ENABLED"] is enabled


def test_a_public_installation_serves_no_dev_inbox_unless_asked(tmp_path):
    code = "from wsgi import app; print(app.config['DEVINBOX_ENABLED'])"
    public = run_python(code, tmp_path, PUBLIC_URL="https://news.example.com")
    assert public.stdout.split()[-1] == "False", public.stderr
    local = run_python(code, tmp_path, PUBLIC_URL="http://127.0.0.1:5000")
    assert local.stdout.split()[-1] == "True", local.stderr
    asked = run_python(code, tmp_path, PUBLIC_URL="https://news.example.com", DEVINBOX_ENABLED="true")
    assert asked.stdout.split()[-1] == "True", asked.stderr


def test_the_dev_inbox_pages_answer_404_on_a_public_installation(app):
    public = throwaway_app(app, PUBLIC_URL="https://news.example.com", DEVINBOX_ENABLED=None)
    try:
        with public.app_context():
            assert public.config["DEVINBOX_ENABLED"] is False
            assert public.test_client().get("/dev/inbox/").status_code == 404
    finally:
        with public.app_context():
            from mailapp.extensions import db

            db.engine.dispose()
