"""suppression list and bounce/complaint events

- suppressions: addresses no campaign sends to (unique lower-cased email; a lifted one keeps its row).
- mail_events: every hard bounce, soft bounce and complaint report, recorded once per dedupe_key.
- subscribers.status gains the value "bounced" (a String column: no schema change).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 18:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

import mailapp.models.base


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('suppressions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('reason', sa.String(length=20), nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('created_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.Column('lifted_at', mailapp.models.base.UTCDateTime(), nullable=True),
    sa.Column('lifted_reason', sa.Text(), nullable=False),
    sa.Column('lifted_by', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suppressions')),
    sa.UniqueConstraint('email', name=op.f('uq_suppressions_email'))
    )
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_suppressions_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_suppressions_created_at'), ['created_at'], unique=False)

    op.create_table('mail_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('status_code', sa.String(length=20), nullable=False),
    sa.Column('diagnostic', sa.Text(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=True),
    sa.Column('occurred_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.Column('received_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_mail_events_subscriber_id_subscribers'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_events')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_mail_events_dedupe_key'))
    )
    with op.batch_alter_table('mail_events', schema=None) as batch_op:
        batch_op.create_index('ix_mail_events_campaign_kind', ['campaign_id', 'kind', 'occurred_at'], unique=False)
        batch_op.create_index('ix_mail_events_email_kind', ['email', 'kind', 'occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_events_delivery_id'), ['delivery_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_events_subscriber_id'), ['subscriber_id'], unique=False)


def downgrade():
    with op.batch_alter_table('mail_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mail_events_subscriber_id'))
        batch_op.drop_index(batch_op.f('ix_mail_events_delivery_id'))
        batch_op.drop_index('ix_mail_events_email_kind')
        batch_op.drop_index('ix_mail_events_campaign_kind')

    op.drop_table('mail_events')
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_suppressions_created_at'))
        batch_op.drop_index(batch_op.f('ix_suppressions_campaign_id'))

    op.drop_table('suppressions')
