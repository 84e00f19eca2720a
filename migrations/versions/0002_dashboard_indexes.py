"""dashboard indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 05:57:45.891938

"""
from alembic import op
import sqlalchemy as sa

import mailapp.models.base


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
