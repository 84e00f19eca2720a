"""Dashboard latency at scale: p95 of the subscriber list, a campaign page, its report and its delivery log.

"full" fills its own PostgreSQL database (MAILAPP_BENCH_DATABASE_URL, default mailapp_bench) with
1,000,000 subscribers and 10,000,000 deliveries (ten sent campaigns of 1,000,000 each, with opens and
clicks), in SQL with INSERT ... SELECT, once, on the released schema (FILL_REVISION); the later
migrations are then applied on top, as on a production database. Later runs reuse the data and apply
any new migration; only a change to the fill, to the released schema or to an already applied
migration refills it.
"smoke" uses a few hundred rows on a throwaway SQLite file (or MAILAPP_BENCH_DATABASE_URL, which must
then hold an empty schema). Pages are requested through the app by a signed-in test client; each page is
found in app.url_map, so a page not built yet is reported as not available.

    .venv/bin/python -m bench.bench_dashboard explain [--slow-ms 20] [page words] [/url ...]

requests each page (or each URL given; "{campaign}" stands for the newest sent campaign's id) once after a
warm-up, on the filled full-scale database, and prints every SQL statement it ran with its time, and
EXPLAIN (ANALYZE, BUFFERS) of the slow ones: where a page's time goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_DATABASE_ENV,
    DEFAULT_BENCH_DATABASE,
    ROOT,
    Row,
    bench_app,
    percentile,
    result_row,
    unavailable_row,
)

TARGET_MS = 200
# Bump when the fill below changes, so an existing bench database is rebuilt.
FILL_VERSION = 1
# The data is filled on the schema of this revision and the later migrations run on top of it, so a new
# migration costs its own run time (an index build, a backfill) instead of a refill.
FILL_REVISION = "0001"
# One run: each page's p95 already comes from many requests, and a slow page costs minutes per run.
RUNS = 1
PAGE_BUDGET_SECONDS = 20.0
MIN_SAMPLES = 5


@dataclass(frozen=True)
class Scale:
    subscribers: int
    campaigns: int  # sent campaigns, each to every subscriber
    requests: int
    warmup: int


SCALES = {
    "smoke": Scale(subscribers=300, campaigns=2, requests=5, warmup=1),
    "full": Scale(subscribers=1_000_000, campaigns=10, requests=50, warmup=2),
}
MARKER_LIST = "bench: dashboard data"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
ADMIN_EMAIL = "bench-admin@example.com"


def log(message: str) -> None:
    print(f"[bench_dashboard {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- filling the database ----------------------------------------------------------------------------


class Filler:
    """INSERT ... SELECT statements that work on PostgreSQL and SQLite, filling every NOT NULL column.

    Columns the bench does not name get their model default (or a neutral value), so a column another
    area adds later does not break the fill."""

    def __init__(self, connection: Any) -> None:
        from sqlalchemy import MetaData

        from mailapp.extensions import db

        self.connection = connection
        # The tables as they are in the database (the fill revision's schema), not as the models say
        # after later migrations; the models only lend their column defaults.
        self.metadata = MetaData()
        self.metadata.reflect(connection)
        self.models = db.metadata
        self.postgres = connection.dialect.name == "postgresql"

    def series(self, count: int) -> str:
        """A FROM item yielding g.n = 1..count."""
        if self.postgres:
            return f"generate_series(1, {int(count)}) AS g(n)"
        return (
            f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {int(count)}) "
            "SELECT n FROM s) AS g"
        )

    def seconds_ago(self, seconds_sql: str) -> str:
        """A naive-UTC timestamp `seconds_sql` seconds before now (UTCDateTime stores naive UTC)."""
        if self.postgres:
            return f"((now() AT TIME ZONE 'utc') - ({seconds_sql}) * interval '1 second')"
        return f"datetime('now', '-' || ({seconds_sql}) || ' seconds')"

    def json(self, text_sql: str, column: Any = None) -> str:
        """JSON text cast to the column's own type on PostgreSQL (json or jsonb)."""
        if not self.postgres:
            return text_sql
        type_sql = column.type.compile(self.connection.dialect) if column is not None else "JSONB"
        return f"CAST({text_sql} AS {type_sql})"

    def _neutral(self, column: Any) -> str:
        model_table = self.models.tables.get(column.table.name)
        model_column = model_table.columns.get(column.name) if model_table is not None else None
        default = model_column.default if model_column is not None else None
        if default is not None and getattr(default, "is_scalar", False):
            value = default.arg
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, int | float):
                return str(value)
            if isinstance(value, str):
                return "'" + value.replace("'", "''") + "'"
        type_name = type(column.type).__name__.lower()
        python_type = None
        with contextlib.suppress(NotImplementedError):
            python_type = column.type.python_type
        if python_type is bool:
            return "false"
        if python_type in (int, float) or "integer" in type_name:
            return "0"
        if "json" in type_name or python_type in (dict, list):
            return self.json("'[]'" if python_type is list else "'{}'", column)
        if "date" in type_name or "utc" in type_name or "timestamp" in type_name:
            return self.seconds_ago("0")
        return "''"

    def insert(self, table: str, columns: dict[str, str], source: str, params: dict | None = None) -> int:
        """INSERT INTO table (...) SELECT <columns> FROM <source>; returns the row count."""
        from sqlalchemy import text

        values = dict(columns)
        for column in self.metadata.tables[table].columns:
            needs_value = not column.nullable and column.server_default is None
            if column.name in values or not needs_value:
                continue
            if (
                column.primary_key
                and column.autoincrement in (True, "auto")
                and len(column.table.primary_key) == 1
            ):
                continue
            values[column.name] = self._neutral(column)
        names = ", ".join(values)
        select = ", ".join(values.values())
        sql = f"INSERT INTO {table} ({names}) SELECT {select} FROM {source}"  # our own SQL
        return self.connection.execute(text(sql), params or {}).rowcount


