"""CSV import, PostgreSQL: store a parsed chunk through COPY and set-based statements."""

from __future__ import annotations

import csv
import io
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from mailapp.models.base import utcnow
from mailapp.subscribers.import_parse import ChunkCounts, ImportRow

log = logging.getLogger(__name__)


class PostgresChunkWriter:
    """COPY into a temporary staging table (one text column per attribute: PostgreSQL builds the JSON),
    then per chunk: look up which emails exist, a plain INSERT for the new ones with their memberships,
    and set-based updates for the existing ones.

    Why not one INSERT ... ON CONFLICT DO UPDATE for every row: in a large import almost every row is
    new, and the speculative insertion, the join that finds the memberships of existing subscribers
    and an email-keyed table of emails already seen cost more than the insert itself. Here a new row
    costs one index probe, its inserts, and one integer in `import_seen` (the subscriber ids this
    import has touched). An email that an earlier chunk of the file stored is found by the look-up, so
    only existing subscribers are checked against `import_seen`.

    Every statement works from the chunk's rows and probes an index per row (`enable_hashjoin` and
    `enable_mergejoin` off): without statistics on the staging table the planner would otherwise hash
    the whole subscribers table for each chunk, a cost that grows with the table instead of the chunk.

    The look-up sees what was committed when it ran. If another transaction stores one of the chunk's
    emails (or deletes one of its subscribers) between the look-up and the writes, a unique or foreign
    key violation rolls the chunk back to its savepoint and it runs again, now seeing that change."""

    LOOKUP = """
        UPDATE import_stage SET subscriber_id = subscribers.id
        FROM subscribers WHERE subscribers.email = import_stage.email
    """
    # New subscribers go in in email order, so the email index is filled page by page. Byte order (the
    # "C" collation) sorts several times faster than a locale, and is the index's order under C.UTF-8.
    INSERT_NEW = """
        WITH created AS (
            INSERT INTO subscribers (email, name, attributes, status, created_at, updated_at)
            SELECT stage.email, stage.name, {attributes}, 'active', :now, :now
            FROM import_stage AS stage
            WHERE stage.subscriber_id IS NULL
            ORDER BY stage.email COLLATE "C"
            RETURNING id
        ), members AS (
            INSERT INTO list_members (list_id, subscriber_id) SELECT :list_id, id FROM created
        ), seen AS (
            INSERT INTO import_seen (subscriber_id) SELECT id FROM created
        )
        SELECT count(*) FROM created
    """
    # Existing subscribers that an earlier chunk already took from this file: duplicates, dropped.
    DROP_REPEATS = """
        DELETE FROM import_stage USING import_seen
        WHERE import_stage.subscriber_id IS NOT NULL
          AND import_seen.subscriber_id = import_stage.subscriber_id
    """
    # Existing subscribers whose attributes this file would take past the limit (never below what they
    # already have): invalid rows, nothing of them stored. Only a changed row can add keys, so an
    # unchanged one (every row of a re-import) costs no look-up.
    REFUSE_TOO_MANY = """
        DELETE FROM import_stage AS stage
        WHERE stage.changed AND EXISTS (
            SELECT 1 FROM subscribers WHERE subscribers.id = stage.subscriber_id
              AND (SELECT count(*) FROM jsonb_object_keys(subscribers.attributes || {attributes}))
                  > greatest(:max_keys, (SELECT count(*) FROM jsonb_object_keys(subscribers.attributes))))
        RETURNING stage.line, stage.email
    """
    REMEMBER_EXISTING = """
        INSERT INTO import_seen (subscriber_id)
        SELECT subscriber_id FROM import_stage WHERE subscriber_id IS NOT NULL
    """
    CLASSIFY_EXISTING = """
        UPDATE import_stage AS stage SET
            changed = (stage.name <> '' AND stage.name <> subscribers.name)
                      OR NOT subscribers.attributes @> {attributes},
            -- A scalar subquery, so it is always one primary key probe per row: an EXISTS may become
            -- a hash of the whole list, a join may scan the whole list per row on stale statistics.
            member = (SELECT true FROM list_members
                      WHERE list_members.list_id = :list_id AND list_members.subscriber_id = subscribers.id)
                     IS NOT NULL
        FROM subscribers
        WHERE stage.subscriber_id IS NOT NULL AND subscribers.id = stage.subscriber_id
    """
    UPDATE_CHANGED = """
        UPDATE subscribers SET
            name = CASE WHEN stage.name <> '' THEN stage.name ELSE subscribers.name END,
            attributes = subscribers.attributes || {attributes},
            updated_at = :now
        FROM import_stage AS stage
        WHERE stage.changed AND subscribers.id = stage.subscriber_id
    """
    JOIN_LIST = """
        INSERT INTO list_members (list_id, subscriber_id)
        SELECT :list_id, subscriber_id FROM import_stage WHERE subscriber_id IS NOT NULL AND NOT member
        ON CONFLICT DO NOTHING
    """
    COUNT_EXISTING = """
        SELECT count(*) FILTER (WHERE changed),
               count(*) FILTER (WHERE NOT changed AND NOT member),
               count(*) FILTER (WHERE NOT changed AND member)
        FROM import_stage WHERE subscriber_id IS NOT NULL
    """
    MAX_ATTEMPTS = 5

    def __init__(self, attribute_names: list[str], max_keys: int) -> None:
        self.attribute_names = attribute_names
        self.max_keys = max_keys
        self.columns = ["line", "email", "name"] + [f"a{i}" for i in range(len(attribute_names))]
        if attribute_names:
            keys = ", ".join(f":key{i}" for i in range(len(attribute_names)))
            values = ", ".join(f"stage.a{i}" for i in range(len(attribute_names)))
            attributes = f"jsonb_strip_nulls(jsonb_object(ARRAY[{keys}]::text[], ARRAY[{values}]))"
        else:
            attributes = "'{}'::jsonb"
        self.insert_new = text(self.INSERT_NEW.format(attributes=attributes))
        self.classify_existing = text(self.CLASSIFY_EXISTING.format(attributes=attributes))
        self.update_changed = text(self.UPDATE_CHANGED.format(attributes=attributes))
        self.refuse_too_many = text(self.REFUSE_TOO_MANY.format(attributes=attributes))
        self.join_list = text(self.JOIN_LIST)
        self.keys = {f"key{i}": name for i, name in enumerate(attribute_names)}

    def start(self, connection: Connection) -> None:
        attribute_columns = "".join(f", a{i} text" for i in range(len(self.attribute_names)))
        connection.exec_driver_sql("DROP TABLE IF EXISTS pg_temp.import_stage")
        connection.exec_driver_sql(
            f"CREATE TEMP TABLE import_stage (line integer, email text, name text{attribute_columns}, "
            "subscriber_id integer, changed boolean, member boolean) ON COMMIT DELETE ROWS"
        )
        connection.exec_driver_sql("DROP TABLE IF EXISTS pg_temp.import_seen")
        connection.exec_driver_sql("CREATE TEMP TABLE import_seen (subscriber_id integer PRIMARY KEY)")

    def prepare(self, rows: list[ImportRow]) -> io.BytesIO:
        """The COPY payload, made in the parsing thread: the writer thread then only waits on PostgreSQL."""
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return io.BytesIO(buffer.getvalue().encode("utf-8"))

    def write(
        self, connection: Connection, list_id: int, rows: list[ImportRow], prepared: Any
    ) -> ChunkCounts:
        # JIT compiling these statements costs more than running them; sorts of a chunk fit in memory
        # with a larger work_mem. Not waiting for the WAL flush at each chunk's commit is safe: a
        # chunk lost in a server crash lost its counters with it, and the task resumes there.
        connection.exec_driver_sql("SET LOCAL jit = off")
        connection.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
        connection.exec_driver_sql("SET LOCAL enable_hashjoin = off")
        connection.exec_driver_sql("SET LOCAL enable_mergejoin = off")
        cursor = connection.connection.cursor()
        try:
            # One read of the whole payload: each read takes the GIL, which the parsing thread holds
            # for up to 5 ms at a time, so the default 8 kB reads made COPY wait seconds per chunk.
            cursor.copy_expert(
                # An empty name is '' (an empty cell), never NULL; empty attribute cells are NULL.
                f"COPY import_stage ({', '.join(self.columns)}) FROM STDIN "
                "WITH (FORMAT csv, FORCE_NOT_NULL (name))",
                prepared,
                size=len(prepared.getbuffer()),
            )
        finally:
            cursor.close()
        now = utcnow().replace(tzinfo=None)
        for attempt in range(1, self.MAX_ATTEMPTS + 1):
            savepoint = connection.begin_nested()
            try:
                counts = self._store(connection, list_id, now)
            except IntegrityError:
                savepoint.rollback()
                if attempt == self.MAX_ATTEMPTS:
                    raise
                log.info("import chunk met a concurrent change to its subscribers; running it again")
                continue
            savepoint.commit()
            counts.duplicates = (len(rows) - counts.imported - counts.updated - counts.unchanged
                                 - len(counts.too_many_attributes))
            return counts
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _store(self, connection: Connection, list_id: int, now: datetime) -> ChunkCounts:
        parameters = {"now": now, "list_id": list_id, "max_keys": self.max_keys, **self.keys}
        existing = connection.exec_driver_sql(self.LOOKUP).rowcount
        imported = connection.execute(self.insert_new, parameters).scalar_one()
        if not existing:
            return ChunkCounts(imported=imported)
        connection.exec_driver_sql(self.DROP_REPEATS)
        connection.exec_driver_sql(self.REMEMBER_EXISTING)
        connection.execute(self.classify_existing, parameters)
        too_many: list[tuple[int, str]] = []
        if self.attribute_names:
            too_many = [tuple(row) for row in connection.execute(self.refuse_too_many, parameters)]
        connection.execute(self.update_changed, parameters)
        connection.execute(self.join_list, parameters)
        changed, joined, unchanged = connection.exec_driver_sql(self.COUNT_EXISTING).one()
        return ChunkCounts(imported=imported, updated=changed + joined, unchanged=unchanged,
                           too_many_attributes=too_many)

    def finish(self, connection: Connection) -> None:
        connection.exec_driver_sql("DROP TABLE IF EXISTS pg_temp.import_seen")
        connection.exec_driver_sql("DROP TABLE IF EXISTS pg_temp.import_stage")
