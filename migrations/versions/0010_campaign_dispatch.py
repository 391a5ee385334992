"""Campaign dispatch: the campaign's dispatch lease, deferred and claimed deliveries, owner tags

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 19:00:00

``campaign.lease_owner``/``lease_until``: the one dispatcher sending a campaign (a process or worker
renews it; a dead one's lease runs out and the next dispatcher takes over, see docs/CAMPAIGNS.md
"Exactly once"). ``delivery.not_before`` (an SMS waiting for the sending window or the daily cap) and
``delivery.claimed_at`` (when a dispatcher moved it to ``sending``: WeChat de-duplicates
``client_msg_id`` for 10 minutes from then). ``owner_tag``: free tags on owners (VIP, 商铺, 出租 …) that a
campaign's audience can select. Plain ``ADD COLUMN`` only (no batch rebuild on SQLite).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.models

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('campaign', sa.Column('lease_owner', sa.String(length=64), nullable=True))
    op.add_column('campaign', sa.Column('lease_until', bot.store.models.UTCDateTime(timezone=True), nullable=True))
    op.add_column('delivery', sa.Column('not_before', bot.store.models.UTCDateTime(timezone=True), nullable=True))
    op.add_column('delivery', sa.Column('claimed_at', bot.store.models.UTCDateTime(timezone=True), nullable=True))
    op.create_table('owner_tag',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=30), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['owner.id'], name=op.f('fk_owner_tag_owner_id_owner'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_owner_tag')),
    sa.UniqueConstraint('owner_id', 'tag', name=op.f('uq_owner_tag_owner_id'))
    )
    op.create_index(op.f('ix_owner_tag_tag'), 'owner_tag', ['tag'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_owner_tag_tag'), table_name='owner_tag')
    op.drop_table('owner_tag')
    op.drop_column('delivery', 'claimed_at')
    op.drop_column('delivery', 'not_before')
    op.drop_column('campaign', 'lease_until')
    op.drop_column('campaign', 'lease_owner')
