"""segments: saved rule trees, the segments a campaign targets, and the indexes of recent human events

- segments: a name and a validated rule tree (mailapp.segment_rules).
- campaign_segments: a campaign's recipients are its lists' members plus its segments' matches.
- ix_open_events_human_at, ix_click_events_human_at: "opened within N days" reads only recent human
  events.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 19:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

import mailapp.models.base


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

HUMAN_ONLY = sa.text("is_machine = false")


def upgrade():
    op.create_table('segments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.Column('created_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.Column('updated_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_segments')),
    sa.UniqueConstraint('name', name=op.f('uq_segments_name'))
    )
    op.create_table('campaign_segments',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('segment_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_segments_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['segment_id'], ['segments.id'], name=op.f('fk_campaign_segments_segment_id_segments'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('campaign_id', 'segment_id', name=op.f('pk_campaign_segments'))
    )
    op.create_index('ix_open_events_human_at', 'open_events', ['at', 'delivery_id'], unique=False,
                    postgresql_where=HUMAN_ONLY, sqlite_where=HUMAN_ONLY)
    op.create_index('ix_click_events_human_at', 'click_events', ['at', 'delivery_id'], unique=False,
                    postgresql_where=HUMAN_ONLY, sqlite_where=HUMAN_ONLY)


def downgrade():
    op.drop_index('ix_click_events_human_at', table_name='click_events')
    op.drop_index('ix_open_events_human_at', table_name='open_events')
    op.drop_table('campaign_segments')
    op.drop_table('segments')
