"""The app makes its own instance folder, so the Procfile's processes run on a fresh clone (beat keeps
its schedule there); tests/recipe/ checks the whole production recipe on PostgreSQL + Redis."""

from __future__ import annotations

import stat
from pathlib import Path

from config import TestConfig
from tests.side_app import create_app_aside


def test_creating_the_app_makes_its_instance_folder_for_its_owner_only(app, tmp_path: Path) -> None:

    instance = tmp_path / "fresh-clone" / "instance"
    config = TestConfig()
    config.INSTANCE_DIR = str(instance)
    config.SQLALCHEMY_DATABASE_URI = app.config["SQLALCHEMY_DATABASE_URI"]
    config.CELERY_BROKER_URL = app.config["CELERY_BROKER_URL"]
    created = create_app_aside(config)
    assert instance.is_dir()
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert created.instance_path == str(instance)


def test_beat_keeps_its_schedule_in_the_instance_folder_by_absolute_path(app) -> None:
    schedule = Path(app.extensions["celery"].conf.beat_schedule_filename)
    assert schedule.is_absolute()
    assert schedule.parent == Path(app.instance_path)
    assert schedule.parent.is_dir()
