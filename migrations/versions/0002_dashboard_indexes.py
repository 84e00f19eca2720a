"""dashboard indexes

Maintained counts and rollups, so the dashboard reads a few rows instead of counting millions:
- campaign_delivery_counts: deliveries per campaign and status, kept by triggers on deliveries (campaign
  progress, sent/failed figures);
- campaign_hourly_activity: opens and clicks per campaign and hour, kept by triggers on open_events and
  click_events (the report's timeline);
- partial indexes for the recipient activity filters (human openers and clickers, unsubscribes).
The delivery-count cache columns of campaign_stats go: the maintained counts replace them.

PostgreSQL triggers are per statement, with transition tables: a statement that changes a thousand
deliveries writes one row per (campaign, status) it changed, and appends it (no row is updated, so two
senders never wait on each other's counter). SQLite, with one writer at a time, keeps one row per
(campaign, status) from per-row triggers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 05:57:45.891938

"""
from alembic import op
import sqlalchemy as sa

import mailapp.models.base


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

HUMAN_ONLY = sa.text("is_machine = false")
UNSUBSCRIBED = sa.text("unsubscribed_at IS NOT NULL")

POSTGRESQL_TRIGGERS = [
    """
    CREATE FUNCTION count_delivery_statuses() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO campaign_delivery_counts (campaign_id, status, deliveries)
            SELECT campaign_id, status, count(*) FROM new_rows GROUP BY campaign_id, status;
        ELSIF TG_OP = 'UPDATE' THEN
            -- Rows whose status did not change cancel out.
            INSERT INTO campaign_delivery_counts (campaign_id, status, deliveries)
            SELECT campaign_id, status, sum(change) FROM (
                SELECT campaign_id, status, 1 AS change FROM new_rows
                UNION ALL
                SELECT campaign_id, status, -1 AS change FROM old_rows
            ) AS changes
            GROUP BY campaign_id, status HAVING sum(change) <> 0;
        ELSE
            -- A campaign being deleted takes its counts with it.
            INSERT INTO campaign_delivery_counts (campaign_id, status, deliveries)
            SELECT campaign_id, status, -count(*) FROM old_rows
            WHERE EXISTS (SELECT 1 FROM campaigns WHERE campaigns.id = old_rows.campaign_id)
            GROUP BY campaign_id, status;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER deliveries_count_insert AFTER INSERT ON deliveries REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION count_delivery_statuses()",
    "CREATE TRIGGER deliveries_count_update AFTER UPDATE ON deliveries "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION count_delivery_statuses()",
    "CREATE TRIGGER deliveries_count_delete AFTER DELETE ON deliveries REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION count_delivery_statuses()",
    """
    CREATE FUNCTION roll_up_open_events() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- Ordered, so concurrent writers lock the hour rows in the same order.
        INSERT INTO campaign_hourly_activity AS a (campaign_id, hour, human_opens, machine_opens, clicks)
        SELECT campaign_id, date_trunc('hour', at),
               count(*) FILTER (WHERE NOT is_machine), count(*) FILTER (WHERE is_machine), 0
        FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (campaign_id, hour) DO UPDATE
        SET human_opens = a.human_opens + excluded.human_opens,
            machine_opens = a.machine_opens + excluded.machine_opens;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER open_events_roll_up AFTER INSERT ON open_events REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION roll_up_open_events()",
    """
    CREATE FUNCTION roll_up_click_events() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO campaign_hourly_activity AS a (campaign_id, hour, human_opens, machine_opens, clicks)
        SELECT campaign_id, date_trunc('hour', at), 0, 0, count(*)
        FROM new_rows WHERE NOT is_machine GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (campaign_id, hour) DO UPDATE SET clicks = a.clicks + excluded.clicks;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER click_events_roll_up AFTER INSERT ON click_events REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION roll_up_click_events()",
]

# SQLite stores UTCDateTime as 'YYYY-MM-DD HH:MM:SS.ffffff'; the hour is stored the same way.
SQLITE_HOUR = "strftime('%Y-%m-%d %H:00:00.000000', {})"


def _sqlite_count(campaign: str, status: str, change: str) -> str:
    """Add `change` to the one row of (campaign, status), creating it when there is none."""
    row = (f"(SELECT min(id) FROM campaign_delivery_counts WHERE campaign_id = {campaign} "
           f"AND status = {status})")
    return (
        f"UPDATE campaign_delivery_counts SET deliveries = deliveries + {change} WHERE id = {row}; "
        f"INSERT INTO campaign_delivery_counts (campaign_id, status, deliveries) "
        f"SELECT {campaign}, {status}, {change} WHERE {row} IS NULL;"
    )


SQLITE_TRIGGERS = [
    "CREATE TRIGGER deliveries_count_insert AFTER INSERT ON deliveries BEGIN "
    + _sqlite_count("NEW.campaign_id", "NEW.status", "1") + " END",
    "CREATE TRIGGER deliveries_count_update AFTER UPDATE OF status, campaign_id ON deliveries "
    "WHEN OLD.status IS NOT NEW.status OR OLD.campaign_id IS NOT NEW.campaign_id BEGIN "
    + _sqlite_count("OLD.campaign_id", "OLD.status", "-1")
    + _sqlite_count("NEW.campaign_id", "NEW.status", "1") + " END",
    "CREATE TRIGGER deliveries_count_delete AFTER DELETE ON deliveries "
    "WHEN EXISTS (SELECT 1 FROM campaigns WHERE campaigns.id = OLD.campaign_id) BEGIN "
    + _sqlite_count("OLD.campaign_id", "OLD.status", "-1") + " END",
    "CREATE TRIGGER open_events_roll_up AFTER INSERT ON open_events BEGIN "
    "INSERT INTO campaign_hourly_activity (campaign_id, hour, human_opens, machine_opens, clicks) "
    f"VALUES (NEW.campaign_id, {SQLITE_HOUR.format('NEW.at')}, "
    "CASE WHEN NEW.is_machine THEN 0 ELSE 1 END, CASE WHEN NEW.is_machine THEN 1 ELSE 0 END, 0) "
    "ON CONFLICT (campaign_id, hour) DO UPDATE SET human_opens = human_opens + excluded.human_opens, "
    "machine_opens = machine_opens + excluded.machine_opens; END",
    "CREATE TRIGGER click_events_roll_up AFTER INSERT ON click_events WHEN NOT NEW.is_machine BEGIN "
    "INSERT INTO campaign_hourly_activity (campaign_id, hour, human_opens, machine_opens, clicks) "
    f"VALUES (NEW.campaign_id, {SQLITE_HOUR.format('NEW.at')}, 0, 0, 1) "
    "ON CONFLICT (campaign_id, hour) DO UPDATE SET clicks = clicks + 1; END",
]


def _backfill(postgres: bool) -> None:
    """Counts and rollups of the rows already there. The triggers exist by now, and on PostgreSQL
    creating them locked the tables against writes until this migration commits, so nothing is
    counted twice or missed."""
    hour = "date_trunc('hour', at)" if postgres else SQLITE_HOUR.format("at")
    op.execute(
        "INSERT INTO campaign_delivery_counts (campaign_id, status, deliveries) "
        "SELECT campaign_id, status, count(*) FROM deliveries GROUP BY campaign_id, status"
    )
    op.execute(
        "INSERT INTO campaign_hourly_activity (campaign_id, hour, human_opens, machine_opens, clicks) "
        "SELECT campaign_id, hour, sum(human_opens), sum(machine_opens), sum(clicks) FROM ("
        f"  SELECT campaign_id, {hour} AS hour, "
        "     sum(CASE WHEN is_machine THEN 0 ELSE 1 END) AS human_opens, "
        "     sum(CASE WHEN is_machine THEN 1 ELSE 0 END) AS machine_opens, 0 AS clicks "
        "  FROM open_events GROUP BY 1, 2 "
        "  UNION ALL "
        f"  SELECT campaign_id, {hour}, 0, 0, count(*) FROM click_events WHERE NOT is_machine GROUP BY 1, 2"
        ") AS activity GROUP BY campaign_id, hour"
    )


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table('campaign_delivery_counts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('deliveries', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_delivery_counts_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_delivery_counts'))
    )
    with op.batch_alter_table('campaign_delivery_counts', schema=None) as batch_op:
        batch_op.create_index('ix_campaign_delivery_counts_campaign_status', ['campaign_id', 'status'], unique=False)

    op.create_table('campaign_hourly_activity',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('hour', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.Column('human_opens', sa.Integer(), nullable=False),
    sa.Column('machine_opens', sa.Integer(), nullable=False),
    sa.Column('clicks', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_hourly_activity_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'hour', name=op.f('pk_campaign_hourly_activity'))
    )
    with op.batch_alter_table('campaign_stats', schema=None) as batch_op:
        batch_op.drop_column('counted_for_finished_at')
        batch_op.drop_column('failed')
        batch_op.drop_column('recipients')
        batch_op.drop_column('sent')

    op.create_index('ix_deliveries_campaign_unsubscribed', 'deliveries', ['campaign_id', 'id'], unique=False,
                    postgresql_where=UNSUBSCRIBED, sqlite_where=UNSUBSCRIBED)
    op.create_index('ix_open_events_campaign_human_delivery', 'open_events', ['campaign_id', 'delivery_id'],
                    unique=False, postgresql_where=HUMAN_ONLY, sqlite_where=HUMAN_ONLY)
    op.create_index('ix_click_events_campaign_human_delivery', 'click_events', ['campaign_id', 'delivery_id'],
                    unique=False, postgresql_where=HUMAN_ONLY, sqlite_where=HUMAN_ONLY)

    for statement in POSTGRESQL_TRIGGERS if postgres else SQLITE_TRIGGERS:
        op.execute(statement)
    _backfill(postgres)


def downgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    for trigger, table in (
        ("click_events_roll_up", "click_events"),
        ("open_events_roll_up", "open_events"),
        ("deliveries_count_delete", "deliveries"),
        ("deliveries_count_update", "deliveries"),
        ("deliveries_count_insert", "deliveries"),
    ):
        op.execute(f"DROP TRIGGER {trigger} ON {table}" if postgres else f"DROP TRIGGER {trigger}")
    if postgres:
        for function in ("roll_up_click_events", "roll_up_open_events", "count_delivery_statuses"):
            op.execute(f"DROP FUNCTION {function}()")
    op.drop_index('ix_click_events_campaign_human_delivery', table_name='click_events')
    op.drop_index('ix_open_events_campaign_human_delivery', table_name='open_events')
    op.drop_index('ix_deliveries_campaign_unsubscribed', table_name='deliveries')

    with op.batch_alter_table('campaign_stats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sent', sa.INTEGER(), nullable=True))
        batch_op.add_column(sa.Column('recipients', sa.INTEGER(), nullable=True))
        batch_op.add_column(sa.Column('failed', sa.INTEGER(), nullable=True))
        batch_op.add_column(sa.Column('counted_for_finished_at', mailapp.models.base.UTCDateTime(), nullable=True))

    op.drop_table('campaign_hourly_activity')
    with op.batch_alter_table('campaign_delivery_counts', schema=None) as batch_op:
        batch_op.drop_index('ix_campaign_delivery_counts_campaign_status')

    op.drop_table('campaign_delivery_counts')
