"""visual editor: a layout's MJML source beside its compiled HTML, and layout images

- layouts.mjml: what the visual editor (or an MJML upload) wrote; NULL for HTML layouts.
- layout_images: images uploaded for layouts, served publicly at /media/<id>-<digest>.<ext>.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 18:55:27.928112

"""
from alembic import op
import sqlalchemy as sa

import mailapp.models.base


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('layout_images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('content_type', sa.String(length=40), nullable=False),
    sa.Column('extension', sa.String(length=8), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_layout_images'))
    )
    with op.batch_alter_table('layout_images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_layout_images_digest'), ['digest'], unique=False)

    with op.batch_alter_table('layouts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mjml', sa.Text(), nullable=True))



def downgrade():
    with op.batch_alter_table('layouts', schema=None) as batch_op:
        batch_op.drop_column('mjml')

    with op.batch_alter_table('layout_images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_layout_images_digest'))

    op.drop_table('layout_images')
