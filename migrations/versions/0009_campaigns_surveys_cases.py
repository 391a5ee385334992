"""Campaigns and deliveries, the signed collection record, surveys and the case library

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 18:43:59

The shared schema of the campaigns issue and the surveys issue: ``campaign`` gains its project,
audience rule, parameters, channels, schedule and approval; ``delivery`` its house, recipient,
rendered text and delivery times; ``certificate_record`` the counter's signed collection record (who
collected, owner or proxy with 委托书, ID checked, reminders); ``survey_template`` its kind and project;
``survey_response`` its life (scheduled → invited → complete/expired), channel, source (bot or staff)
and the copied dimensions the figures group by (stage, category, engineer); ``ticket.related_id``
links a recovery ticket to the ticket it follows; ``case_entry`` is the case library (客服案例库).

NOT NULL columns added to existing tables carry a server default so existing rows migrate. ``ticket``
gets its column with a plain ``ADD COLUMN`` (no batch rebuild on SQLite, which would drop the FTS
triggers of migration 0008).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.models

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('case_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('area', sa.String(length=20), nullable=True),
    sa.Column('category', sa.String(length=30), nullable=True),
    sa.Column('happened', sa.Text(), nullable=False),
    sa.Column('learned', sa.Text(), nullable=False),
    sa.Column('audience', sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('conversation_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=50), nullable=True),
    sa.Column('updated_at', bot.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', bot.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversation.id'], name=op.f('fk_case_entry_conversation_id_conversation')),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_case_entry_project_id_project')),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_case_entry_ticket_id_ticket')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_entry'))
    )
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.add_column(sa.Column('project_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('audience', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column('params', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column('channels', sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column('urgent', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('scheduled_at', bot.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('created_by', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('approved_by', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('approved_at', bot.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('started_at', bot.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('finished_at', bot.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('updated_at', bot.store.models.UTCDateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()))
        batch_op.alter_column('status',
               existing_type=sa.VARCHAR(length=12),
               type_=sa.String(length=20),
               existing_nullable=False)
        batch_op.create_index(batch_op.f('ix_campaign_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_campaign_status'), ['status'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_campaign_project_id_project'), 'project', ['project_id'], ['id'])

    with op.batch_alter_table('certificate_record', schema=None) as batch_op:
        batch_op.add_column(sa.Column('collector_name', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('collector_relation', sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column('proxy_letter', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('id_checked', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('reminded_at', bot.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reminder_count', sa.Integer(), nullable=False, server_default='0'))

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('house_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('recipient', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('text', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('sent_at', bot.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('delivered_at', bot.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('updated_at', bot.store.models.UTCDateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()))
        batch_op.alter_column('status',
               existing_type=sa.VARCHAR(length=12),
               type_=sa.String(length=16),
               existing_nullable=False)
        batch_op.drop_index(batch_op.f('ix_delivery_campaign_id'))
        batch_op.create_index('ix_delivery_campaign_status', ['campaign_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_owner_id'), ['owner_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_delivery_house_id_house'), 'house', ['house_id'], ['id'])

    with op.batch_alter_table('survey_response', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=20), nullable=False, server_default='repair'))
        batch_op.add_column(sa.Column('project_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('house_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('campaign_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('status', sa.String(length=16), nullable=False, server_default='scheduled'))
        batch_op.add_column(sa.Column('channel', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('source', sa.String(length=10), nullable=False, server_default='bot'))
        batch_op.add_column(sa.Column('due_at', bot.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('invited_at', bot.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('completed_at', bot.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('stage', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('category', sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column('engineer_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('recorded_by', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('answers', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column('recovery_ticket_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_survey_response_owner_id'), ['owner_id'], unique=False)
        batch_op.create_index('ix_survey_response_project_completed', ['project_id', 'completed_at'], unique=False)
        batch_op.create_index('ix_survey_response_status_due', ['status', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_survey_response_ticket_id'), ['ticket_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_survey_response_recovery_ticket_id_ticket'), 'ticket', ['recovery_ticket_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_survey_response_campaign_id_campaign'), 'campaign', ['campaign_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_survey_response_house_id_house'), 'house', ['house_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_survey_response_engineer_id_staff_user'), 'staff_user', ['engineer_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_survey_response_project_id_project'), 'project', ['project_id'], ['id'])

    with op.batch_alter_table('survey_template', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=20), nullable=False, server_default='repair'))
        batch_op.add_column(sa.Column('project_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('active', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('updated_by', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('updated_at', bot.store.models.UTCDateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()))
        batch_op.create_index(batch_op.f('ix_survey_template_kind'), ['kind'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_survey_template_project_id_project'), 'project', ['project_id'], ['id'])

    # Not batch_alter_table: on SQLite that rebuilds ``ticket`` and drops its FTS triggers (0008).
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE ticket ADD COLUMN related_id INTEGER "
                   "CONSTRAINT fk_ticket_related_id_ticket REFERENCES ticket (id)")
    else:
        op.add_column('ticket', sa.Column('related_id', sa.Integer(), nullable=True))
        op.create_foreign_key('fk_ticket_related_id_ticket', 'ticket', 'ticket', ['related_id'], ['id'])



def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_column('ticket', 'related_id')  # SQLite 3.35+: no batch rebuild (FTS triggers stay)
    else:
        op.drop_constraint('fk_ticket_related_id_ticket', 'ticket', type_='foreignkey')
        op.drop_column('ticket', 'related_id')

    with op.batch_alter_table('survey_template', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_survey_template_project_id_project'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_survey_template_kind'))
        batch_op.drop_column('updated_at')
        batch_op.drop_column('updated_by')
        batch_op.drop_column('active')
        batch_op.drop_column('project_id')
        batch_op.drop_column('kind')

    with op.batch_alter_table('survey_response', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_survey_response_project_id_project'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_survey_response_engineer_id_staff_user'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_survey_response_house_id_house'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_survey_response_campaign_id_campaign'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_survey_response_recovery_ticket_id_ticket'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_survey_response_ticket_id'))
        batch_op.drop_index('ix_survey_response_status_due')
        batch_op.drop_index('ix_survey_response_project_completed')
        batch_op.drop_index(batch_op.f('ix_survey_response_owner_id'))
        batch_op.drop_column('recovery_ticket_id')
        batch_op.drop_column('answers')
        batch_op.drop_column('recorded_by')
        batch_op.drop_column('engineer_id')
        batch_op.drop_column('category')
        batch_op.drop_column('stage')
        batch_op.drop_column('completed_at')
        batch_op.drop_column('invited_at')
        batch_op.drop_column('due_at')
        batch_op.drop_column('source')
        batch_op.drop_column('channel')
        batch_op.drop_column('status')
        batch_op.drop_column('campaign_id')
        batch_op.drop_column('house_id')
        batch_op.drop_column('project_id')
        batch_op.drop_column('kind')

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_delivery_house_id_house'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_delivery_owner_id'))
        batch_op.drop_index('ix_delivery_campaign_status')
        batch_op.create_index(batch_op.f('ix_delivery_campaign_id'), ['campaign_id'], unique=False)
        batch_op.alter_column('status',
               existing_type=sa.String(length=16),
               type_=sa.VARCHAR(length=12),
               existing_nullable=False)
        batch_op.drop_column('updated_at')
        batch_op.drop_column('delivered_at')
        batch_op.drop_column('sent_at')
        batch_op.drop_column('text')
        batch_op.drop_column('recipient')
        batch_op.drop_column('house_id')

    with op.batch_alter_table('certificate_record', schema=None) as batch_op:
        batch_op.drop_column('reminder_count')
        batch_op.drop_column('reminded_at')
        batch_op.drop_column('id_checked')
        batch_op.drop_column('proxy_letter')
        batch_op.drop_column('collector_relation')
        batch_op.drop_column('collector_name')

    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_campaign_project_id_project'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_campaign_status'))
        batch_op.drop_index(batch_op.f('ix_campaign_kind'))
        batch_op.alter_column('status',
               existing_type=sa.String(length=20),
               type_=sa.VARCHAR(length=12),
               existing_nullable=False)
        batch_op.drop_column('updated_at')
        batch_op.drop_column('finished_at')
        batch_op.drop_column('started_at')
        batch_op.drop_column('approved_at')
        batch_op.drop_column('approved_by')
        batch_op.drop_column('created_by')
        batch_op.drop_column('scheduled_at')
        batch_op.drop_column('urgent')
        batch_op.drop_column('channels')
        batch_op.drop_column('params')
        batch_op.drop_column('audience')
        batch_op.drop_column('project_id')

    op.drop_table('case_entry')
