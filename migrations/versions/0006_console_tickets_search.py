"""ticket.origin, ticket.quote and photos; pg_trgm indexes for the console's search

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-01 15:30:00

Staff open tickets for phone calls and walk-ins (``origin``), paid repairs carry a quote the owner
accepts in chat (``quote``). The console's one search box looks for words and digits anywhere in ticket
descriptions, owner names and phones and message texts; on PostgreSQL pg_trgm GIN indexes serve
``LIKE '%…%'`` (Chinese included: trigrams are over characters). SQLite, the embedded mode, scans
(its placeholder indexes are declared ``WHERE 0``: they never hold a row).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.models

revision: str = "0006"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGRAMS = """
CREATE OR REPLACE FUNCTION yezhu_bigrams(body text, place varchar) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(array_agg(DISTINCT substr(t, i, 2)), '{}')
  FROM (SELECT coalesce(body, '') || ' ' || coalesce(place, '') AS t) AS s, generate_series(1, length(t) - 1) AS i
$$
"""
"""The distinct two-character substrings of a ticket's description and location
(``卫生间漏水`` → 卫生, 生间, 间漏, 漏水)."""

TRIGRAM = [
    ("ix_ticket_description_trgm", "ticket", "description"),
    ("ix_ticket_contact_phone_trgm", "ticket", "contact_phone"),
    ("ix_ticket_location_trgm", "ticket", "location"),
    ("ix_ticket_number_trgm", "ticket", "number"),
    ("ix_owner_name_trgm", "owner", "name"),
    ("ix_owner_phone_trgm", "owner", "phone"),
    ("ix_message_text_trgm", "message", "text"),
]


def upgrade() -> None:
    op.create_table(
        "photo",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("content_type", sa.String(length=40), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("author", sa.String(length=50), nullable=True),
        sa.Column("at", bot.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], name=op.f("fk_photo_message_id_message"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["ticket_id"], ["ticket.id"], name=op.f("fk_photo_ticket_id_ticket"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photo")),
        sa.UniqueConstraint("message_id", name=op.f("uq_photo_message_id")),
    )
    op.create_index(op.f("ix_photo_ticket_id"), "photo", ["ticket_id"], unique=False)
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin", sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column("quote", sa.JSON(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        # Trigrams cannot serve a two-character word ("漏水", a name like "杨建"), the commonest Chinese
        # search: tickets also get a GIN index over the character bigrams of description and location.
        op.execute(BIGRAMS)
        op.execute("CREATE INDEX ix_ticket_text_bigram ON ticket USING gin (yezhu_bigrams(description, location))")
    for name, table, column in TRIGRAM:  # SQLite: an empty placeholder (WHERE 0), as the models declare
        op.create_index(name, table, [column], unique=False, postgresql_using="gin",
                        postgresql_ops={column: "gin_trgm_ops"}, sqlite_where=sa.text("0"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_ticket_text_bigram")
        op.execute("DROP FUNCTION IF EXISTS yezhu_bigrams(text, varchar)")
    op.drop_index(op.f("ix_photo_ticket_id"), table_name="photo")
    op.drop_table("photo")
    for name, table, _column in TRIGRAM:
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_column("quote")
        batch_op.drop_column("origin")
