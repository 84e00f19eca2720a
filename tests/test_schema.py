"""The schema comes from the migrations, and they agree with the models."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mailapp.models import Base


def test_models_and_migrations_agree(db):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