def _migration_files() -> dict[str, Path]:
    """Each revision's file, from the migrations folder."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(ROOT / "migrations"))
    return {script.revision: Path(script.path) for script in scripts.walk_revisions()}


def _revisions_after_fill() -> list[str]:
    """The revisions that run on top of the filled data, oldest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(ROOT / "migrations"))
    later = scripts.iterate_revisions("heads", FILL_REVISION)
    return [script.revision for script in reversed(list(later)) if script.revision != FILL_REVISION]


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def fingerprint(scale: Scale) -> str:
    """Changes when the fill or the schema it fills changes, so stale bench data is rebuilt."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(ROOT / "migrations"))
    digest = hashlib.sha256()
    for script in reversed(list(scripts.iterate_revisions(FILL_REVISION, "base"))):
        digest.update(Path(script.path).read_bytes())
    digest.update(f"fill version {FILL_VERSION}".encode())
    digest.update(repr(scale).encode())
    return digest.hexdigest()[:16]


def _marker_state() -> dict[str, Any] | None:
    """What the marker list records: the fill's fingerprint and the digest of each migration applied on
    top of it; None when there is no marker (or one from an older bench)."""
    from sqlalchemy import inspect, text

    from mailapp.extensions import db

    if not inspect(db.engine).has_table("lists"):
        return None
    with db.engine.connect() as connection:
        description = connection.execute(
            text("SELECT description FROM lists WHERE name = :name"), {"name": MARKER_LIST}
        ).scalar()
    try:
        state = json.loads(description or "")
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def _write_marker_state(state: dict[str, Any]) -> None:
    from sqlalchemy import text

    from mailapp.extensions import db

    with db.engine.begin() as connection:
        connection.execute(
            text("UPDATE lists SET description = :description WHERE name = :name"),
            {"description": json.dumps(state, sort_keys=True), "name": MARKER_LIST},
        )


def _still_applied(state: dict[str, Any]) -> dict[str, str] | None:
    """The recorded migrations the database still has: one downgraded by hand since (to be edited) is
    forgotten, and runs again, as edited, on the next upgrade. None when the database is at a revision
    this fill never recorded."""
    from sqlalchemy import text

    from mailapp.extensions import db

    with db.engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    later = _revisions_after_fill()
    kept = later[: later.index(version) + 1] if version in later else []
    recorded = state.get("applied", {})
    if version != FILL_REVISION and (version not in kept or any(r not in recorded for r in kept)):
        return None
    return {revision: digest for revision, digest in recorded.items() if revision in kept}


def _reusable_state(scale: Scale) -> dict[str, Any] | None:
    """The marker state when the data can be reused: same fill, and every migration still applied on top
    of it unchanged since (a new one is fine: it is applied next). None means refill."""
    state = _marker_state()
    if state is None or state.get("fill") != fingerprint(scale):
        return None
    files = _migration_files()
    applied = _still_applied(state)
    if applied is None:
        return None
    for revision, digest in applied.items():
        path = files.get(revision)
        if path is None or _file_digest(path) != digest:
            log(f"migration {revision} changed since it was applied to the bench data: refilling "
                "(downgrade it with `flask db downgrade` before editing it to keep the data)")  # fmt: skip
            return None
    state["applied"] = applied
    return state


def apply_later_migrations(state: dict[str, Any]) -> None:
    """Run the migrations after the fill revision that the data has not had yet, and record them."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from mailapp.extensions import db

    applied = state["applied"] = _still_applied(state) or {}
    later = _revisions_after_fill()
    pending = [revision for revision in later if revision not in applied]
    if not pending:
        return
    started = time.monotonic()
    db.session.remove()
    upgrade()
    db.session.remove()
    files = _migration_files()
    for revision in pending:
        applied[revision] = _file_digest(files[revision])
    _write_marker_state(state)
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            # Statistics for new expression indexes and columns, and the visibility map a backfill's
            # updates cleared: the steady state autovacuum reaches on a live database, which the
            # fill itself starts from (its VACUUM ANALYZE), so index-only plans are measured as such.
            connection.execute(text("VACUUM ANALYZE"))
    log(f"applied {', '.join(pending)} on top of the bench data ({time.monotonic() - started:.0f} s)")


