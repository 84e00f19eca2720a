"""engagement: who opened or clicked, kept on deliveries and subscribers for segments at scale

- deliveries.engaged_at (first human open or click), deliveries.human_clicked_at (first human click),
  subscribers.last_engaged_at (latest human open or click of any campaign), filled from the events and
  kept from now on by triggers on open_events and click_events (ENGAGEMENT_TRIGGERS in
  mailapp.models.delivery), on both backends.
- Partial indexes on deliveries that segments' campaign rules read index-only: engaged, human-clicked,
  and sent-but-unengaged (the "did not open" resend).
- ix_open_events_human_at and ix_click_events_human_at are dropped: "opened within N days" now reads
  subscribers.last_engaged_at, and every open no longer pays for an index nothing reads.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 02:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

import mailapp.models.base


# revision identifiers, used by Alembic.
revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

HUMAN_ONLY = sa.text("is_machine = false")
DELIVERY_INDEXES = {
    "ix_deliveries_campaign_engaged": sa.text("engaged_at IS NOT NULL"),
    "ix_deliveries_campaign_human_clicked": sa.text("human_clicked_at IS NOT NULL"),
    "ix_deliveries_campaign_unengaged": sa.text("status = 'sent' AND engaged_at IS NULL"),
}

# One statement-level function for both event tables: each batch of inserted events moves each
# delivery's first engagement earlier and each subscriber's last engagement later, never the other way,
# so events recorded out of order (a replayed buffer) leave the same result.
POSTGRESQL_FUNCTION = """
CREATE FUNCTION record_engagement() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    clicks boolean := TG_TABLE_NAME = 'click_events';
BEGIN
    UPDATE deliveries AS d
    SET engaged_at = LEAST(COALESCE(d.engaged_at, e.first_at), e.first_at),
        human_clicked_at = CASE WHEN clicks
            THEN LEAST(COALESCE(d.human_clicked_at, e.first_at), e.first_at)
            ELSE d.human_clicked_at END
    FROM (SELECT delivery_id, min(at) AS first_at FROM new_rows WHERE NOT is_machine GROUP BY delivery_id) AS e
    WHERE d.id = e.delivery_id
      AND (d.engaged_at IS NULL OR d.engaged_at > e.first_at
           OR (clicks AND (d.human_clicked_at IS NULL OR d.human_clicked_at > e.first_at)));
    UPDATE subscribers AS s SET last_engaged_at = e.last_at
    FROM (SELECT d.subscriber_id, max(n.at) AS last_at
          FROM new_rows AS n JOIN deliveries AS d ON d.id = n.delivery_id
          WHERE NOT n.is_machine AND d.subscriber_id IS NOT NULL GROUP BY d.subscriber_id) AS e
    WHERE s.id = e.subscriber_id AND (s.last_engaged_at IS NULL OR s.last_engaged_at < e.last_at);
    RETURN NULL;
END
$$
"""
POSTGRESQL_TRIGGERS = [
    POSTGRESQL_FUNCTION,
    "CREATE TRIGGER open_events_engagement AFTER INSERT ON open_events REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION record_engagement()",
    "CREATE TRIGGER click_events_engagement AFTER INSERT ON click_events REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION record_engagement()",
]

# SQLite has no statement triggers: the same rules, one event at a time. UTCDateTime stores fixed-width
# ISO text there, so text order is time order.
_SQLITE_ENGAGED = (
    "UPDATE deliveries SET engaged_at = NEW.at WHERE id = NEW.delivery_id "
    "AND (engaged_at IS NULL OR engaged_at > NEW.at); "
    "UPDATE subscribers SET last_engaged_at = NEW.at "
    "WHERE id = (SELECT subscriber_id FROM deliveries WHERE id = NEW.delivery_id) "
    "AND (last_engaged_at IS NULL OR last_engaged_at < NEW.at); "
)
SQLITE_TRIGGERS = [
    "CREATE TRIGGER open_events_engagement AFTER INSERT ON open_events WHEN NOT NEW.is_machine BEGIN "
    + _SQLITE_ENGAGED + "END",
    "CREATE TRIGGER click_events_engagement AFTER INSERT ON click_events WHEN NOT NEW.is_machine BEGIN "
    + _SQLITE_ENGAGED
    + "UPDATE deliveries SET human_clicked_at = NEW.at WHERE id = NEW.delivery_id "
    "AND (human_clicked_at IS NULL OR human_clicked_at > NEW.at); END",
]

# The events already recorded, in one pass over each table (the same SQL on both backends).
HUMAN_EVENTS = (
    "SELECT delivery_id, at, false AS clicked FROM open_events WHERE NOT is_machine "
    "UNION ALL SELECT delivery_id, at, true AS clicked FROM click_events WHERE NOT is_machine"
)
BACKFILL = [
    "UPDATE deliveries SET engaged_at = e.first_at, human_clicked_at = e.first_click_at "
    "FROM (SELECT delivery_id, min(at) AS first_at, min(at) FILTER (WHERE clicked) AS first_click_at "
    f"FROM ({HUMAN_EVENTS}) AS x GROUP BY delivery_id) AS e WHERE deliveries.id = e.delivery_id",
    "UPDATE subscribers SET last_engaged_at = e.last_at "
    "FROM (SELECT d.subscriber_id, max(x.at) AS last_at "
    f"FROM ({HUMAN_EVENTS}) AS x JOIN deliveries AS d ON d.id = x.delivery_id "
    "WHERE d.subscriber_id IS NOT NULL GROUP BY d.subscriber_id) AS e WHERE subscribers.id = e.subscriber_id",
]


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column("deliveries", sa.Column("engaged_at", mailapp.models.base.UTCDateTime(), nullable=True))
    op.add_column("deliveries", sa.Column("human_clicked_at", mailapp.models.base.UTCDateTime(), nullable=True))
    op.add_column("subscribers", sa.Column("last_engaged_at", mailapp.models.base.UTCDateTime(), nullable=True))
    for statement in BACKFILL:
        op.execute(statement)
    # Built after the backfill: one sorted build each instead of an index update per filled row.
    for name, where in DELIVERY_INDEXES.items():
        op.create_index(name, "deliveries", ["campaign_id", "subscriber_id"], unique=False,
                        postgresql_where=where, sqlite_where=where)
    op.drop_index("ix_open_events_human_at", table_name="open_events")
    op.drop_index("ix_click_events_human_at", table_name="click_events")
    for statement in POSTGRESQL_TRIGGERS if postgres else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    for trigger, table in (("open_events_engagement", "open_events"), ("click_events_engagement", "click_events")):
        op.execute(f"DROP TRIGGER {trigger} ON {table}" if postgres else f"DROP TRIGGER {trigger}")
    if postgres:
        op.execute("DROP FUNCTION record_engagement()")
    op.create_index("ix_open_events_human_at", "open_events", ["at", "delivery_id"], unique=False,
                    postgresql_where=HUMAN_ONLY, sqlite_where=HUMAN_ONLY)
    op.create_index("ix_click_events_human_at", "click_events", ["at", "delivery_id"], unique=False,
                    postgresql_where=HUMAN_ONLY, sqlite_where=HUMAN_ONLY)
    for name in DELIVERY_INDEXES:
        op.drop_index(name, table_name="deliveries")
    # Plain ALTER TABLE ... DROP COLUMN on SQLite too (3.35+): a batch rebuild of deliveries would take its
    # counting triggers with it.
    op.drop_column("subscribers", "last_engaged_at")
    op.drop_column("deliveries", "human_clicked_at")
    op.drop_column("deliveries", "engaged_at")
