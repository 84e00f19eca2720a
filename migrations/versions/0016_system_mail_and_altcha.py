"""system messages (the log of confirmations, welcomes, invites and password resets); ALTCHA on signup forms

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 21:15:00

"""
from alembic import op
import sqlalchemy as sa

import mailapp.models.base


# revision identifiers, used by Alembic.
revision = "0016"
down_revision = "0015"
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

    with op.batch_alter_table('signup_forms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('altcha', sa.Boolean(), server_default=sa.false(), nullable=False))

    op.create_table('spent_altcha_challenges',
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.Column('expires_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('signature', name=op.f('pk_spent_altcha_challenges'))
    )
    with op.batch_alter_table('spent_altcha_challenges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spent_altcha_challenges_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('spent_altcha_challenges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spent_altcha_challenges_expires_at'))

    op.drop_table('spent_altcha_challenges')
    with op.batch_alter_table('signup_forms', schema=None) as batch_op:
        batch_op.drop_column('altcha')

    with op.batch_alter_table('system_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_system_messages_subscriber_id_id')

    op.drop_table('system_messages')