def fill(scale: Scale) -> None:
    """The bench data, in SQL: subscribers, lists, a layout, sent campaigns with deliveries, events."""
    from sqlalchemy import text

    from mailapp.extensions import db

    started = time.monotonic()
    with db.engine.begin() as connection:
        f = Filler(connection)
        rebuild: list[str] = []
        if f.postgres:
            connection.execute(text("SET LOCAL synchronous_commit = off"))
            connection.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
            # The rows are consistent by construction: skip the per-row foreign-key triggers, and build the
            # secondary indexes once at the end instead of updating them row by row.
            superuser = text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            if connection.execute(superuser).scalar():
                connection.execute(text("SET LOCAL session_replication_role = replica"))
            rebuild = _drop_secondary_indexes(connection, BULK_TABLES)
        n = scale.subscribers
        status = (
            "CASE WHEN g.n % 50 = 0 THEN 'unsubscribed' WHEN g.n % 97 = 0 THEN 'blocklisted' "
            "ELSE 'active' END"
        )
        attributes = f.json(
            '\'{"city": "City \' || (g.n % 300) || \'", "plan": "\' || '
            "(CASE WHEN g.n % 3 = 0 THEN 'pro' ELSE 'free' END) || '\", \"age\": ' || (18 + g.n % 60) || '}'",
            f.metadata.tables["subscribers"].c.attributes,
        )
        f.insert("subscribers", {
            "email": "'reader' || g.n || '@example' || (g.n % 97) || '.com'",
            "name": "'Reader ' || g.n",
            "attributes": attributes,
            "status": status,
            "created_at": f.seconds_ago(f"{n} - g.n"),
            "updated_at": f.seconds_ago(f"{n} - g.n"),
        }, f.series(n))  # fmt: skip
        log(f"{n:,} subscribers ({time.monotonic() - started:.0f} s)")
        lists = [("Newsletter", 1), ("Product updates", 2), ("Events", 10), (MARKER_LIST, 0)]
        for name, every in lists:
            description = (
                json.dumps({"fill": fingerprint(scale), "applied": {}})
                if name == MARKER_LIST
                else f"Every {every} subscriber(s)"
            )
            f.insert("lists", {"name": ":name", "description": ":description",
                               "created_at": f.seconds_ago("86400")},
                     f.series(1), {"name": name, "description": description})  # fmt: skip
        for name, every in lists[:3]:
            f.insert("list_members", {"list_id": "l.id", "subscriber_id": "s.id"},
                     f"subscribers s, lists l WHERE l.name = :name AND s.id % {every} = 0",
                     {"name": name})  # fmt: skip
        log(f"lists ({time.monotonic() - started:.0f} s)")
        f.insert("layouts", {"name": "'Weekly'", "html": ":html", "created_at": f.seconds_ago("86400"),
                             "updated_at": f.seconds_ago("86400")},
                 f.series(1), {"html": "<html><body>{{ message }}</body></html>"})  # fmt: skip
        total = scale.campaigns
        f.insert("campaigns", {
            "name": "'Weekly letter #' || g.n",
            "subject": "'This week, number ' || g.n",
            "from_name": "'The Weekly'",
            "from_email": "'news@example.com'",
            "layout_id": "(SELECT min(id) FROM layouts)",
            "message": "'Hello {{ subscriber.name }}'",
            "status": "'sent'",
            "total_recipients": str(n),
            "created_at": f.seconds_ago(f"({total} - g.n + 1) * 604800 + 3600"),
            "updated_at": f.seconds_ago(f"({total} - g.n + 1) * 604800"),
            "started_at": f.seconds_ago(f"({total} - g.n + 1) * 604800"),
            "snapshot_taken_at": f.seconds_ago(f"({total} - g.n + 1) * 604800"),
            "finished_at": f.seconds_ago(f"({total} - g.n + 1) * 604800 - 600"),
            "send_at": f.seconds_ago(f"({total} - g.n + 1) * 604800"),
        }, f.series(total))  # fmt: skip
        f.insert("campaigns", {"name": "'Draft #' || g.n", "subject": "'Draft'",
                               "from_email": "'news@example.com'",
                               "layout_id": "(SELECT min(id) FROM layouts)", "status": "'draft'",
                               "created_at": f.seconds_ago("60"), "updated_at": f.seconds_ago("60")},
                 f.series(3))  # fmt: skip
        f.insert("campaign_lists", {"campaign_id": "c.id", "list_id": "l.id"},
                 "campaigns c, lists l WHERE l.name = 'Newsletter'")  # fmt: skip
        campaign_ids = [
            row[0]
            for row in connection.execute(text("SELECT id FROM campaigns WHERE status = 'sent' ORDER BY id"))
        ]
        for number, campaign_id in enumerate(campaign_ids, 1):
            _fill_campaign(f, campaign_id, total - number + 1)
            log(
                f"campaign {number}/{total}: {n:,} deliveries and events ({time.monotonic() - started:.0f} s)"
            )
        f.insert("users", {"email": ":email", "password_hash": "'not-a-login'", "is_admin": "true",
                           "created_at": f.seconds_ago("0")},
                 f.series(1), {"email": ADMIN_EMAIL})  # fmt: skip
        for statement in rebuild:
            connection.execute(text(statement))
        if rebuild:
            log(f"{len(rebuild)} indexes and constraints rebuilt ({time.monotonic() - started:.0f} s)")
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            # VACUUM sets the visibility map (index-only counts), ANALYZE the planner's statistics:
            # what autovacuum would have done on a database that grew to this size.
            connection.execute(text("VACUUM ANALYZE"))
    log(f"filled in {time.monotonic() - started:.0f} s")


