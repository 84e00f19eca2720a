"""tracking ids never reused

Tracking tokens name a delivery (and, from now on, its campaign and subscriber). On SQLite a deleted
campaign's ids were handed out again, so an old email's link could name another recipient's delivery.
- deliveries and campaigns get SQLite AUTOINCREMENT: SQLite copies each into a new table (batch mode,
  recreate="always"), and the indexes and the triggers of 0002 are put back exactly as they were.
  PostgreSQL sequences never reuse ids: nothing to do there.
- deliveries.accepts_v1_tokens: true for the rows that exist now, false for every later row, so the
  old token format (the delivery id alone) is honoured only where it cannot name a reused id. On
  PostgreSQL both steps only touch the catalog (ADD COLUMN with a constant default stores it once,
  PostgreSQL 11+): a table of 10M deliveries is not rewritten.

Rebuilding a table drops the old one; env.py turns SQLite's foreign key enforcement off around the
migrations, or that DROP would first delete every row and cascade to the events. The keys are checked
before this migration commits.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 14:55:00.000000

"""
import re

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _schema_objects(table: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(indexes of the table, triggers that are on it or mention it) as (name, sql)."""
    rows = op.get_bind().execute(
        sa.text("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
                "AND sql IS NOT NULL ORDER BY name")
    ).all()
    mentions = re.compile(rf"\b{table}\b")
    indexes = [(name, sql) for kind, name, tbl_name, sql in rows if kind == "index" and tbl_name == table]
    triggers = [
        (name, sql) for kind, name, tbl_name, sql in rows
        if kind == "trigger" and (tbl_name == table or mentions.search(sql))
    ]
    return indexes, triggers


def _rebuild_sqlite(table: str, *, autoincrement: bool, change=None) -> None:
    """Copy the table into a new one (with or without AUTOINCREMENT), then put back its indexes and
    the triggers that touch it as they were. The triggers go first: SQLite refuses to rename a table
    while a trigger names a table that is missing at that moment."""
    indexes, triggers = _schema_objects(table)
    for name, _ in triggers:
        op.execute(f'DROP TRIGGER "{name}"')
    with op.batch_alter_table(
        table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ) as batch_op:
        if change is not None:
            change(batch_op)
    for name, sql in indexes:
        op.execute(f'DROP INDEX IF EXISTS "{name}"')
        op.execute(sql)
    for _, sql in triggers:
        op.execute(sql)


def _check_foreign_keys() -> None:
    """Enforcement is off while SQLite rebuilds tables (env.py): check every key before committing."""
    broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"rebuilding the tables broke foreign keys: {broken[:10]}")


def upgrade():
    sqlite = op.get_bind().dialect.name == "sqlite"
    # Every delivery there is now may be named by a v1 token in an inbox; later ones never are.
    op.add_column('deliveries', sa.Column('accepts_v1_tokens', sa.Boolean(), nullable=False,
                                          server_default=sa.true()))
    if not sqlite:
        op.alter_column('deliveries', 'accepts_v1_tokens', server_default=sa.false())
        return

    def new_rows_refuse_v1_tokens(batch_op) -> None:
        batch_op.alter_column('accepts_v1_tokens', server_default=sa.false())

    _rebuild_sqlite('campaigns', autoincrement=True)
    _rebuild_sqlite('deliveries', autoincrement=True, change=new_rows_refuse_v1_tokens)
    _check_foreign_keys()


def downgrade():
    if op.get_bind().dialect.name != "sqlite":
        op.drop_column('deliveries', 'accepts_v1_tokens')
        return

    def drop_v1_flag(batch_op) -> None:
        batch_op.drop_column('accepts_v1_tokens')

    _rebuild_sqlite('deliveries', autoincrement=False, change=drop_v1_flag)
    _rebuild_sqlite('campaigns', autoincrement=False)
    _check_foreign_keys()
