"""Migration 0003 on SQLite, run on a database of its own that holds rows from before it: deliveries and
campaigns get AUTOINCREMENT (a deleted campaign's ids are never handed out again), nothing is lost,
the 0002 triggers and indexes come back as they were, and only the rows that existed may be named by
the old token format."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from mailapp.extensions import db
from tests.sibling_database import app_on_fresh_database

NOW = "2026-11-30 10:00:00.000000"


@pytest.fixture
def fresh_app(app: Flask, tmp_path: Path) -> Iterator[Flask]:
    """An app of its own on an empty SQLite file (whatever database the suite runs on)."""
    with app_on_fresh_database(app, tmp_path, "migrate", sqlite=True) as fresh:
        yield fresh


def sql(statement: str, **params: object) -> list:
    result = db.session.execute(text(statement), params)
    return result.all() if result.returns_rows else []


def schema_objects() -> dict[str, str]:
    return dict(
        sql("SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL")
    )


def table_sql(table: str) -> str:
    return sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name", name=table)[0][0]


def add_campaign(campaign_id: int) -> None:
    sql(
        "INSERT INTO campaigns (id, name, subject, from_name, from_email, reply_to, message, status, "
        "schedule_version, start_queued_version, track_opens, track_clicks, status_reason, total_recipients, "
        "created_at, updated_at) "
        "VALUES (:id, 'C', 'S', '', 'n@example.com', '', '', 'sent', 0, 0, 1, 1, '', 0, :now, :now)",
        id=campaign_id, now=NOW,
    )


def add_delivery(delivery_id: int | None, campaign_id: int, subscriber_id: int) -> int:
    sql(
        "INSERT INTO deliveries (id, campaign_id, subscriber_id, email, status, attempts, message_id, "
        "error, open_count, click_count, sent_at) "
        "VALUES (:id, :campaign, :subscriber, 'r@example.com', 'sent', 1, '', '', 0, 0, :now)",
        id=delivery_id, campaign=campaign_id, subscriber=subscriber_id, now=NOW,
    )
    return sql("SELECT max(id) FROM deliveries")[0][0]


def fill_before_0003() -> None:
    for subscriber_id in (1, 2, 3):
        sql(
            "INSERT INTO subscribers (id, email, name, attributes, status, created_at, updated_at) "
            "VALUES (:id, :email, '', '{}', 'active', :now, :now)",
            id=subscriber_id, email=f"s{subscriber_id}@example.com", now=NOW,
        )
    add_campaign(1)
    add_campaign(2)
    for delivery_id, campaign_id, subscriber_id in ((1, 1, 1), (2, 1, 2), (3, 2, 3)):
        add_delivery(delivery_id, campaign_id, subscriber_id)
    sql("INSERT INTO links (id, campaign_id, position, url) VALUES (1, 2, 0, 'https://example.com/')")
    sql(
        "INSERT INTO open_events (delivery_id, campaign_id, at, user_agent, ip, is_machine) "
        "VALUES (3, 2, :now, 'UA', '203.0.113.0', 0)", now=NOW,
    )
    db.session.commit()


def test_0003_gives_sqlite_autoincrement_and_keeps_rows_triggers_and_indexes(fresh_app):
    with fresh_app.app_context():
        upgrade(revision="0002")
        fill_before_0003()
        before = schema_objects()
        counts_before = sql("SELECT campaign_id, status, deliveries FROM campaign_delivery_counts")
        db.session.remove()

        upgrade(revision="0003")

        assert "AUTOINCREMENT" in table_sql("deliveries")
        assert "AUTOINCREMENT" in table_sql("campaigns")
        assert schema_objects() == before
        rows = sql("SELECT id, campaign_id, subscriber_id, accepts_v1_tokens FROM deliveries ORDER BY id")
        assert rows == [(1, 1, 1, 1), (2, 1, 2, 1), (3, 2, 3, 1)]
        # Rebuilding a referenced table cascaded nothing away, and left no dangling key.
        assert sql("SELECT count(*) FROM open_events") == [(1,)]
        assert sql("SELECT count(*) FROM links") == [(1,)]
        assert sql("PRAGMA foreign_key_check") == []
        assert sql("PRAGMA foreign_keys") == [(1,)]

        # The campaign with the highest ids is deleted: its ids are not handed out again, and a row
        # created after the migration refuses the old token format.
        sql("DELETE FROM campaigns WHERE id = 2")
        assert sql("SELECT count(*) FROM deliveries") == [(2,)]
        add_campaign(None)
        assert sql("SELECT max(id) FROM campaigns") == [(3,)]
        new_id = add_delivery(None, 3, 3)
        assert new_id == 4
        assert sql("SELECT accepts_v1_tokens FROM deliveries WHERE id = :id", id=new_id) == [(0,)]
        # The 0002 triggers still count.
        assert (3, "sent", 1) in sql("SELECT campaign_id, status, deliveries FROM campaign_delivery_counts")
        assert all(row in sql("SELECT campaign_id, status, deliveries FROM campaign_delivery_counts")
                   for row in counts_before if row[0] == 1)
        db.session.commit()


def test_0003_downgrades_to_the_0002_schema(fresh_app):
    with fresh_app.app_context():
        upgrade(revision="0002")
        fill_before_0003()
        before = schema_objects()
        db.session.remove()
        upgrade(revision="0003")
        db.session.remove()
        downgrade(revision="0002")
        assert "AUTOINCREMENT" not in table_sql("deliveries")
        assert "accepts_v1_tokens" not in table_sql("deliveries")
        assert schema_objects() == before
        assert sql("SELECT count(*) FROM deliveries") == [(3,)]
        assert sql("SELECT count(*) FROM open_events") == [(1,)]