BULK_TABLES = ("subscribers", "list_members", "deliveries", "open_events", "click_events")


def _drop_secondary_indexes(connection: Any, tables: tuple[str, ...]) -> list[str]:
    """Drop the unique constraints and plain indexes (not primary keys) of `tables` on PostgreSQL;
    returns the statements that recreate them exactly, under the same names."""
    from sqlalchemy import text

    constraints = connection.execute(text(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'u' AND conrelid::regclass::text = ANY(:tables)"
    ), {"tables": list(tables)}).all()  # fmt: skip
    indexes = connection.execute(text(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema() "
        "AND i.tablename = ANY(:tables) AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
    ), {"tables": list(tables)}).all()  # fmt: skip
    for table, name, _definition in constraints:
        connection.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    for name, _definition in indexes:
        connection.execute(text(f'DROP INDEX "{name}"'))
    return [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for table, name, definition in constraints
    ] + [definition for _name, definition in indexes]


def _fill_campaign(f: Filler, campaign_id: int, weeks_ago: int) -> None:
    """Deliveries to every subscriber (a few failed), a quarter opened, one in twenty clicked."""
    start = weeks_ago * 604800
    opened_at = f.seconds_ago(f"{start} - 3600 - s.id % 86400")
    clicked_at = f.seconds_ago(f"{start} - 3700 - s.id % 86400")
    f.insert("deliveries", {
        "campaign_id": str(campaign_id),
        "subscriber_id": "s.id",
        "email": "s.email",
        "status": "CASE WHEN s.id % 200 = 7 THEN 'failed' ELSE 'sent' END",
        "attempts": "1",
        "smtp_code": "CASE WHEN s.id % 200 = 7 THEN 550 ELSE 250 END",
        "error": "CASE WHEN s.id % 200 = 7 THEN '550 5.1.1 <' || s.email || '>: user unknown' ELSE '' END",
        "message_id": f"'<{campaign_id}.' || s.id || '@example.com>'",
        "sent_at": f.seconds_ago(f"{start} - s.id / 2000"),
        "first_opened_at": f"CASE WHEN s.id % 4 = 0 THEN {opened_at} END",
        "open_count": "CASE WHEN s.id % 4 = 0 THEN 1 + s.id % 3 ELSE 0 END",
        "first_clicked_at": f"CASE WHEN s.id % 20 = 0 THEN {clicked_at} END",
        "click_count": "CASE WHEN s.id % 20 = 0 THEN 1 ELSE 0 END",
    }, "subscribers s")  # fmt: skip
    for position in range(4):
        f.insert("links", {"campaign_id": str(campaign_id), "position": str(position),
                           "url": f"'https://shop.example.com/story/{position}'"},
                 f.series(1))  # fmt: skip
    f.insert("open_events", {
        "delivery_id": "d.id",
        "campaign_id": "d.campaign_id",
        "at": "d.first_opened_at",
        "user_agent": f"CASE WHEN d.id % 3 = 0 THEN 'Mozilla/5.0' ELSE '{BROWSER}' END",
        "ip": "'192.0.2.0'",
        "is_machine": "d.id % 3 = 0",
    }, f"deliveries d WHERE d.campaign_id = {campaign_id} AND d.first_opened_at IS NOT NULL")  # fmt: skip
    f.insert("click_events", {
        "delivery_id": "d.id",
        "campaign_id": "d.campaign_id",
        "link_id": f"(SELECT min(id) FROM links WHERE campaign_id = {campaign_id}) + d.id % 4",
        "at": "d.first_clicked_at",
        "user_agent": f"'{BROWSER}'",
        "ip": "'192.0.2.0'",
        "is_machine": "false",
    }, f"deliveries d WHERE d.campaign_id = {campaign_id} AND d.first_clicked_at IS NOT NULL")  # fmt: skip
    if "campaign_stats" in f.metadata.tables:
        columns = {column.name for column in f.metadata.tables["campaign_stats"].columns}
        opens = "FROM open_events e WHERE e.campaign_id = c.id"
        clicks = "FROM click_events e WHERE e.campaign_id = c.id"
        counts = {
            "campaign_id": str(campaign_id),
            "opens": f"(SELECT count(*) {opens} AND NOT e.is_machine)",
            "machine_opens": f"(SELECT count(*) {opens} AND e.is_machine)",
            "unique_opens": f"(SELECT count(DISTINCT delivery_id) {opens})",
            "clicks": f"(SELECT count(*) {clicks})",
            "unique_clicks": f"(SELECT count(DISTINCT delivery_id) {clicks})",
        }
        f.insert("campaign_stats", {key: value for key, value in counts.items() if key in columns},
                 f"campaigns c WHERE c.id = {campaign_id}")  # fmt: skip


