"""opens through a mail provider's image proxy

- open_events.via_proxy: which mail provider's image proxy fetched the pixel ("gmail", "yahoo",
  "apple_mpp"; mailapp.tracking.machine.MAIL_PROXIES), NULL for a direct fetch. Opens recorded before
  this revision have NULL: Gmail and Yahoo opens before it stay machine opens, as they were counted.
- campaign_stats.proxy_opens: human opens that came through such a proxy, kept with the other counters.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 18:10:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('open_events') as batch_op:
        batch_op.add_column(sa.Column('via_proxy', sa.String(length=20), nullable=True))
    with op.batch_alter_table('campaign_stats') as batch_op:
        batch_op.add_column(sa.Column('proxy_opens', sa.Integer(), nullable=False, server_default='0'))


def downgrade():
    with op.batch_alter_table('campaign_stats') as batch_op:
        batch_op.drop_column('proxy_opens')
    with op.batch_alter_table('open_events') as batch_op:
        batch_op.drop_column('via_proxy')
