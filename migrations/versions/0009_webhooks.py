"""provider webhooks: one-time tokens already accepted, large batches waiting to be recorded

- webhook_replay_tokens: Mailgun's signature tokens, kept for the replay window so that a captured
  webhook request cannot be sent again.
- webhook_batches: verified requests with many events, recorded by a task after the 2xx.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 18:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

import mailapp.models.base


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('webhook_batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('received_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_batches'))
    )
    with op.batch_alter_table('webhook_batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_batches_received_at'), ['received_at'], unique=False)

    op.create_table('webhook_replay_tokens',
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('token', sa.String(length=100), nullable=False),
    sa.Column('expires_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('provider', 'token', name=op.f('pk_webhook_replay_tokens'))
    )
    with op.batch_alter_table('webhook_replay_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_replay_tokens_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('webhook_replay_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_replay_tokens_expires_at'))

    op.drop_table('webhook_replay_tokens')
    with op.batch_alter_table('webhook_batches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_batches_received_at'))

    op.drop_table('webhook_batches')