def prepare_database(scale_name: str, scale: Scale) -> None:
    """Fill the bench database unless it already holds this fill, then bring its schema to the head."""
    from flask_migrate import upgrade
    from sqlalchemy import inspect, text

    from mailapp.extensions import db

    state = _reusable_state(scale) if scale_name == "full" else None
    db.session.remove()  # end the check's transaction before any DDL
    if state is not None:
        log("reusing the filled bench database")
        apply_later_migrations(state)
        return
    if db.engine.dialect.name == "postgresql" and scale_name == "full":
        with db.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    if not inspect(db.engine).has_table("alembic_version"):
        upgrade(revision=FILL_REVISION)
    db.session.remove()
    with db.engine.connect() as connection:
        if connection.execute(text("SELECT count(*) FROM subscribers")).scalar():
            raise RuntimeError("the bench database already holds subscribers: point it at an empty one")
    fill(scale)
    db.session.remove()
    apply_later_migrations(_marker_state() or {})


# --- measuring ---------------------------------------------------------------------------------------


@dataclass
class Page:
    label: str
    preferred: tuple[str, ...]
    matches: Callable[[str], bool]
    needs_campaign: bool
    # Used when no endpoint of its own exists: (endpoint, query args), e.g. the log on the campaign page.
    fallback: tuple[str, dict[str, str]] | None = None
    query: dict[str, str] | None = None


