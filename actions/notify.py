"""One way to reach an owner (or a staff member): the notifier and its SMS outbox.

Every proactive message — ticket notices, duty alerts, campaign deliveries, survey invitations,
verification codes — goes through :class:`Notifier`:

* it **records** the delivery in the caller's transaction (an ``sms_message`` row, or an outbound
  conversation message for WeChat), keyed by an idempotency key so a repeated call records nothing new;
* the send happens **after the commit** (``EventBatch.after_commit`` enqueues the ``send_sms`` job; the
  outbox sweep re-enqueues anything whose enqueue was lost), never inside the transaction or a turn lock;
* the **channel** is chosen by capability: the owner's WeChat inside its 48-hour window, else SMS through
  an approved template of the configured provider (``Settings.sms_templates``);
* the **rules** of DOMAIN.md hold at record time and again at send time: a kind without an approved
  template is ``skipped`` (with the reason); opted-out owners get no notices, surveys or marketing, and
  marketing needs consent; non-urgent SMS wait for the sending window (``deferred``). Verification codes,
  emergencies and staff alerts always go at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from actions.labels import SMS_PARAM_LABELS
from bot.events import EventBatch
from bot.policy import OutboundMessage
from bot.settings import Settings, SmsTemplate
from bot.store.models import Conversation, Identity, Message, Owner, Project, SmsMessage, utcnow
from channels.sms.base import CHINA, PLACEHOLDER, TEXT_MAX, Length, measure, render, segments

log = logging.getLogger("yezhu.notify")

OPT_OUT_APPLIES = frozenset({"notice", "marketing"})
"""Categories an opted-out owner does not get by SMS (replies to the owner's own message still go)."""
WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–~]\s*(\d{1,2}):(\d{2})\s*$")
SKIP_REASONS = {
    "no_template": "该类消息没有已审核通过的短信模板",
    "opted_out": "业主已退订短信通知",
    "no_consent": "业主未同意接收营销类短信",
    "no_phone": "没有可用的手机号码",
}


def clip(value: Any, limit: int) -> str:
    text = re.sub(r"\s+", " ", str(value if value is not None else "")).strip()
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


def parse_window(spec: str | None) -> tuple[dt.time, dt.time] | None:
    m = WINDOW.match(spec or "")
    if not m:
        return None
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    end = dt.time.max if (h2, m2) == (24, 0) else dt.time(min(h2, 23), min(m2, 59))
    return dt.time(min(h1, 23), min(m1, 59)), end


def window_opens(now: dt.datetime, spec: str | None) -> dt.datetime | None:
    """None while ``now`` is inside the Beijing-time window ``spec`` (``08:00-21:00``), else when it opens."""
    window = parse_window(spec)
    if window is None:
        return None
    start, end = window
    local = now.astimezone(CHINA)
    t = local.time()
    inside = start <= t < end if start <= end else (t >= start or t < end)
    if inside:
        return None
    day = local.date() if t < start else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, start, tzinfo=CHINA).astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class Rendered:
    template: SmsTemplate | None
    code: str | None
    params: dict[str, str]
    text: str


@dataclass(frozen=True, slots=True)
class Preview:
    rendered: Rendered
    length: Length
    whole: bool
    """Every parameter fits as given (False: a value would be shortened with …)."""

    @property
    def text(self) -> str:
        return self.rendered.text


