"""The dialogue policy: one turn in, the desk's reply out; the flows (actions/flows/) do the work.

State lives in ``Conversation.state`` (JSON) and is replaced as a whole at the end of a turn, so the
ORM notices the change:

- ``form``: the active form ``{"name", "slots", "asking", "updated"}``; its flow is the router's
  ``owner_of(name)`` (repair, complaint, complaint_contact, bind_phone, bind_code, choose_house,
  emergency, …);
- ``resume``: the flow to pick up once binding or choosing a house finished (``{"flow", "text", "form"}``);
- ``queued``: repairs mentioned while another was in progress ("还有，楼道灯也坏了");
- ``choices``: knowledge-base entries offered as numbered choices;
- ``complaint``: the complaint being talked about (its ticket and the severity cues heard so far);
- ``offer``: what the bot just offered (a complaint about an overdue certificate);
- ``misses``: misunderstandings in a row (two → offer a person).

This module owns what is not a flow: events (subscribe, menu clicks), media, form expiry. Channel
rules stay out: the policy returns one reply text per turn and the channel decides how to send it.
Every reply ends with what the owner can do next: no dead ends.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from actions.flows import build_router
from actions.flows.base import Router, drop_form, expired
from actions.flows.certificate import CertificateFlow
from actions.flows.context import Ctx, Desk, State
from actions.flows.repair import RepairFlow
from bot.events import EventBatch
from bot.policy import HELP, NON_TEXT, WELCOME, OutboundMessage, Turn
from bot.store.models import Conversation, Message

if TYPE_CHECKING:
    from bot.runtime import Runtime


class DialoguePolicy:
    def __init__(self, runtime: Runtime, router: Router | None = None) -> None:
        self.desk = Desk(runtime)
        self.router = router or build_router()

    async def respond(self, turn: Turn) -> list[OutboundMessage]:
        state: State = copy.deepcopy(turn.conversation.state or {})
        replies: list[str] = []
        try:
            replies = await self._respond(Ctx(turn, state, self.desk, self.router))
        finally:
            form = state.get("form")
            if form:
                form["updated"] = turn.now.isoformat()
            turn.conversation.state = state  # replaced whole: the JSON column is not mutation-tracked
        # One answer per turn, as a desk answers: the parts (an aside, then the form's question) read as
        # one message; how a channel delivers it is the channel's business.
        text = "\n\n".join(r for r in replies if r)
        return [OutboundMessage(text)] if text else []

    async def _respond(self, ctx: Ctx) -> list[str]:
        msg = ctx.turn.inbound
        if msg.kind == "event":
            return await self._event(ctx)
        form = ctx.form
        if msg.kind == "image":
            return await self._image(ctx)
        if msg.kind == "location" and form is not None and form["name"] == "repair":
            form["slots"].setdefault("location", msg.text or "已发送定位")
            form["slots"]["public"] = True
            return [await self._repair.advance(ctx)]
        if msg.kind not in ("text", "voice", "link", "location") or not msg.text.strip():
            return [NON_TEXT if msg.kind != "unknown" else "抱歉，暂时无法识别这类消息。" + HELP]
        prefix: list[str] = []
        owner = self.router.owner_of(form["name"]) if form is not None else None
        if form is not None and owner is not None and expired(form, ctx.now, owner.timeout):
            drop_form(ctx.state)
            prefix.append("您之前未完成的登记已超时取消，如仍需办理请重新告诉我。")
        return prefix + await self.router.route(ctx)

    async def start_flow(self, s: AsyncSession, batch: EventBatch, conv: Conversation, name: str,
                         **slots: Any) -> Message:
        """Start flow ``name`` outside a turn (a survey after a ticket closes, a campaign question).

        Its form goes into the conversation's state and its first question is stored as an outbound
        message in the caller's transaction; the caller commits and then calls
        ``runtime.engine.after_commit(batch, [message.id])``. The owner's answer reaches the flow's
        ``step`` as in any form."""
        state: State = copy.deepcopy(conv.state or {})
        text = self.router.begin(state, name, self.desk.runtime.engine.clock(), **slots)
        conv.state = state
        return await self.desk.runtime.engine.send(s, conv, OutboundMessage(text), author="bot", batch=batch)

    @property
    def _repair(self) -> RepairFlow:
        return self.router.get(RepairFlow)

    async def _event(self, ctx: Ctx) -> list[str]:
        event = ctx.turn.inbound.event
        if event in ("subscribe", "scan"):
            return [WELCOME]
        if event != "click":
            return []
        key = (ctx.turn.inbound.text or "").upper()
        if key in ("REPAIR", "BAOXIU"):
            return [await self._repair.begin(ctx, "", fill=False)]
        if key in ("MY_TICKETS", "TICKETS"):
            return await self.router.flow("my_tickets").start(ctx)
        if key in ("CERTIFICATE", "BANZHENG"):
            return await self.router.get(CertificateFlow).start(ctx, personal=True)
        if key in ("HUMAN", "KEFU"):
            return await self.router.flow("handover").start(ctx)
        return [HELP]

    async def _image(self, ctx: Ctx) -> list[str]:
        form = ctx.form
        media = dict(ctx.turn.inbound.media)
        if form is not None and form["name"] == "repair":
            return [await self._repair.photo(ctx, form, media)]
        return ["照片已收到。请用文字简单描述一下问题，例如“卫生间漏水”，我来为您登记。"]


__all__ = ["DialoguePolicy"]