PAGES = (
    Page("subscriber list", ("subscribers.index",), lambda endpoint: False, needs_campaign=False),
    Page("campaign page", ("campaigns.show", "campaigns.detail", "campaigns.view"),
         lambda endpoint: endpoint in {"campaigns.campaign", "campaigns.page"},
         needs_campaign=True),
    Page("campaign report", ("reports.campaign", "reports.show", "reports.report", "reports.detail"),
         lambda endpoint: endpoint.startswith("reports.")
         and not any(word in endpoint for word in ("deliver", "export", "json", "chart", "csv", "recipient")),
         needs_campaign=True),
    Page("delivery log", ("campaigns.deliveries", "reports.deliveries", "campaigns.delivery_log"),
         lambda endpoint: endpoint.split(".")[0] in {"campaigns", "reports"} and "deliver" in endpoint
         and "export" not in endpoint and "csv" not in endpoint and "retry" not in endpoint,
         needs_campaign=True, fallback=("campaigns.show", {"status": "failed"})),
    Page("recipient activity, opened", ("reports.recipients",), lambda endpoint: False,
         needs_campaign=True, query={"show": "opened"}),
    # The filters whose rows are common (not opened) or rare (unsubscribed: none in this data), the two
    # ways a filtered page can end up reading the whole campaign.
    Page("recipient activity, not opened", ("reports.recipients",), lambda endpoint: False,
         needs_campaign=True, query={"show": "not_opened"}),
    Page("recipient activity, unsubscribed", ("reports.recipients",), lambda endpoint: False,
         needs_campaign=True, query={"show": "unsubscribed"}),
)  # fmt: skip