class Notifier:
    """Records proactive messages in the caller's transaction; the jobs send them after the commit."""

    def __init__(self, runtime: Any) -> None:
        self.rt = runtime

    @property
    def settings(self) -> Settings:
        return self.rt.settings  # type: ignore[no-any-return]

    @property
    def provider(self) -> str:
        return self.settings.sms_provider

    def template(self, kind: str) -> SmsTemplate | None:
        return self.settings.sms_templates.get(kind)

    def has_template(self, kind: str) -> bool:
        """Can ``kind`` go by SMS through the configured provider (an approved template exists)?"""
        template = self.template(kind)
        return template is not None and template.code_for(self.provider) is not None

    async def sign_name(self, s: AsyncSession, project_id: int | None) -> str:
        if project_id is not None:
            project = await s.get(Project, project_id)
            if project is not None and (project.settings or {}).get("sms_sign"):
                return str(project.settings["sms_sign"])
        return self.settings.sms_sign_name

    def render(self, kind: str, params: Mapping[str, Any], sign: str) -> Rendered:
        template = self.template(kind)
        if template is None:
            text = "；".join(f"{SMS_PARAM_LABELS.get(k, '')}：{v}" if k in SMS_PARAM_LABELS else str(v)
                            for k, v in params.items())
            return Rendered(None, None, {k: str(v) for k, v in params.items()}, f"【{sign}】{text}"[:TEXT_MAX])
        values = {name: clip(params.get(name), template.param_max) for name in template.params}
        text = render(template.text, values, sign)
        if len(text) > TEXT_MAX:  # only a long free parameter (a reply) can do this: shorten it
            over = len(text) - TEXT_MAX
            longest = max(values, key=lambda k: len(values[k]))
            values[longest] = clip(values[longest], max(1, len(values[longest]) - over))
            text = render(template.text, values, sign)
        return Rendered(template, template.code_for(self.provider), values, text)

    async def price(self, s: AsyncSession, project_id: int | None) -> Decimal:
        """元 per billed part: the project's ``sms_price``, else ``YEZHU_SMS_PRICE``."""
        if project_id is not None:
            project = await s.get(Project, project_id)
            value = (project.settings or {}).get("sms_price") if project is not None else None
            if value not in (None, ""):
                try:
                    return Decimal(str(value))
                except InvalidOperation:
                    log.warning("project %s: sms_price %r is not a number", project_id, value)
        return self.settings.sms_price

    async def preview(
        self, s: AsyncSession, *, kind: str, params: Mapping[str, Any], project_id: int | None = None,
    ) -> Preview:
        """What :meth:`sms` would send for ``kind``: the text as the owner's phone shows it, its length,
        billed parts and cost, and whether every parameter went in whole (none was shortened)."""
        rendered = self.render(kind, params, await self.sign_name(s, project_id))
        whole = all(rendered.params[k] == clip(v, 4 * TEXT_MAX) for k, v in params.items() if k in rendered.params)
        return Preview(rendered, measure(rendered.text, await self.price(s, project_id)), whole)

    async def window(self, s: AsyncSession, project_id: int | None, template: SmsTemplate | None) -> str:
        if template is not None and template.window:
            return template.window
        if project_id is not None:
            project = await s.get(Project, project_id)
            settings = (project.settings or {}) if project is not None else {}
            kinds = settings.get("sms_windows") or {}
            if template is not None and template.kind in kinds:
                return str(kinds[template.kind])
            if settings.get("sms_window"):
                return str(settings["sms_window"])
        return self.settings.sms_window

    # --- SMS -------------------------------------------------------------------------------------

    async def sms(
        self, s: AsyncSession, batch: EventBatch, *, phone: str, kind: str, params: Mapping[str, Any],
        owner_id: int | None = None, project_id: int | None = None, conversation_id: int | None = None,
        message_id: int | None = None, idempotency_key: str | None = None, now: dt.datetime | None = None,
    ) -> SmsMessage:
        """Record one SMS of ``kind`` to ``phone`` (``queued``, ``deferred`` or ``skipped``); it is sent
        after the caller commits. The same ``idempotency_key`` returns the row recorded before."""
        now = now or utcnow()
        if idempotency_key:
            existing = (await s.execute(
                sa.select(SmsMessage).where(SmsMessage.idempotency_key == idempotency_key)
            )).scalar_one_or_none()
            if existing is not None:
                return existing
        owner = await self._owner(s, owner_id, phone)
        if owner is not None:
            owner_id = owner.id
        rendered = self.render(kind, params, await self.sign_name(s, project_id))
        template = rendered.template
        status, reason, not_before = "queued", None, None
        if rendered.code is None:
            status, reason = "skipped", "no_template"
        elif not phone:
            status, reason = "skipped", "no_phone"
        elif template is not None and template.category in OPT_OUT_APPLIES and owner is not None \
                and owner.sms_opt_out:
            status, reason = "skipped", "opted_out"
        elif template is not None and template.category == "marketing" and not (owner and owner.consent_marketing):
            status, reason = "skipped", "no_consent"
        elif template is not None and template.category in OPT_OUT_APPLIES:
            opens = window_opens(now, await self.window(s, project_id, template))
            if opens is not None:
                status, not_before = "deferred", opens
        row = SmsMessage(
            direction="out", phone=phone or "", kind=kind, provider=self.provider, template_code=rendered.code,
            params=rendered.params, text=rendered.text, segments=segments(rendered.text), status=status,
            urgent=bool(template and template.urgent), idempotency_key=idempotency_key,
            out_id=uuid.uuid4().hex[:24], error_code=reason, error=SKIP_REASONS.get(reason or ""),
            not_before=not_before, owner_id=owner_id, project_id=project_id, conversation_id=conversation_id,
            message_id=message_id, created_at=now, updated_at=now,
        )
        s.add(row)
        await s.flush()
        if status == "skipped":
            log.info("SMS %s (%s) skipped: %s", row.id, kind, reason)
        elif status == "queued":
            sms_id = row.id
            batch.after_commit(lambda: self.rt.jobs.enqueue_sms(sms_id))
        return row

    async def _owner(self, s: AsyncSession, owner_id: int | None, phone: str) -> Owner | None:
        if owner_id is not None:
            return await s.get(Owner, owner_id)
        if not phone:
            return None
        return (await s.execute(sa.select(Owner).where(Owner.phone == phone))).scalar_one_or_none()

    # --- the channel choice -----------------------------------------------------------------------

    def can_chat(self, identity: Identity | None, now: dt.datetime, *, pull: bool = False) -> bool:
        """Can a free-text message reach ``identity`` now (WeChat: within 48 h of their last message)?

        ``pull``: also a channel whose client reads the conversation (the JSON API, ``yezhu chat``) --
        right for the conversation a matter came from, where that client is reading, never chosen when
        looking for any channel that reaches the owner."""
        if identity is None:
            return False
        caps = self.rt.channels.capabilities(identity.channel)
        if caps is None or caps.templates_only or not (caps.push or pull):
            return False
        return caps.window_open(identity.last_inbound_at, now)

    async def reachable_in_chat(self, s: AsyncSession, owner_id: int, now: dt.datetime) -> Identity | None:
        """The owner's identity on a channel whose window is open now, the most recently used first."""
        identities = (await s.execute(
            sa.select(Identity).where(Identity.owner_id == owner_id)
            .order_by(Identity.last_inbound_at.desc().nulls_last())
        )).scalars().all()
        return next((i for i in identities if self.can_chat(i, now)), None)

    async def owner(
        self, s: AsyncSession, batch: EventBatch, *, text: str, kind: str, params: Mapping[str, Any],
        phone: str | None, owner_id: int | None = None, identity: Identity | None = None,
        conversation: Conversation | None = None, project_id: int | None = None,
        idempotency_key: str | None = None, data: Mapping[str, Any] | None = None, now: dt.datetime | None = None,
    ) -> Notice:
        """Tell an owner something, by the best channel that can carry it now:

        1. their chat (``identity``, else any of theirs) where free text reaches them (WeChat in its window):
           ``text`` as a conversation message, delivered after the commit (``Notice.message_ids``);
        2. else a template message (WeChat 模板消息) where ``kind`` has one in the ``wechat_templates``
           catalogue and the owner follows the account: ``params`` fill its fields; it is a message of
           the owner's conversation there, delivered after the commit like 1;
        3. else SMS through the approved template of ``kind`` filled with ``params`` (recorded in the
           conversation too, when there is one);
        4. else nothing, with the reason (no approved template, opted out, no phone …)."""
        now = now or utcnow()
        thread = conversation  # where an SMS is noted for staff: the conversation the matter came from
        if self.can_chat(identity, now, pull=conversation is not None):
            pass  # the chat the matter came from reaches the owner
        elif owner_id is not None:
            identity = await self.reachable_in_chat(s, owner_id, now)
            conversation = None if identity is None or conversation is None \
                or conversation.identity_id != identity.id else conversation
        if identity is not None and self.can_chat(identity, now, pull=conversation is not None):
            if conversation is None or conversation.mode == "closed":
                conversation = await self.rt.engine.current_conversation(s, identity)
            out = await self.rt.engine.send(s, conversation, OutboundMessage(text, data=dict(data or {})),
                                            author="bot", batch=batch)
            return Notice(identity.channel, message_ids=[out.id], text=text)
        if owner_id is not None:
            templated = await self._template_message(s, batch, owner_id=owner_id, kind=kind, params=params,
                                                     text=text, data=data)
            if templated is not None:
                return templated
        if not phone:
            return Notice(None, reason=SKIP_REASONS["no_phone"])
        sms = await self.sms(s, batch, phone=phone, kind=kind, params=params, owner_id=owner_id,
                             project_id=project_id, conversation_id=thread.id if thread else None,
                             idempotency_key=idempotency_key, now=now)
        if sms.status == "skipped":
            return Notice(None, sms=sms, reason=sms.error or "短信未发送")
        if thread is not None:  # staff reading the conversation see what the owner got
            carried = Message(conversation_id=thread.id, direction="out", channel="sms", account=sms.provider,
                              kind="text", text=sms.text, author="bot", delivery="queued",
                              media={"sms_id": sms.id, **dict(data or {})}, at=now)
            s.add(carried)
            await s.flush()
            sms.message_id = carried.id
        return Notice("sms", sms=sms, text=sms.text)


    async def _template_message(
        self, s: AsyncSession, batch: EventBatch, *, owner_id: int, kind: str, params: Mapping[str, Any],
        text: str, data: Mapping[str, Any] | None,
    ) -> Notice | None:
        """Record ``kind``'s template message to the owner's identity on a channel that carries them
        (WeChat, still followed), in its conversation; None when there is no template or no such identity."""
        template = self.settings.wechat_templates.get(kind)
        if template is None:
            return None
        identities = (await s.execute(
            sa.select(Identity).where(Identity.owner_id == owner_id, Identity.subscribed.is_(True))
            .order_by(Identity.last_inbound_at.desc().nulls_last())
        )).scalars().all()
        identity = next((i for i in identities if (caps := self.rt.channels.capabilities(i.channel)) is not None
                         and caps.template_messages), None)
        if identity is None:
            return None
        fields = {name: clip(PLACEHOLDER.sub(lambda m: str(params.get(m.group(1), "")), value), template.value_max)
                  for name, value in template.fields.items()}
        spec: dict[str, Any] = {"template_id": template.template_id, "fields": fields}
        if template.url:
            spec["url"] = template.url
        conversation = await self.rt.engine.current_conversation(s, identity)
        out = await self.rt.engine.send(
            s, conversation, OutboundMessage(text, kind="template", data={**dict(data or {}), "wechat_template": spec}),
            author="bot", batch=batch)
        return Notice(identity.channel, message_ids=[out.id], text=text)


@dataclass(frozen=True, slots=True)
class Notice:
    """How an owner was told: ``channel`` None means not at all (``reason`` says why)."""

    channel: str | None
    message_ids: list[int] = field(default_factory=list)
    """Conversation messages to deliver after the commit (``engine.after_commit``)."""
    sms: SmsMessage | None = None
    text: str = ""
    reason: str = ""
