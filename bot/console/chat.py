"""The live queue and taking over a chat (接入): claim, reply, notes, transfer, hand back, close.

Modes change only through the verbs of :mod:`bot.conversation`, under the same per-sender lock the
engine holds for a bot turn, so a claim never races a bot reply. Replies go out through the owner's own
channel with ``Engine.send`` + ``after_commit`` (the WeChat customer-service API, within its 48-hour
window). What a channel can carry comes from the channel registry's capabilities, never its name: where
free text cannot reach the owner (an SMS conversation, a closed window) the reply goes by SMS through the
notifier's ``reply`` template, and the compose box shows live what the owner will receive and its cost
(``POST /console/api/conversations/{id}/sms_preview``, the notifier's own rendering and segment rule).
"""

from __future__ import annotations

import datetime as dt
from contextlib import AsyncExitStack
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from actions.labels import CHANNEL_LABELS, CONVERSATION_EVENT_LABELS, INTENT_LABELS, label
from actions.notify import Preview
from actions.workflow import is_overdue
from bot import conversation as verbs
from bot import params
from bot.console.core import (
    CONSOLE,
    PREFIX,
    Refused,
    Staff,
    audit,
    done,
    form,
    match_id,
    render,
    render_string,
    route,
    runtime_of,
    shown_phone,
    staff_list,
    staff_of,
    wants_json,
)
from bot.console.queue import reason_label, who
from bot.console.view import actor, entity_text
from bot.engine import sender_key
from bot.events import EventBatch
from bot.store.models import (
    Building,
    CertificateRecord,
    Conversation,
    ConversationEvent,
    House,
    Identity,
    Message,
    Owner,
    OwnerHouse,
    StaffUser,
    Ticket,
    utcnow,
)
from channels.base import ChannelCapabilities, OutboundMessage
from channels.sms.base import TEXT_MAX, yuan

MAX_TEXT = 1000
SMS_REPLY = "reply"
"""The notifier's message kind (template) staff replies go out as by SMS."""
CANNED_REPLIES = [
    "您好，我是客服，很高兴为您服务。请问有什么可以帮您？",
    "好的，已收到，我们马上为您核实，请稍等。",
    "非常抱歉给您带来不便，我们已安排专人跟进，会尽快给您答复。",
    "为了更好地帮您处理，麻烦提供一下房号（如3栋2单元501）和联系电话。",
    "维修师傅会在约定时间上门，如需改约请随时告诉我们。",
    "感谢您的反馈，如还有其他问题，随时给我们留言。",
]


# --- one conversation ---------------------------------------------------------------------------


def _caps(request: web.Request, identity: Identity) -> ChannelCapabilities:
    caps = runtime_of(request).channels.capabilities(identity.channel)
    return caps if caps is not None else ChannelCapabilities(push=False)


def _free_text_open(caps: ChannelCapabilities, identity: Identity, now: dt.datetime) -> bool:
    """Can a staff member's free text reach the owner on their own channel now?"""
    return not caps.templates_only and caps.window_open(identity.last_inbound_at, now)


def _phone(conv: Conversation, caps: ChannelCapabilities) -> str | None:
    """The number an SMS reply goes to: the owner's, else the sender's own where it is a phone."""
    if conv.owner is not None and conv.owner.phone:
        return conv.owner.phone
    return conv.identity.external_id if caps.sender_is_phone else None


def _project_id(conv: Conversation) -> int | None:
    """The owner's (first) project, whose SMS signature and price apply."""
    for oh in conv.owner.houses if conv.owner else []:
        return oh.house.building.project_id
    return None


async def _sms_preview(request: web.Request, s: AsyncSession, conv: Conversation, text: str) -> Preview:
    return await runtime_of(request).notifier.preview(s, kind=SMS_REPLY, params={"content": text},
                                                      project_id=_project_id(conv))


