"""The schema comes from the migrations, and they agree with the models."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from mailapp.models import Base
from mailapp.models.delivery import DELIVERY_COUNT_TRIGGERS, ENGAGEMENT_TRIGGERS
from mailapp.models.tracking import HOURLY_ACTIVITY_TRIGGERS


def test_models_and_migrations_agree(db):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def _triggers(db) -> set[tuple[str, str]]:
    """(trigger, table) pairs the migrated database holds."""
    if db.engine.dialect.name == "postgresql":
        query = text(
            "SELECT tgname, relname FROM pg_trigger JOIN pg_class ON pg_class.oid = tgrelid "
            "WHERE NOT tgisinternal"
        )
    else:
        query = text("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'")
    with db.engine.connect() as connection:
        return {(name, table) for name, table in connection.execute(query)}


def test_the_counting_triggers_the_models_name_are_the_ones_the_migrations_install(db):
    named = {(name, "deliveries") for name in DELIVERY_COUNT_TRIGGERS} | {
        (name, name.split("_roll_up")[0]) for name in HOURLY_ACTIVITY_TRIGGERS
    } | {(name, name.split("_engagement")[0]) for name in ENGAGEMENT_TRIGGERS}
    assert _triggers(db) == named
