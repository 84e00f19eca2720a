"""SMTP relays and sender identities

- smtp_relays: several relays with their own limits (rate per second, caps per hour and day), a backup
  each may fail over to, and the failover state every worker reads.
- sender_identities: saved From name, From address and Reply-To, optionally naming a relay.
- campaigns.sender_identity_id, campaigns.relay_id: what a campaign picked; campaigns.waiting_until:
  when a campaign held back by a relay's cap resumes.
- deliveries.relay_name: the relay that accepted each message.

deliveries gets a plain ADD COLUMN on SQLite too (no rebuild: it carries the counting triggers of 0002).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 17:45:00.000000

"""
import contextlib
import re

from alembic import op
import sqlalchemy as sa

import mailapp.models.base


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


@contextlib.contextmanager
def _campaigns_rebuilt():
    """Batch mode on campaigns. SQLite rebuilds the table (env.py turns key enforcement off meanwhile, or
    the DROP of the old table would cascade to its deliveries): the triggers that name it go first and
    come back after, with its indexes exactly as they were, as in 0003."""
    sqlite = op.get_bind().dialect.name == 'sqlite'
    indexes: list = []
    triggers: list = []
    if sqlite:
        rows = op.get_bind().execute(
            sa.text("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
                    "AND sql IS NOT NULL ORDER BY name")
        ).all()
        mentions = re.compile(r"\bcampaigns\b")
        indexes = [(name, sql) for kind, name, table, sql in rows if kind == 'index' and table == 'campaigns']
        triggers = [(name, sql) for kind, name, table, sql in rows
                    if kind == 'trigger' and (table == 'campaigns' or mentions.search(sql))]
        for name, _ in triggers:
            op.execute(f'DROP TRIGGER "{name}"')
    with op.batch_alter_table('campaigns', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        yield batch_op
    for name, sql in indexes:
        op.execute(f'DROP INDEX IF EXISTS "{name}"')
        op.execute(sql)
    for _, sql in triggers:
        op.execute(sql)
    if sqlite:
        broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"rebuilding campaigns broke foreign keys: {broken[:10]}")


def upgrade():
    op.create_table('smtp_relays',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('tls_mode', sa.String(length=10), nullable=False),
    sa.Column('username', sa.String(length=320), nullable=False),
    sa.Column('password_sealed', sa.Text(), nullable=False),
    sa.Column('max_connections', sa.Integer(), nullable=False),
    sa.Column('rate_per_second', sa.Double(), nullable=False),
    sa.Column('cap_per_hour', sa.Integer(), nullable=False),
    sa.Column('cap_per_day', sa.Integer(), nullable=False),
    sa.Column('backup_relay_id', sa.Integer(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('failed_over_until', mailapp.models.base.UTCDateTime(), nullable=True),
    sa.Column('failover_reason', sa.Text(), nullable=False),
    sa.Column('created_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.Column('updated_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['backup_relay_id'], ['smtp_relays.id'], name=op.f('fk_smtp_relays_backup_relay_id_smtp_relays'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_smtp_relays')),
    sa.UniqueConstraint('name', name=op.f('uq_smtp_relays_name'))
    )
    op.create_table('sender_identities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('from_name', sa.String(length=200), nullable=False),
    sa.Column('from_email', sa.String(length=320), nullable=False),
    sa.Column('reply_to', sa.String(length=320), nullable=False),
    sa.Column('relay_id', sa.Integer(), nullable=True),
    sa.Column('created_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.Column('updated_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['relay_id'], ['smtp_relays.id'], name=op.f('fk_sender_identities_relay_id_smtp_relays'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sender_identities')),
    sa.UniqueConstraint('name', name=op.f('uq_sender_identities_name'))
    )
    with _campaigns_rebuilt() as batch_op:
        batch_op.add_column(sa.Column('sender_identity_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('relay_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('waiting_until', mailapp.models.base.UTCDateTime(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_campaigns_sender_identity_id_sender_identities'),
                                    'sender_identities', ['sender_identity_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_campaigns_relay_id_smtp_relays'), 'smtp_relays',
                                    ['relay_id'], ['id'], ondelete='SET NULL')
    op.add_column('deliveries', sa.Column('relay_name', sa.String(length=200), server_default='', nullable=False))


def downgrade():
    op.drop_column('deliveries', 'relay_name')
    with _campaigns_rebuilt() as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_campaigns_relay_id_smtp_relays'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_campaigns_sender_identity_id_sender_identities'),
                                 type_='foreignkey')
        batch_op.drop_column('waiting_until')
        batch_op.drop_column('relay_id')
        batch_op.drop_column('sender_identity_id')
    op.drop_table('sender_identities')
    op.drop_table('smtp_relays')
