"""time zones: the viewer's and the schedule's

- users.timezone: the IANA zone the dashboard shows that user's times in ("" until their browser's zone
  fills it on first visit).
- campaigns.send_timezone: the IANA zone a schedule was picked in, so the schedule is shown in it.

Both are added with a constant server default, which PostgreSQL 11+ stores in the catalog without
rewriting the table.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 18:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), server_default='', nullable=False))
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('send_timezone', sa.String(length=64), server_default='', nullable=False))


def downgrade():
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('send_timezone')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('timezone')
