"""sending domains: DKIM keys (sealed) per domain, and the last DNS check

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 18:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

import mailapp.models.base


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sending_domains',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('selector', sa.String(length=63), nullable=False),
    sa.Column('rsa_private_key_sealed', sa.Text(), nullable=False),
    sa.Column('rsa_public_key', sa.Text(), nullable=False),
    sa.Column('ed25519_selector', sa.String(length=63), nullable=True),
    sa.Column('ed25519_private_key_sealed', sa.Text(), nullable=True),
    sa.Column('ed25519_public_key', sa.Text(), nullable=True),
    sa.Column('created_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.Column('checked_at', mailapp.models.base.UTCDateTime(), nullable=True),
    sa.Column('check_passed', sa.Boolean(), nullable=True),
    sa.Column('check_findings', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sending_domains')),
    sa.UniqueConstraint('domain', name=op.f('uq_sending_domains_domain'))
    )


def downgrade():
    op.drop_table('sending_domains')
