"""CSV import, SQLite: store a parsed chunk through executemany and set-based statements."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, text

from mailapp.models.base import utcnow
from mailapp.subscribers.import_parse import ChunkCounts, ImportRow


class SqliteChunkWriter:
    """executemany into a temporary staging table, classify each row, then set-based writes."""

    def __init__(self, attribute_names: list[str], max_keys: int) -> None:
        self.attribute_names = attribute_names
        self.max_keys = max_keys

    def _staged(self, row: ImportRow) -> tuple[int, str, str, str]:
        attributes = {key: value for key, value in zip(self.attribute_names, row[3:], strict=True) if value}
        return row[0], row[1], row[2], json.dumps(attributes, ensure_ascii=False)

    def start(self, connection: Connection) -> None:
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.import_stage")
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.import_seen")
        connection.exec_driver_sql(
            "CREATE TEMP TABLE import_stage (line INTEGER, email TEXT PRIMARY KEY, name TEXT, "
            "attributes TEXT, subscriber_id INTEGER, kind TEXT)"
        )
        connection.exec_driver_sql("CREATE TEMP TABLE import_seen (email TEXT PRIMARY KEY)")

    def prepare(self, rows: list[ImportRow]) -> list[tuple[int, str, str, str]]:
        return [self._staged(row) for row in rows]

    def write(
        self, connection: Connection, list_id: int, rows: list[ImportRow], prepared: Any
    ) -> ChunkCounts:
        connection.exec_driver_sql("DELETE FROM temp.import_stage")
        connection.exec_driver_sql(
            "INSERT INTO temp.import_stage (line, email, name, attributes) VALUES (?, ?, ?, ?)", prepared
        )
        duplicates = connection.exec_driver_sql(
            "DELETE FROM temp.import_stage WHERE email IN (SELECT email FROM temp.import_seen)"
        ).rowcount
        connection.exec_driver_sql("INSERT INTO temp.import_seen (email) SELECT email FROM temp.import_stage")
        connection.exec_driver_sql(
            "UPDATE temp.import_stage SET subscriber_id = "
            "(SELECT id FROM subscribers WHERE subscribers.email = import_stage.email)"
        )
        # Classify before writing: 'new', 'changed' (name or attributes differ), 'joined' (same data,
        # not yet on the list) or 'same'.
        connection.execute(
            text(
                """
                UPDATE temp.import_stage SET kind = CASE
                    WHEN subscriber_id IS NULL THEN 'new'
                    WHEN EXISTS (SELECT 1 FROM subscribers AS s WHERE s.id = import_stage.subscriber_id AND (
                            (import_stage.name <> '' AND import_stage.name <> s.name)
                            OR json(json_patch(s.attributes, import_stage.attributes)) <> json(s.attributes)))
                        -- Only a change can add keys: past the limit (never below what is stored), refused.
                        THEN CASE WHEN EXISTS (
                          SELECT 1 FROM subscribers AS s WHERE s.id = import_stage.subscriber_id AND
                          (SELECT count(*) FROM json_each(json_patch(s.attributes, import_stage.attributes)))
                          > max(:max_keys, (SELECT count(*) FROM json_each(s.attributes))))
                        THEN 'too_many' ELSE 'changed' END
                    WHEN NOT EXISTS (
                        SELECT 1 FROM list_members AS m
                        WHERE m.list_id = :list_id AND m.subscriber_id = import_stage.subscriber_id)
                        THEN 'joined'
                    ELSE 'same' END
                """
            ),
            {"list_id": list_id, "max_keys": self.max_keys},
        )
        now = utcnow().replace(tzinfo=None).isoformat(sep=" ")
        connection.execute(
            text(
                """
                UPDATE subscribers SET
                    name = CASE WHEN stage.name <> '' THEN stage.name ELSE subscribers.name END,
                    attributes = json_patch(subscribers.attributes, stage.attributes),
                    updated_at = :now
                FROM temp.import_stage AS stage
                WHERE stage.kind = 'changed' AND subscribers.id = stage.subscriber_id
                """
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO subscribers (email, name, attributes, status, created_at, updated_at) "
                "SELECT email, name, attributes, 'active', :now, :now FROM temp.import_stage "
                "WHERE kind = 'new' ORDER BY line"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT OR IGNORE INTO list_members (list_id, subscriber_id) "
                "SELECT :list_id, subscribers.id FROM temp.import_stage AS stage "
                "JOIN subscribers ON subscribers.email = stage.email WHERE stage.kind <> 'too_many'"
            ),
            {"list_id": list_id},
        )
        kinds = dict(
            connection.exec_driver_sql("SELECT kind, count(*) FROM temp.import_stage GROUP BY kind").all()
        )
        too_many = connection.exec_driver_sql(
            "SELECT line, email FROM temp.import_stage WHERE kind = 'too_many' ORDER BY line"
        ).all()
        return ChunkCounts(
            imported=kinds.get("new", 0),
            updated=kinds.get("changed", 0) + kinds.get("joined", 0),
            unchanged=kinds.get("same", 0),
            duplicates=duplicates,
            too_many_attributes=[tuple(row) for row in too_many],
        )

    def finish(self, connection: Connection) -> None:
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.import_stage")
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.import_seen")
