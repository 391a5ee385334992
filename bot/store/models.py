"""The data model of DESIGN.md ("Data"), as SQLAlchemy 2 declarative classes.

Times are stored in UTC and always come back timezone-aware (SQLite forgets the zone; see
:class:`UTCDateTime`). JSON columns use the portable ``JSON`` type so the same schema runs on
SQLite (embedded) and PostgreSQL (production); Alembic owns the schema in both.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as UTC and returned timezone-aware on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: sa.JSON, list[Any]: sa.JSON}


def _trigram(name: str, table: str, column: str) -> sa.Index:
    """A pg_trgm GIN index for the console's search (``LIKE '%…%'`` on Chinese text and digits).

    PostgreSQL only. SQLite (the embedded mode, one desk's volume) scans instead; there the index is
    declared with ``WHERE 0`` so it exists in both schemas alike but never holds a row or costs a write.
    """
    return sa.Index(name, column, postgresql_using="gin", postgresql_ops={column: "gin_trgm_ops"},
                    sqlite_where=sa.text("0"))


class Created:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# --- property: 楼盘 → 楼栋 → 房屋 ← 业主 ---------------------------------------------------------------


class Project(Created, Base):
    __tablename__ = "project"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    city: Mapped[str | None] = mapped_column(sa.String(50))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Per-project configuration: warranty table, duty phone, staff hours, SLAs (DOMAIN.md)."""
    buildings: Mapped[list[Building]] = relationship(back_populates="project")


class Building(Base):
    __tablename__ = "building"
    __table_args__ = (sa.UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(20))
    """The building number as owners say it: ``3`` for 3栋, ``B`` for B座."""
    project: Mapped[Project] = relationship(back_populates="buildings")


class House(Base):
    __tablename__ = "house"
    __table_args__ = (sa.UniqueConstraint("building_id", "unit", "room"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    building_id: Mapped[int] = mapped_column(sa.ForeignKey("building.id", ondelete="CASCADE"), index=True)
    unit: Mapped[str] = mapped_column(sa.String(10))
    room: Mapped[str] = mapped_column(sa.String(10))
    handover_date: Mapped[dt.date | None] = mapped_column(sa.Date)
    building: Mapped[Building] = relationship()

    @property
    def label(self) -> str:
        return f"{self.building.name}栋{self.unit}单元{self.room}"


class Owner(Created, Base):
    __tablename__ = "owner"
    __table_args__ = (
        _trigram("ix_owner_name_trgm", "owner", "name"),
        _trigram("ix_owner_phone_trgm", "owner", "phone"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    phone: Mapped[str] = mapped_column(sa.String(20), unique=True)
    consent_service: Mapped[bool] = mapped_column(default=True)
    """Consent to use the owner's data for service (DOMAIN.md: collected with consent)."""
    consent_marketing: Mapped[bool] = mapped_column(default=False)
    sms_opt_out: Mapped[bool] = mapped_column(default=False)
    houses: Mapped[list[OwnerHouse]] = relationship(back_populates="owner")


class OwnerHouse(Base):
    __tablename__ = "owner_house"
    __table_args__ = (sa.UniqueConstraint("owner_id", "house_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("owner.id", ondelete="CASCADE"), index=True)
    house_id: Mapped[int] = mapped_column(sa.ForeignKey("house.id", ondelete="CASCADE"), index=True)
    relation: Mapped[str] = mapped_column(sa.String(20), default="owner")
    owner: Mapped[Owner] = relationship(back_populates="houses")
    house: Mapped[House] = relationship()


class Identity(Created, Base):
    """One external identity on one channel account (Chatwoot's contact_inbox): openid or phone."""

    __tablename__ = "identity"
    __table_args__ = (sa.UniqueConstraint("channel", "account", "external_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(20))
    account: Mapped[str] = mapped_column(sa.String(50))
    external_id: Mapped[str] = mapped_column(sa.String(100))
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("owner.id", ondelete="SET NULL"), index=True)
    bound_at: Mapped[dt.datetime | None]
    subscribed: Mapped[bool] = mapped_column(default=True)
    last_inbound_at: Mapped[dt.datetime | None]
    """When the owner last wrote: WeChat's customer-service window is 48 hours from here."""
    owner: Mapped[Owner | None] = relationship()


# --- conversations ------------------------------------------------------------------------------


class Conversation(Created, Base):
    __tablename__ = "conversation"
    id: Mapped[int] = mapped_column(primary_key=True)
    identity_id: Mapped[int] = mapped_column(sa.ForeignKey("identity.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("owner.id", ondelete="SET NULL"), index=True)
    mode: Mapped[str] = mapped_column(sa.String(10), default="bot", index=True)
    """``bot`` | ``waiting`` | ``staff`` | ``closed``; changed only by the verbs in bot.conversation."""
    assignee_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id", ondelete="SET NULL"))
    priority: Mapped[int] = mapped_column(default=0)
    """Queue order for staff: emergencies and serious complaints rank above plain requests."""
    waiting_since: Mapped[dt.datetime | None]
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Dialogue state (active form, slots, counters), owned by the policy."""
    last_message_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    identity: Mapped[Identity] = relationship()
    owner: Mapped[Owner | None] = relationship()


class ConversationEvent(Base):
    """Append-only log of what happened in a conversation (Rasa's tracker events)."""

    __tablename__ = "conversation_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        sa.ForeignKey("conversation.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(40))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str | None] = mapped_column(sa.String(50))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Message(Base):
    __tablename__ = "message"
    __table_args__ = (
        sa.UniqueConstraint("channel", "account", "channel_msg_id", name="uq_message_channel_msg"),
        sa.Index("ix_message_conversation_at", "conversation_id", "id"),
        _trigram("ix_message_text_trgm", "message", "text"),
        sa.Index(
            "ix_message_unhandled",
            "id",
            postgresql_where=sa.text("direction = 'in' AND handled_at IS NULL"),
            sqlite_where=sa.text("direction = 'in' AND handled_at IS NULL"),
        ),
        sa.Index(
            "ix_message_undelivered",
            "handoff_at",
            postgresql_where=sa.text("delivery IN ('queued', 'sending')"),
            sqlite_where=sa.text("delivery IN ('queued', 'sending')"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(sa.ForeignKey("conversation.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(sa.String(3))
    """``in`` from the owner; ``out`` to the owner; ``note`` an internal staff note."""
    channel: Mapped[str] = mapped_column(sa.String(20))
    account: Mapped[str] = mapped_column(sa.String(50))
    channel_msg_id: Mapped[str | None] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(10), default="text")
    text: Mapped[str] = mapped_column(sa.Text, default="")
    media: Mapped[dict[str, Any]] = mapped_column(default=dict)
    nlu: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    author: Mapped[str | None] = mapped_column(sa.String(50))
    """``bot``, ``staff:<username>`` or None for the owner."""
    delivery: Mapped[str | None] = mapped_column(sa.String(12))
    """Outbound only. ``reply``: a bot reply the webhook request that is waiting for it answers inline
    (and a retry of that request answers again); ``queued``: to be sent by the ``deliver_message`` job;
    ``sending``: a job is sending it; then ``sent`` | ``failed`` (with ``delivery_error``) | ``stored``
    (channels whose client reads the conversation). Staff messages may be written ``sent`` directly."""
    delivery_error: Mapped[str | None] = mapped_column(sa.String(200))
    attempts: Mapped[int] = mapped_column(default=0)
    """Outbound: delivery attempts. Inbound: turns the recovery sweep started for it."""
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[dt.datetime | None]
    """Inbound only: when the bot's turn for it finished (NULL: not yet; see ``Engine.recover``)."""
    reply_to: Mapped[int | None]
    """Outbound bot replies: the inbound message they answer (a retry of it is answered with them)."""
    handoff_at: Mapped[dt.datetime | None]
    """Outbound, ``queued``/``sending``: when it was last handed to the job queue or taken by a job. The
    delivery sweep hands it over again once this is older than ``YEZHU_DELIVERY_SWEEP_AFTER``."""


# --- tickets ------------------------------------------------------------------------------------


class StaffUser(Created, Base):
    __tablename__ = "staff_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(50), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(50))
    role: Mapped[str] = mapped_column(sa.String(12))
    """``agent`` | ``engineer`` | ``supervisor`` | ``admin``."""
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    phone: Mapped[str | None] = mapped_column(sa.String(20))
    on_duty: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)


class Ticket(Created, Base):
    __tablename__ = "ticket"
    __table_args__ = (
        _trigram("ix_ticket_description_trgm", "ticket", "description"),
        _trigram("ix_ticket_contact_phone_trgm", "ticket", "contact_phone"),
        _trigram("ix_ticket_location_trgm", "ticket", "location"),
        _trigram("ix_ticket_number_trgm", "ticket", "number"),
        # PostgreSQL only (migration 0006): two-character words, which trigrams cannot serve.
        sa.Index("ix_ticket_text_bigram", sa.func.yezhu_bigrams(sa.text("description"), sa.text("location")),
                 postgresql_using="gin").ddl_if(dialect="postgresql"),
        # The monthly report's periods (migration 0013): tickets opened, due and closed in a month.
        sa.Index("ix_ticket_created_at", "created_at"),
        sa.Index("ix_ticket_due_at", "due_at"),
        sa.Index("ix_ticket_closed_at", "closed_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(24), unique=True)
    """Human-friendly: BX20261123-0007 (报修), TS… (投诉), ZX… (咨询), BZ… (办证)."""
    kind: Mapped[str] = mapped_column(sa.String(12), index=True)
    category: Mapped[str | None] = mapped_column(sa.String(30))
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("project.id"), index=True)
    house_id: Mapped[int | None] = mapped_column(sa.ForeignKey("house.id"), index=True)
    location: Mapped[str | None] = mapped_column(sa.String(100))
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("owner.id"), index=True)
    conversation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("conversation.id"))
    contact_phone: Mapped[str | None] = mapped_column(sa.String(20))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    priority: Mapped[str] = mapped_column(sa.String(10), default="normal")
    """``normal`` | ``urgent`` (repairs) ; ``normal`` | ``serious`` | ``group`` (complaints)."""
    status: Mapped[str] = mapped_column(sa.String(20), default="new", index=True)
    assignee_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"))
    visit_time: Mapped[str | None] = mapped_column(sa.String(60))
    due_at: Mapped[dt.datetime | None]
    warranty: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    """The warranty verdict told to the owner: {covered, item, years, until, reason}."""
    media: Mapped[list[Any]] = mapped_column(default=list)
    """Photos: ``{"kind": "owner"|"before"|"after", "file"|"message_id"|"pic_url", "by", "at"}``."""
    origin: Mapped[str | None] = mapped_column(sa.String(12))
    """Where the matter came from when staff opened it: ``phone`` | ``walk_in`` | ``wechat`` | ``sms``
    (NULL: opened by the bot in a chat)."""
    quote: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    """A paid repair's quote: ``{"amount", "items", "status": pending|accepted|declined, "by", "at", …}``."""
    group_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ticket.id"))
    related_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ticket.id"))
    """A ``recovery`` ticket's original ticket (service recovery after a low callback score)."""
    rework_count: Mapped[int] = mapped_column(default=0)
    closed_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    house: Mapped[House | None] = relationship()
    owner: Mapped[Owner | None] = relationship()
    assignee: Mapped[StaffUser | None] = relationship()
    events: Mapped[list[TicketEvent]] = relationship(order_by="TicketEvent.id", back_populates="ticket")


class TicketEvent(Base):
    """Append-only ticket timeline."""

    __tablename__ = "ticket_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(sa.ForeignKey("ticket.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(30))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str | None] = mapped_column(sa.String(50))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ticket: Mapped[Ticket] = relationship(back_populates="events")


class Photo(Base):
    """A photo on a ticket: uploaded by staff (before/after the work) or an owner's WeChat image, fetched
    once from WeChat's ``PicUrl`` and kept here so every web process can serve it."""

    __tablename__ = "photo"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ticket.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int | None] = mapped_column(sa.ForeignKey("message.id", ondelete="CASCADE"), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(10))
    """``owner`` | ``before`` | ``after``."""
    content_type: Mapped[str] = mapped_column(sa.String(40))
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)
    author: Mapped[str | None] = mapped_column(sa.String(50))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class TicketCounter(Base):
    """Per-day, per-prefix sequence for ticket numbers (portable: no database sequences)."""

    __tablename__ = "ticket_counter"
    prefix: Mapped[str] = mapped_column(sa.String(12), primary_key=True)
    value: Mapped[int] = mapped_column(default=0)


# --- certificates, knowledge, surveys, campaigns --------------------------------------------------


class CertificateRecord(Created, Base):
    __tablename__ = "certificate_record"
    id: Mapped[int] = mapped_column(primary_key=True)
    house_id: Mapped[int] = mapped_column(sa.ForeignKey("house.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(sa.String(20))
    """``processing`` | ``ready`` | ``collected`` | ``mailed`` | ``on_hold``."""
    batch: Mapped[str | None] = mapped_column(sa.String(40))
    note: Mapped[str | None] = mapped_column(sa.String(200))
    collect_place: Mapped[str | None] = mapped_column(sa.String(100))
    collect_hours: Mapped[str | None] = mapped_column(sa.String(100))
    ready_at: Mapped[dt.datetime | None]
    collected_at: Mapped[dt.datetime | None]
    collected_by: Mapped[str | None] = mapped_column(sa.String(50))
    handed_over_by: Mapped[str | None] = mapped_column(sa.String(50))
    # The signed collection record (签收, migration 0009): who took the certificate at the counter.
    collector_name: Mapped[str | None] = mapped_column(sa.String(50))
    collector_relation: Mapped[str | None] = mapped_column(sa.String(12))
    """``owner`` | ``proxy`` (代领, with a power of attorney 委托书) | ``mail``."""
    proxy_letter: Mapped[bool] = mapped_column(default=False)
    """A proxy brought the owner's signed 委托书 (and it was kept)."""
    id_checked: Mapped[bool] = mapped_column(default=False)
    """The collector's ID card (and the owner's, for a proxy) was checked."""
    reminded_at: Mapped[dt.datetime | None]
    reminder_count: Mapped[int] = mapped_column(default=0)
    house: Mapped[House] = relationship()


class KnowledgeEntry(Base):
    __tablename__ = "knowledge_entry"
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(80), unique=True)
    question: Mapped[str] = mapped_column(sa.Text)
    alternatives: Mapped[list[Any]] = mapped_column(default=list)
    answer: Mapped[str] = mapped_column(sa.Text)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    projects: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(sa.String(50))


class UnansweredQuestion(Created, Base):
    __tablename__ = "unanswered_question"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.Text)
    conversation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("conversation.id", ondelete="SET NULL"))
    project_code: Mapped[str | None] = mapped_column(sa.String(32))
    resolved: Mapped[bool] = mapped_column(default=False)
    entry_slug: Mapped[str | None] = mapped_column(sa.String(80))


class VerificationCode(Created, Base):
    """A 6-digit code sent to bind an identity to an owner (hash only; attempts limited)."""

    __tablename__ = "verification_code"
    id: Mapped[int] = mapped_column(primary_key=True)
    identity_id: Mapped[int] = mapped_column(sa.ForeignKey("identity.id", ondelete="CASCADE"), index=True)
    phone: Mapped[str] = mapped_column(sa.String(20))
    code_hash: Mapped[str] = mapped_column(sa.String(100))
    expires_at: Mapped[dt.datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    used_at: Mapped[dt.datetime | None]


class SmsMessage(Created, Base):
    """Every SMS to or from a phone (docs/SMS.md): what was sent, as the owner saw it, and what became of it.

    Outbound rows are the outbox: a caller inserts one ``queued`` in its own transaction (``actions.notify``)
    and the ``send_sms`` job sends it after the commit. The ``status`` only moves forward:
    ``queued`` → (``deferred`` →) ``sending`` → ``sent`` | ``failed`` | ``unknown`` → ``delivered`` |
    ``failed``; ``skipped`` never leaves. ``unknown`` is a send whose answer never came (a timeout): the
    providers have no idempotency, so it is never sent again, only resolved by its receipt or a query.
    """

    __tablename__ = "sms_message"
    __table_args__ = (
        sa.UniqueConstraint("idempotency_key"),
        sa.UniqueConstraint("out_id"),
        sa.Index("ix_sms_message_status_due", "status", "not_before"),
        sa.Index("ix_sms_message_provider_id", "provider", "provider_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    direction: Mapped[str] = mapped_column(sa.String(3), default="out")
    """``out`` to the phone, ``in`` from it (an uplink)."""
    phone: Mapped[str] = mapped_column(sa.String(20), index=True)
    kind: Mapped[str] = mapped_column(sa.String(40), default="text")
    """The message kind of the template catalogue (``verification_code``, ``ticket_dispatched`` …)."""
    provider: Mapped[str] = mapped_column(sa.String(20))
    template_code: Mapped[str | None] = mapped_column(sa.String(40))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    text: Mapped[str] = mapped_column(sa.Text)
    """The text as the owner sees it, signature included."""
    segments: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(sa.String(12), default="queued")
    urgent: Mapped[bool] = mapped_column(default=False)
    """Verification codes and emergencies: no quiet hours, and they go to opted-out owners too."""
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(120))
    out_id: Mapped[str | None] = mapped_column(sa.String(64))
    """Aliyun ``OutId`` / Tencent ``SessionContext``: echoed in the receipt."""
    provider_id: Mapped[str | None] = mapped_column(sa.String(64))
    """Aliyun ``BizId`` / Tencent ``SerialNo`` (outbound); the uplink's sequence id (inbound)."""
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error: Mapped[str | None] = mapped_column(sa.String(200))
    attempts: Mapped[int] = mapped_column(default=0)
    not_before: Mapped[dt.datetime | None]
    """Deferred until then (quiet hours, a rate limit or the daily cap)."""
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("owner.id", ondelete="SET NULL"), index=True)
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("project.id", ondelete="SET NULL"))
    conversation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("conversation.id", ondelete="SET NULL"))
    message_id: Mapped[int | None] = mapped_column(sa.ForeignKey("message.id", ondelete="SET NULL"))
    """The conversation message this SMS carries (inbound: the message the engine stored)."""
    sent_at: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


SmsOutbox = SmsMessage
"""The table's former name (the development sender's outbox), kept for callers not yet renamed."""


class SmsCallback(Base):
    """A provider's push (a receipt or an uplink), stored before it is answered and worked on after.

    ``dedup_key`` makes a repeated push (providers retry, and may push twice) change nothing.
    """

    __tablename__ = "sms_callback"
    __table_args__ = (
        sa.UniqueConstraint("dedup_key"),
        sa.Index(
            "ix_sms_callback_pending", "id",
            postgresql_where=sa.text("processed_at IS NULL"), sqlite_where=sa.text("processed_at IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(20))
    kind: Mapped[str] = mapped_column(sa.String(10))
    """``receipt`` | ``inbound``."""
    dedup_key: Mapped[str] = mapped_column(sa.String(120))
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[dt.datetime | None]
    result: Mapped[str | None] = mapped_column(sa.String(40))


class SmsConsent(Base):
    """The append-only history of an owner's SMS opt-outs and opt-ins (通信短信息服务管理规定)."""

    __tablename__ = "sms_consent"
    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(sa.String(20), index=True)
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("owner.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(sa.String(10))
    """``opt_out`` | ``opt_in``."""
    source: Mapped[str] = mapped_column(sa.String(40))
    """Where it was said: ``sms``, ``wechat``, ``console:<username>``, ``api``."""
    text: Mapped[str | None] = mapped_column(sa.String(200))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StaffAlert(Created, Base):
    """An alert to the on-duty person outside the console; repeated to a supervisor until acknowledged."""

    __tablename__ = "staff_alert"
    __table_args__ = (sa.UniqueConstraint("idempotency_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(120))
    level: Mapped[str] = mapped_column(sa.String(20))
    """``emergency`` | ``serious_complaint`` | ``group_complaint`` | ``overdue``."""
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ticket.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("project.id", ondelete="SET NULL"))
    summary: Mapped[str] = mapped_column(sa.String(200))
    recipients: Mapped[list[Any]] = mapped_column(default=list)
    acknowledged_at: Mapped[dt.datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(sa.String(50))
    escalated_at: Mapped[dt.datetime | None]


class SurveyTemplate(Created, Base):
    """A callback or periodic survey: items each tagged with a business area (DOMAIN.md)."""

    __tablename__ = "survey_template"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(40), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(20), default="repair", index=True)
    """What it follows: ``repair`` | ``complaint`` | ``handover`` | ``periodic`` | ``recovery``."""
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("project.id"))
    """NULL: every project; a project's own template of a kind wins over the shared one."""
    items: Mapped[list[Any]] = mapped_column(default=list)
    """``[{"code", "text", "area": 规划设计|工程质量|销售服务|客户服务|物业管理, "type": "score"|"text"}]``;
    periodic and handover surveys start with ``overall``, ``rebuy``, ``recommend`` (the loyalty items)."""
    active: Mapped[bool] = mapped_column(default=True)
    updated_by: Mapped[str | None] = mapped_column(sa.String(50))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SurveyResponse(Created, Base):
    """One survey put to one owner: invited, answered (by the bot or recorded by staff), or expired."""

    __tablename__ = "survey_response"
    __table_args__ = (
        sa.Index("ix_survey_response_project_completed", "project_id", "completed_at"),
        sa.Index("ix_survey_response_status_due", "status", "due_at"),
        sa.Index("ix_survey_response_completed_at", "completed_at"),  # the figures' months (migration 0013)
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(sa.ForeignKey("survey_template.id"))
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("owner.id"), index=True)
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ticket.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(20), default="repair")
    """As :attr:`SurveyTemplate.kind`; ``recheck`` for the second short callback after a recovery."""
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("project.id"))
    house_id: Mapped[int | None] = mapped_column(sa.ForeignKey("house.id"))
    campaign_id: Mapped[int | None] = mapped_column(sa.ForeignKey("campaign.id"))
    """Set when the invitation went out with a ``survey`` campaign (the periodic survey)."""
    status: Mapped[str] = mapped_column(sa.String(16), default="scheduled")
    """``scheduled`` (invitation due at :attr:`due_at`) | ``invited`` | ``in_progress`` | ``complete`` |
    ``partial`` (expired with some answers) | ``expired`` | ``declined`` | ``cancelled``."""
    channel: Mapped[str | None] = mapped_column(sa.String(20))
    """``wechat`` | ``sms`` | ``phone`` (recorded by staff) | ``console``."""
    source: Mapped[str] = mapped_column(sa.String(10), default="bot")
    """``bot`` (asked in chat or by SMS) | ``staff`` (a callback by phone, recorded in the console)."""
    due_at: Mapped[dt.datetime | None]
    """When the invitation is to go out (the per-project/kind delay, or ``YEZHU_SURVEY_DELAY``)."""
    invited_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]
    stage: Mapped[str | None] = mapped_column(sa.String(10))
    """Owner stage at the time of the response: 准业主 | 磨合期 | 稳定期 | 老业主 (DOMAIN.md)."""
    category: Mapped[str | None] = mapped_column(sa.String(30))
    """The ticket's category, copied for the figures."""
    engineer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"))
    """The ticket's responsible engineer/agent at close, copied for the figures."""
    recorded_by: Mapped[str | None] = mapped_column(sa.String(50))
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """``{item code: 1..5}``; a skipped item is absent."""
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The owner's own words per item (why a low score, free-text items)."""
    comment: Mapped[str | None] = mapped_column(sa.Text)
    recovery_ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ticket.id"))


class Campaign(Created, Base):
    """A broadcast notice (办证通知, outage, handover, warranty reminder, …) and its audience."""

    __tablename__ = "campaign"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(30), index=True)
    """``certificate_collection`` | ``handover`` | ``outage`` | ``construction_progress`` |
    ``warranty_expiry`` | ``survey`` | ``notice``."""
    text: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(20), default="draft", index=True)
    """``draft`` | ``pending_approval`` | ``approved`` | ``scheduled`` | ``sending`` | ``paused`` |
    ``done`` | ``cancelled``."""
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("project.id"))
    audience: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The audience rule: ``{"buildings": [...], "units": [...], "stage": ..., "certificate": ...,
    "handover_from": ..., "handover_to": ..., "tag": ..., "list": [...]}``."""
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The kind's fields (place, hours, documents, outage start/end, photos, template code, …)."""
    channels: Mapped[list[Any]] = mapped_column(default=list)
    urgent: Mapped[bool] = mapped_column(default=False)
    scheduled_at: Mapped[dt.datetime | None]
    created_by: Mapped[str | None] = mapped_column(sa.String(50))
    approved_by: Mapped[str | None] = mapped_column(sa.String(50))
    approved_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Delivery(Created, Base):
    """One recipient of a campaign on one channel: the unit of exactly-once delivery."""

    __tablename__ = "delivery"
    __table_args__ = (
        sa.UniqueConstraint("idempotency_key"),
        sa.Index("ix_delivery_campaign_status", "campaign_id", "status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaign.id", ondelete="CASCADE"))
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("owner.id"), index=True)
    house_id: Mapped[int | None] = mapped_column(sa.ForeignKey("house.id"))
    channel: Mapped[str] = mapped_column(sa.String(20))
    recipient: Mapped[str | None] = mapped_column(sa.String(64))
    """The openid or phone number the notice went to."""
    idempotency_key: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")
    """``queued`` | ``sending`` | ``sent`` | ``delivered`` | ``acknowledged`` | ``failed`` | ``skipped``."""
    attempts: Mapped[int] = mapped_column(default=0)
    provider_id: Mapped[str | None] = mapped_column(sa.String(64))
    error: Mapped[str | None] = mapped_column(sa.String(200))
    """Why it failed or was skipped (``failed:user block``, ``opted_out``, ``no_phone``, …)."""
    text: Mapped[str | None] = mapped_column(sa.Text)
    sent_at: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]
    acknowledged_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CaseEntry(Created, Base):
    """The case library (客服案例库): a ticket or conversation written up so others learn from it."""

    __tablename__ = "case_entry"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(100))
    area: Mapped[str | None] = mapped_column(sa.String(20))
    """Business area: 规划设计 | 工程质量 | 销售服务 | 客户服务 | 物业管理."""
    category: Mapped[str | None] = mapped_column(sa.String(30))
    happened: Mapped[str] = mapped_column(sa.Text, default="")
    learned: Mapped[str] = mapped_column(sa.Text, default="")
    audience: Mapped[list[Any]] = mapped_column(default=list)
    """For whom: ``design`` | ``engineering`` | ``service``."""
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("project.id"))
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ticket.id"))
    conversation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("conversation.id"))
    created_by: Mapped[str | None] = mapped_column(sa.String(50))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditLog(Base):
    """Every staff action on owner data: who, what, when (DOMAIN.md)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    actor: Mapped[str] = mapped_column(sa.String(50))
    action: Mapped[str] = mapped_column(sa.String(50))
    target: Mapped[str | None] = mapped_column(sa.String(100))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