def find_url(app: Any, page: Page, campaign_id: int) -> tuple[str, str] | None:
    """(endpoint, url) of a GET page in app.url_map, or None when it is not built yet."""
    from flask import url_for

    def build(endpoint: str, **values: Any) -> str:
        with app.test_request_context():
            return url_for(endpoint, **values)

    rules = {rule.endpoint: rule for rule in app.url_map.iter_rules() if "GET" in (rule.methods or ())}
    candidates = [name for name in page.preferred if name in rules]
    candidates += sorted(name for name in rules if page.matches(name) and name not in candidates)
    query = page.query or {}
    if page.fallback and page.fallback[0] in rules:
        candidates.append(page.fallback[0])
    for endpoint in candidates:
        if page.fallback and endpoint == page.fallback[0] and endpoint not in page.preferred:
            query = page.fallback[1]
        arguments = set(rules[endpoint].arguments)
        if not page.needs_campaign and not arguments:
            return endpoint, build(endpoint, **query)
        if page.needs_campaign and len(arguments) == 1:
            return endpoint, build(endpoint, **{arguments.pop(): campaign_id}, **query)
    return None


def measure(client: Any, url: str, scale: Scale) -> tuple[list[float], int]:
    """Response times in ms of `scale.requests` GETs after a warm-up, and the last status code."""
    status = 0
    for _ in range(scale.warmup):
        status = client.get(url).status_code
    samples: list[float] = []
    budget_ends = time.monotonic() + PAGE_BUDGET_SECONDS
    for _ in range(scale.requests):
        if len(samples) >= MIN_SAMPLES and time.monotonic() > budget_ends:
            break  # a page this slow is far past the target; more samples would only cost minutes
        started = time.perf_counter()
        response = client.get(url)
        response.get_data()
        samples.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    return samples, status


def _signed_in_client(app: Any) -> tuple[Any, int]:
    """A test client signed in as the bench admin, and the newest sent campaign's id."""
    from sqlalchemy import func, select

    from mailapp.auth.sessions import start_session
    from mailapp.extensions import db
    from mailapp.models.campaign import Campaign
    from mailapp.models.user import User

    campaign_id = db.session.scalar(select(func.max(Campaign.id)).where(Campaign.status == "sent"))
    user = db.session.scalar(select(User).where(User.email == ADMIN_EMAIL))
    # A live server-side session, as signing in makes one: a cookie naming just the user is refused.
    start_session(user, remember=False)
    db.session.commit()
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = user.get_id()
        session["_fresh"] = True
    return client, campaign_id


@contextlib.contextmanager
def app_on_dashboard_data(scale: str, name: str) -> Iterator[tuple[Any, Scale]]:
    """The bench app on this module's data (filled, or reused when it is current), inside its app
    context: MAILAPP_BENCH_DATABASE_URL, or a temporary SQLite file for a smoke run. A smoke run on a
    borrowed database leaves it as empty as it found it. The segments bench uses the same data."""
    from mailapp.extensions import db

    sizes = SCALES[scale]
    with tempfile.TemporaryDirectory(prefix=f"mailapp-bench-{name}-") as folder:
        workdir = Path(folder)
        database = os.environ.get(BENCH_DATABASE_ENV) or (
            DEFAULT_BENCH_DATABASE if scale == "full" else f"sqlite:///{workdir / f'{name}.sqlite'}"
        )
        app = bench_app(database, f"sqla+sqlite:///{workdir / 'broker.sqlite'}", workdir)
        with app.app_context():
            try:
                prepare_database(scale, sizes)
                yield app, sizes
            finally:
                db.session.remove()
                if scale == "smoke" and os.environ.get(BENCH_DATABASE_ENV):
                    _empty_tables()
                db.engine.dispose()


def run(scale: str) -> list[Row]:
    with app_on_dashboard_data(scale, "dashboard") as (app, sizes):
        client, campaign_id = _signed_in_client(app)
        data = f"{sizes.subscribers:,} subscribers, {sizes.subscribers * sizes.campaigns:,} deliveries"
        rows = []
        for page in PAGES:
            name = f"dashboard: {page.label} p95"
            found = find_url(app, page, campaign_id)
            if found is None:
                reason = f"no {page.label} route yet ({page.preferred[0]})"
                rows.append(unavailable_row(name, "ms", reason, target=f"< {TARGET_MS}"))
                continue
            endpoint, url = found
            samples, status = measure(client, url, sizes)
            if status != 200:
                error = f"error: GET {url} ({endpoint}) answered {status}"
                rows.append(result_row(name, None, "ms", target=f"< {TARGET_MS}", notes=error))
                continue
            rows.append(result_row(
                name, percentile(samples, 0.95), "ms", target=f"< {TARGET_MS}",
                notes=f"GET {url} ({endpoint}), {len(samples)} requests, median "
                      f"{percentile(samples, 0.5):.0f} ms; {data}",
            ))  # fmt: skip
        return rows


