"""Indexes for the monthly report's periods

Revision ID: 0013
Revises: 0009
Create Date: 2026-12-01 19:10:00

The figures and the monthly report (reports/) select tickets opened, due and closed in a month and
survey responses completed in a month; on a year of data (200,000 tickets) each of those was a full
scan per section. Plain ``CREATE INDEX`` (no batch rebuild: ``ticket`` keeps its SQLite FTS triggers).
Tickets are written rarely next to messages, whose table (the hot path) gets no new index.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_ticket_created_at", "ticket", "created_at"),
    ("ix_ticket_due_at", "ticket", "due_at"),
    ("ix_ticket_closed_at", "ticket", "closed_at"),
    ("ix_survey_response_completed_at", "survey_response", "completed_at"),
)


def upgrade() -> None:
    for name, table, column in INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _column in INDEXES:
        op.drop_index(name, table_name=table)