def _sms_refusal(preview: Preview) -> str | None:
    """Why this SMS reply cannot go as typed (None: it can), in the words the agent sees."""
    if preview.length.too_long:
        return (f"短信内容过长：加上签名和模板共{preview.length.chars}字，短信最多{TEXT_MAX}字，"
                "请删减后再发送")
    if not preview.whole:
        limit = preview.rendered.template.param_max if preview.rendered.template else TEXT_MAX
        return f"短信回复模板每条最多容纳{limit}字，请删减后再发送，或分两条发送"
    return None


async def _conversation(s: AsyncSession, conv_id: int) -> Conversation:
    conv = (await s.execute(
        sa.select(Conversation).where(Conversation.id == conv_id).options(
            selectinload(Conversation.identity),
            selectinload(Conversation.owner).selectinload(Owner.houses).selectinload(OwnerHouse.house)
            .selectinload(House.building).selectinload(Building.project),
        )
    )).scalar_one_or_none()
    if conv is None:
        raise web.HTTPNotFound(text="会话不存在")
    return conv


def _timeline(messages: list[Message], conv_events: list[ConversationEvent],
              names: dict[int, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [{"type": "message", "at": m.at, "m": m, "nlu": _nlu(m)} for m in messages]
    for e in conv_events:
        data = e.data or {}
        text = label(CONVERSATION_EVENT_LABELS, e.kind)
        if e.kind == "hand_over" and data.get("reason"):
            text += f"：{reason_label(data['reason'])}"
        if e.kind in ("claim", "transfer") and data.get("staff_id") in names:
            text += f"（{names[data['staff_id']]}）"
        if data.get("note"):
            text += f" — {data['note']}"
        items.append({"type": "event", "at": e.at, "text": text, "actor": e.actor or "", "first": e.kind == "created"})
    # "created" is logged a moment after the first message it was opened for (whose time is the
    # channel's, truncated to the second): it always opens the timeline.
    items.sort(key=lambda i: (not i.get("first"), i["at"], 0 if i["type"] == "event" else 1))
    return items


def _nlu(m: Message) -> dict[str, Any] | None:
    if not m.nlu:
        return None
    intent = m.nlu.get("intent") or ""
    ents = [entity_text(e) for e in m.nlu.get("entities") or [] if isinstance(e, dict)]
    try:
        confidence = f"{float(m.nlu.get('confidence') or 0) * 100:.0f}%"
    except (TypeError, ValueError):
        confidence = ""
    return {"intent": label(INTENT_LABELS, intent), "raw_intent": intent, "confidence": confidence,
            "entities": ents}


async def _names(s: AsyncSession) -> dict[int, str]:
    return dict((await s.execute(sa.select(StaffUser.id, StaffUser.display_name))).all())


def _author(m: Message, staff_names: dict[str, str]) -> str:
    if m.direction == "in":
        return ""
    return actor(m.author or "bot", staff_names)


@route("GET", "/conversations/{id}", "chat")
async def conversation_page(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    conv_id = match_id(request)
    rt = runtime_of(request)
    now = utcnow()
    async with rt.db.session() as s, s.begin():
        conv = await _conversation(s, conv_id)
        identity, owner = conv.identity, conv.owner
        messages = list((await s.execute(
            sa.select(Message).where(Message.conversation_id == conv.id).order_by(Message.id)
        )).scalars())
        conv_events = list((await s.execute(
            sa.select(ConversationEvent).where(ConversationEvent.conversation_id == conv.id)
            .order_by(ConversationEvent.id)
        )).scalars())
        names = await _names(s)
        usernames = dict((await s.execute(sa.select(StaffUser.username, StaffUser.display_name))).all())
        houses = [oh.house for oh in owner.houses] if owner else []
        certs = list((await s.execute(
            sa.select(CertificateRecord).where(CertificateRecord.house_id.in_([h.id for h in houses]))
        )).scalars()) if houses else []
        cert_by_house = {c.house_id: c for c in certs}
        ticket_q = sa.select(Ticket).options(selectinload(Ticket.assignee), selectinload(Ticket.house)
                                             .selectinload(House.building)).order_by(Ticket.id.desc()).limit(20)
        cond = Ticket.conversation_id == conv.id
        if owner is not None:
            cond = sa.or_(cond, Ticket.owner_id == owner.id)
        tickets = list((await s.execute(ticket_q.where(cond))).scalars())
        colleagues = [u for u in await staff_list(s, ("agent", "supervisor", "admin")) if u.id != staff.id]
        project_settings: dict[str, Any] = {}
        if houses:
            project = houses[0].building.project
            project_settings = dict(project.settings or {}) if project else {}
        audit(s, staff, "conversation.view", f"conversation:{conv.id}", owner_id=conv.owner_id)
    promises = [m for m in messages if m.direction == "out" and (m.author or "bot") == "bot"][-6:]
    canned = list(project_settings.get("canned_replies") or []) + CANNED_REPLIES
    caps = _caps(request, identity)
    window_open = _free_text_open(caps, identity, now)
    window_until = (identity.last_inbound_at + caps.reply_window
                    if identity.last_inbound_at and caps.reply_window else None)
    phone = _phone(conv, caps)
    sms_ready = rt.notifier.has_template(SMS_REPLY)
    return render(
        request, "conversation.html", title=f"会话 · {who(identity, owner)}", page="conversation",
        conv=conv, identity=identity, owner=owner, who=who(identity, owner),
        channel=label(CHANNEL_LABELS, identity.channel),
        timeline=_timeline(messages, conv_events, names), usernames=usernames, author=_author,
        houses=houses, cert_by_house=cert_by_house, tickets=tickets, colleagues=colleagues,
        canned=canned, promises=promises, window_open=window_open, window_until=window_until,
        phone=shown_phone(staff, phone), has_phone=bool(phone), names=names,
        by_sms=caps.templates_only, sms_ready=sms_ready, sms_max=TEXT_MAX,
        last_id=messages[-1].id if messages else 0, is_overdue=is_overdue, now=now,
        mine=conv.assignee_id == staff.id, assignee=names.get(conv.assignee_id or 0, ""),
    )


@route("GET", "/api/conversations/{id}/messages", "chat")
async def new_messages(request: web.Request) -> web.StreamResponse:
    conv_id = match_id(request)
    after = params.int_param(request.query, "after", default=0)
    async with runtime_of(request).db.session() as s:
        conv = await s.get(Conversation, conv_id)
        if conv is None:
            raise web.HTTPNotFound()
        messages = list((await s.execute(
            sa.select(Message).where(Message.conversation_id == conv_id, Message.id > after).order_by(Message.id)
        )).scalars())
        usernames = dict((await s.execute(sa.select(StaffUser.username, StaffUser.display_name))).all())
    items = [{"type": "message", "at": m.at, "m": m, "nlu": _nlu(m)} for m in messages]
    html = render_string(request, "_timeline.html", timeline=items, usernames=usernames, author=_author)
    return web.json_response({"html": html, "last_id": messages[-1].id if messages else after, "mode": conv.mode,
                              "assignee_id": conv.assignee_id})


@route("GET", "/api/conversations/{id}/deliveries", "chat")
async def deliveries(request: web.Request) -> web.StreamResponse:
    """The delivery badges of outbound messages still being sent (``?ids=1,2``): the page polls while
    any shows 发送中, so a badge turns to 已送达 or 发送失败 without a reload."""
    conv_id = match_id(request)
    ids = [int(x) for x in request.query.get("ids", "").split(",")[:50] if x.isdigit()]
    async with runtime_of(request).db.session() as s:
        messages = list((await s.execute(
            sa.select(Message).where(Message.conversation_id == conv_id, Message.id.in_(ids or [0]))
        )).scalars())
    console = request.app[CONSOLE]
    template = console.templates.get_template("_delivery.html")
    return web.json_response({"badges": {str(m.id): template.render(m=m) for m in messages},
                              "pending": [m.id for m in messages if m.delivery == "queued"]})


# --- verbs --------------------------------------------------------------------------------------


class _Locked:
    """Open a transaction on one conversation under the engine's per-sender turn lock."""

    def __init__(self, request: web.Request, conv_id: int) -> None:
        self.rt = runtime_of(request)
        self.conv_id = conv_id
        self.stack = AsyncExitStack()

    async def __aenter__(self) -> tuple[AsyncSession, Conversation]:
        async with self.rt.db.session() as probe:
            row = (await probe.execute(
                sa.select(Identity.channel, Identity.account, Identity.external_id)
                .join(Conversation, Conversation.identity_id == Identity.id).where(Conversation.id == self.conv_id)
            )).one_or_none()
        if row is None:
            raise web.HTTPNotFound(text="会话不存在")
        await self.stack.enter_async_context(self.rt.services.locks.lock("turn:" + sender_key(*row)))
        s = await self.stack.enter_async_context(self.rt.db.session())
        await self.stack.enter_async_context(s.begin())
        return s, await _conversation(s, self.conv_id)

    async def __aexit__(self, *exc: Any) -> bool | None:
        return await self.stack.__aexit__(*exc)


def _back(conv_id: int) -> str:
    return f"{PREFIX}/conversations/{conv_id}"


def _may_act(staff: Staff, conv: Conversation) -> bool:
    """The assignee acts on a claimed chat; supervisors and admins may step in."""
    return conv.assignee_id == staff.id or staff.role in ("supervisor", "admin")


@route("POST", "/conversations/{id}/claim", "chat")
async def claim(request: web.Request) -> web.StreamResponse:
    staff, conv_id = staff_of(request), match_id(request)
    rt = runtime_of(request)
    batch = EventBatch()
    async with _Locked(request, conv_id) as (s, conv):
        if conv.mode == verbs.STAFF:
            if conv.assignee_id == staff.id:
                return done(request, _back(conv_id))
            holder = await s.get(StaffUser, conv.assignee_id) if conv.assignee_id else None
            raise Refused(f"该会话已由{holder.display_name if holder else '同事'}接入", status=409) from None
        try:
            verbs.claim(s, batch, conv, staff_id=staff.id, actor=staff.actor)
        except verbs.TransitionError:
            raise Refused("会话已关闭，无法接入", status=409) from None
        audit(s, staff, "conversation.claim", f"conversation:{conv_id}", owner_id=conv.owner_id)
    await batch.publish(rt.services.pubsub)
    return done(request, _back(conv_id), "已接入会话，机器人将暂停回复")


@route("POST", "/conversations/{id}/reply", "chat")
async def reply(request: web.Request) -> web.StreamResponse:
    staff, conv_id = staff_of(request), match_id(request)
    rt = runtime_of(request)
    text = (await form(request)).get("text", "").strip()
    if not text:
        raise Refused("回复内容不能为空") from None
    if len(text) > MAX_TEXT:
        raise Refused(f"回复内容请控制在{MAX_TEXT}字以内") from None
    batch = EventBatch()
    async with _Locked(request, conv_id) as (s, conv):
        if conv.mode != verbs.STAFF or conv.assignee_id != staff.id:
            raise Refused("请先接入该会话再回复", status=409) from None
        identity = conv.identity
        caps = _caps(request, identity)
        if not _free_text_open(caps, identity, utcnow()):
            phone = _phone(conv, caps)
            detail = ("该业主通过短信联系，请改用短信回复" if caps.templates_only else
                      "微信客服消息窗口已关闭（业主超过48小时未留言），消息无法送达。")
            if phone and not caps.templates_only:
                detail += "可改发短信。"
            if wants_json(request):
                return web.json_response({"error": "window_closed", "detail": detail, "sms": bool(phone)},
                                         status=409)
            raise Refused(detail, status=409) from None
        out = await rt.engine.send(s, conv, OutboundMessage(text), author=staff.actor, batch=batch)
        audit(s, staff, "conversation.reply", f"conversation:{conv_id}", message_id=out.id, owner_id=conv.owner_id)
    await rt.engine.after_commit(batch, [out.id])
    rt.metrics.messages_out.labels(conv.identity.channel, "staff").inc()
    return done(request, _back(conv_id), message_id=out.id)


@route("POST", "/conversations/{id}/sms", "chat")
async def reply_sms(request: web.Request) -> web.StreamResponse:
    staff, conv_id = staff_of(request), match_id(request)
    rt = runtime_of(request)
    text = (await form(request)).get("text", "").strip()
    if not text:
        raise Refused("短信内容不能为空") from None
    if len(text) > TEXT_MAX:  # refused before anything is loaded: no SMS is longer
        raise Refused(f"短信内容过长：共{len(text)}字，短信最多{TEXT_MAX}字（含签名），请删减后再发送") from None
    batch = EventBatch()
    async with _Locked(request, conv_id) as (s, conv):
        if conv.mode != verbs.STAFF or conv.assignee_id != staff.id:
            raise Refused("请先接入该会话再回复", status=409) from None
        phone = _phone(conv, _caps(request, conv.identity))
        if not phone:
            raise Refused("该用户未绑定手机号，无法发送短信", status=409) from None
        if not rt.notifier.has_template(SMS_REPLY):  # SMS carries approved templates only
            raise Refused("当前短信服务商没有已审核通过的回复模板，无法发送短信，请电话联系业主", status=409) from None
        refusal = _sms_refusal(await _sms_preview(request, s, conv, text))
        if refusal:  # never shorten what staff wrote behind their back
            raise Refused(refusal) from None
        msg = Message(conversation_id=conv.id, direction="out", channel="sms", account=rt.notifier.provider,
                      kind="text", text=text, author=staff.actor, delivery="queued", at=utcnow())
        s.add(msg)
        await s.flush()
        sms = await rt.notifier.sms(s, batch, phone=phone, kind=SMS_REPLY, params={"content": text},
                                    owner_id=conv.owner_id, project_id=_project_id(conv),
                                    conversation_id=conv.id, message_id=msg.id,
                                    idempotency_key=f"reply:{msg.id}")
        msg.text, msg.media = sms.text, {"sms_id": sms.id, "segments": sms.segments}
        batch.emit("message.created", conversation_id=conv.id, message_id=msg.id, direction="out", mode=conv.mode,
                   author=staff.actor)
        audit(s, staff, "conversation.sms", f"conversation:{conv_id}", sms_id=sms.id, owner_id=conv.owner_id)
    await batch.publish(rt.services.pubsub)
    return done(request, _back(conv_id), f"短信已提交发送（{sms.segments}条计费）", message_id=msg.id)


@route("POST", "/api/conversations/{id}/sms_preview", "chat")
async def sms_preview(request: web.Request) -> web.StreamResponse:
    """What an SMS reply of ``text`` would be, for the compose box while staff type: the text as the
    owner's phone shows it (signature and template included), characters, billed parts and cost."""
    conv_id = match_id(request)
    rt = runtime_of(request)
    text = str((await form(request)).get("text", "")).strip()[: 4 * TEXT_MAX]
    async with rt.db.session() as s:
        conv = await _conversation(s, conv_id)
        if not rt.notifier.has_template(SMS_REPLY):
            return web.json_response({"ready": False, "detail": "当前短信服务商没有已审核通过的回复模板，无法发送短信"})
        preview = await _sms_preview(request, s, conv, text)
    refusal = _sms_refusal(preview) if text else None
    length = preview.length
    return web.json_response({
        "ready": True, "text": preview.text, "chars": length.chars, "segments": length.segments,
        "cost": yuan(length.cost), "label": length.label(), "ok": bool(text) and refusal is None,
        "detail": refusal or "",
    })


@route("POST", "/conversations/{id}/note", "chat")
async def note(request: web.Request) -> web.StreamResponse:
    staff, conv_id = staff_of(request), match_id(request)
    rt = runtime_of(request)
    text = (await form(request)).get("text", "").strip()
    if not text:
        raise Refused("备注内容不能为空") from None
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        conv = await _conversation(s, conv_id)
        msg = Message(conversation_id=conv.id, direction="note", channel=conv.identity.channel,
                      account=conv.identity.account, kind="text", text=text[:2000], author=staff.actor, at=utcnow())
        s.add(msg)
        await s.flush()
        batch.emit("message.created", conversation_id=conv.id, message_id=msg.id, direction="note", mode=conv.mode,
                   author=staff.actor)
        audit(s, staff, "conversation.note", f"conversation:{conv_id}", message_id=msg.id)
    await batch.publish(rt.services.pubsub)
    return done(request, _back(conv_id), message_id=msg.id)


@route("POST", "/conversations/{id}/transfer", "chat")
async def transfer(request: web.Request) -> web.StreamResponse:
    staff, conv_id = staff_of(request), match_id(request)
    rt = runtime_of(request)
    data = await form(request)
    target_id = params.parse_id(data.get("staff_id"))
    note_text = data.get("note", "").strip()[:500]
    batch = EventBatch()
    async with _Locked(request, conv_id) as (s, conv):
        target = await s.get(StaffUser, target_id) if target_id else None
        if target is None or not target.active or target.role not in ("agent", "supervisor", "admin"):
            raise Refused("请选择一位在岗的客服同事") from None
        if conv.mode != verbs.STAFF or not _may_act(staff, conv):
            raise Refused("只有接入该会话的客服（或主管）可以转交", status=409) from None
        if target.id == conv.assignee_id:
            raise Refused("该同事已经在处理这个会话") from None
        verbs.transfer(s, batch, conv, staff_id=target.id, actor=staff.actor, note=note_text)
        audit(s, staff, "conversation.transfer", f"conversation:{conv_id}", to=target.username, note=note_text)
    await batch.publish(rt.services.pubsub)
    return done(request, f"{PREFIX}/", f"已转交给{target.display_name}")


@route("POST", "/conversations/{id}/hand_back", "chat")
async def hand_back(request: web.Request) -> web.StreamResponse:
    staff, conv_id = staff_of(request), match_id(request)
    rt = runtime_of(request)
    batch = EventBatch()
    async with _Locked(request, conv_id) as (s, conv):
        if conv.mode == verbs.STAFF and not _may_act(staff, conv):
            raise Refused("该会话由其他同事处理中", status=409) from None
        try:
            verbs.hand_back(s, batch, conv, actor=staff.actor)
        except verbs.TransitionError:
            raise Refused("当前状态下无法交还机器人", status=409) from None
        audit(s, staff, "conversation.hand_back", f"conversation:{conv_id}")
    await batch.publish(rt.services.pubsub)
    return done(request, f"{PREFIX}/", "已交还机器人，后续消息将由机器人回复")


@route("POST", "/conversations/{id}/close", "chat")
async def close(request: web.Request) -> web.StreamResponse:
    staff, conv_id = staff_of(request), match_id(request)
    rt = runtime_of(request)
    reason = (await form(request)).get("reason", "").strip()[:200]
    batch = EventBatch()
    async with _Locked(request, conv_id) as (s, conv):
        if conv.mode == verbs.STAFF and not _may_act(staff, conv):
            raise Refused("该会话由其他同事处理中", status=409) from None
        try:
            verbs.close(s, batch, conv, actor=staff.actor, reason=reason)
        except verbs.TransitionError:
            raise Refused("会话已关闭", status=409) from None
        audit(s, staff, "conversation.close", f"conversation:{conv_id}", reason=reason)
    await batch.publish(rt.services.pubsub)
    return done(request, f"{PREFIX}/", "会话已关闭")
