"""signup forms, consent records, double opt-in and public lists

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 18:55:54.050054

"""
from alembic import op
import sqlalchemy as sa

import mailapp.models.base


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('signup_forms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('intro', sa.Text(), nullable=False),
    sa.Column('consent_text', sa.Text(), nullable=False),
    sa.Column('button_text', sa.String(length=100), nullable=False),
    sa.Column('thank_you_text', sa.Text(), nullable=False),
    sa.Column('redirect_url', sa.String(length=2000), nullable=False),
    sa.Column('allowed_origins', sa.JSON(), nullable=False),
    sa.Column('ask_name', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('lists_choosable', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('created_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signup_forms')),
    sa.UniqueConstraint('slug', name=op.f('uq_signup_forms_slug'))
    )
    op.create_table('consent_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('form_id', sa.Integer(), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('consent_text', sa.Text(), nullable=False),
    sa.Column('list_ids', sa.JSON(), nullable=False),
    sa.Column('pending_list_ids', sa.JSON(), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=False),
    sa.Column('user_agent', sa.String(length=500), nullable=False),
    sa.Column('created_at', mailapp.models.base.UTCDateTime(), nullable=False),
    sa.Column('confirmation_sent_at', mailapp.models.base.UTCDateTime(), nullable=True),
    sa.Column('confirmed_at', mailapp.models.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['form_id'], ['signup_forms.id'], name=op.f('fk_consent_records_form_id_signup_forms'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_consent_records_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_records'))
    )
    with op.batch_alter_table('consent_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consent_records_subscriber_id'), ['subscriber_id'], unique=False)

    op.create_table('signup_form_lists',
    sa.Column('form_id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['form_id'], ['signup_forms.id'], name=op.f('fk_signup_form_lists_form_id_signup_forms'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], name=op.f('fk_signup_form_lists_list_id_lists'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('form_id', 'list_id', name=op.f('pk_signup_form_lists'))
    )
    with op.batch_alter_table('lists', schema=None) as batch_op:
        batch_op.add_column(sa.Column('double_opt_in', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('public', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('confirmation_layout_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('welcome_layout_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_lists_welcome_layout_id_layouts'), 'layouts', ['welcome_layout_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_lists_confirmation_layout_id_layouts'), 'layouts', ['confirmation_layout_id'], ['id'], ondelete='SET NULL')



def downgrade():
    with op.batch_alter_table('lists', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_lists_confirmation_layout_id_layouts'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_lists_welcome_layout_id_layouts'), type_='foreignkey')
        batch_op.drop_column('welcome_layout_id')
        batch_op.drop_column('confirmation_layout_id')
        batch_op.drop_column('public')
        batch_op.drop_column('double_opt_in')

    op.drop_table('signup_form_lists')
    with op.batch_alter_table('consent_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consent_records_subscriber_id'))

    op.drop_table('consent_records')
    op.drop_table('signup_forms')
