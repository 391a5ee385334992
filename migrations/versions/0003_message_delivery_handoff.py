"""message.reply_to and message.handoff_at: answering a retried webhook, sweeping stuck deliveries

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:45:00

``reply_to`` links a bot reply to the inbound message it answers, so WeChat's retry of a message whose
process died after the turn but before the webhook answered gets the stored reply inline.
``handoff_at`` is when an outbound message was last handed to the job queue (or taken by a job): a reply
whose hand-off failed (Redis restarting), whose job Redis lost, or whose worker died stays ``queued`` or
``sending``; the delivery sweep finds it through a partial index holding only those and hands it over
again, and the job's conditional claim keeps a message from being sent twice.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNDELIVERED = sa.text("delivery IN ('queued', 'sending')")


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_to", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("handoff_at", bot.store.models.UTCDateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_message_undelivered", "message", ["handoff_at"], unique=False,
        postgresql_where=UNDELIVERED, sqlite_where=UNDELIVERED,
    )


def downgrade() -> None:
    op.drop_index("ix_message_undelivered", table_name="message")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("handoff_at")
        batch_op.drop_column("reply_to")
