"""system messages: the log of confirmations, welcomes, invites and password resets

Revision ID: 0024
Revises: 0014
Create Date: 2026-12-03 21:15:00

"""
from alembic import op
import sqlalchemy as sa

import mailapp.models.base


# revision identifiers, used by Alembic.
revision = '0024'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('system_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('list_id', sa.Integer(), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('subject', sa.String(length=998), nullable=False),
    sa.Column('content_sealed', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('smtp_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('message_id', sa.String(length=300), nullable=False),
    sa.Column('relay_name', sa.String(length=200), nullable=False),
    sa.Column('created_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.Column('sent_at', mailapp.models.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], name=op.f('fk_system_messages_list_id_lists'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_system_messages_subscriber_id_subscribers'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_system_messages')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('system_messages', schema=None) as batch_op:
        batch_op.create_index('ix_system_messages_subscriber_id_id', ['subscriber_id', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('system_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_system_messages_subscriber_id_id')

    op.drop_table('system_messages')