def _empty_tables() -> None:
    """Smoke runs on a borrowed database leave it as empty as they found it."""
    from sqlalchemy import text

    from mailapp.extensions import db

    with db.engine.begin() as connection:
        for table in reversed(db.metadata.sorted_tables):
            connection.execute(text(f"DELETE FROM {table.name}"))  # names from metadata


# --- explaining --------------------------------------------------------------------------------------


def explain(words: list[str], slow_ms: float) -> None:
    """Each page's SQL statements with their times, and the plans of those slower than slow_ms."""
    from sqlalchemy import event

    from mailapp.extensions import db

    with tempfile.TemporaryDirectory(prefix="mailapp-bench-dashboard-") as folder:
        workdir = Path(folder)
        database = os.environ.get(BENCH_DATABASE_ENV) or DEFAULT_BENCH_DATABASE
        app = bench_app(database, f"sqla+sqlite:///{workdir / 'broker.sqlite'}", workdir)
        with app.app_context():
            prepare_database("full", SCALES["full"])
            client, campaign_id = _signed_in_client(app)
            statements: list[tuple[float, str, Any]] = []

            def before(conn, cursor, statement, parameters, context, executemany) -> None:
                conn.info["started"] = time.perf_counter()

            def after(conn, cursor, statement, parameters, context, executemany) -> None:
                statements.append(
                    ((time.perf_counter() - conn.info["started"]) * 1000, statement, parameters)
                )

            urls = [word.replace("{campaign}", str(campaign_id)) for word in words if word.startswith("/")]
            words = [word for word in words if not word.startswith("/")]
            targets = [(url, url) for url in urls]
            for page in PAGES if words or not urls else ():
                if words and not all(word in page.label for word in words):
                    continue
                found = find_url(app, page, campaign_id)
                if found is None:
                    print(f"== {page.label}: no route")
                    continue
                targets.append((page.label, found[1]))
            for label, url in targets:
                client.get(url)
                event.listen(db.engine, "before_cursor_execute", before)
                event.listen(db.engine, "after_cursor_execute", after)
                started = time.perf_counter()
                client.get(url).get_data()
                total = (time.perf_counter() - started) * 1000
                event.remove(db.engine, "before_cursor_execute", before)
                event.remove(db.engine, "after_cursor_execute", after)
                in_sql = sum(ms for ms, _, _ in statements)
                print(f"== {label}: GET {url}: {total:.0f} ms, {len(statements)} statements, "
                      f"{in_sql:.0f} ms in SQL")  # fmt: skip
                for ms, statement, parameters in statements:
                    print(f"  {ms:8.1f} ms  {' '.join(statement.split())[:160]}")
                    if ms >= slow_ms and statement.lstrip().upper().startswith(("SELECT", "WITH")):
                        with db.engine.connect() as connection:
                            plan = connection.exec_driver_sql(
                                "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                            ).scalars()
                            print("\n".join(f"      {line}" for line in plan))
                statements.clear()
            db.session.remove()
            db.engine.dispose()


def _main(argv: list[str]) -> None:
    if argv[:1] == ["explain"]:
        words = argv[1:]
        slow_ms = 20.0
        if "--slow-ms" in words:
            at = words.index("--slow-ms")
            slow_ms = float(words[at + 1])
            del words[at : at + 2]
        explain(words, slow_ms)
        return
    for row in run(argv[0] if argv else "smoke"):
        print(json.dumps(row))


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(ROOT))
    _main(sys.argv[1:])
