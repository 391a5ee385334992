"""message.handled_at: when the bot's turn for an inbound message finished

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 08:30:00

An inbound message is committed before its webhook is answered; its turn runs afterwards. A process
that dies in between (a crash, a kill, a backlog at shutdown) used to leave the message stored but never
answered. The turn now stamps ``handled_at``; the engine's recovery sweep runs the turns of messages
left unstamped (``bot/engine.py``), found through a partial index that holds only those.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNHANDLED = sa.text("direction = 'in' AND handled_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("handled_at", bot.store.models.UTCDateTime(timezone=True), nullable=True))
    # Messages stored before this revision were handled by the code of their time: do not replay them.
    op.execute("UPDATE message SET handled_at = at WHERE direction = 'in'")
    op.create_index(
        "ix_message_unhandled", "message", ["id"], unique=False, postgresql_where=UNHANDLED, sqlite_where=UNHANDLED
    )


def downgrade() -> None:
    op.drop_index("ix_message_unhandled", table_name="message")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("handled_at")
