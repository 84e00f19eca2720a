"""The app makes its own instance folder, so the Procfile's processes run on a fresh clone (beat keeps
its schedule there); tests/recipe/ checks the whole production recipe on PostgreSQL + Redis."""

from __future__ import annotations

import stat
from pathlib import Path

from celery import _state

from config import TestConfig


def test_creating_the_app_makes_its_instance_folder_for_its_owner_only(app, tmp_path: Path) -> None:
    from mailapp import create_app

    instance = tmp_path / "fresh-clone" / "instance"
    config = TestConfig()
    config.INSTANCE_DIR = str(instance)
    config.SQLALCHEMY_DATABASE_URI = app.config["SQLALCHEMY_DATABASE_URI"]
    config.CELERY_BROKER_URL = app.config["CELERY_BROKER_URL"]
    suite_celery = _state.default_app
    try:
        created = create_app(config)
    finally:
        _state.default_app = suite_celery  # create_app made the new app's Celery the default
    assert instance.is_dir()
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert created.instance_path == str(instance)


def test_beat_keeps_its_schedule_in_the_instance_folder_by_absolute_path(app) -> None:
    schedule = Path(app.extensions["celery"].conf.beat_schedule_filename)
    assert schedule.is_absolute()
    assert schedule.parent == Path(app.instance_path)
    assert schedule.parent.is_dir()
