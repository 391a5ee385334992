"""Emergencies (DOMAIN.md): safety advice and the duty phone at once, an urgent ticket, the duty alert.

An emergency stays an emergency: until staff take the ticket (it leaves ``new``) every later message
from the owner enriches the ticket (``emergency_update`` on its timeline: location, who is trapped,
floor) and never starts a normal form. A public-area emergency without a building asks for it at once,
and the duty alert is re-sent when the location arrives.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from actions import alerts
from actions.flows.base import Flow, drop_form, new_form
from actions.flows.context import Ctx, house_matches, house_text
from actions.flows.labels import SAFETY, URGENCY_CATEGORY, URGENCY_LABEL
from actions.tickets import open_ticket
from bot import conversation as verbs
from bot import events
from bot.store.models import House, Ticket, TicketEvent

STAND_DOWN = re.compile(r"误报|搞错|弄错|说错|没事了|不是紧急|不紧急|不急|已经好了|好了没事|解决了|处理好了|已经关了|取消|算了")
PUBLIC_KINDS = frozenset({"trapped", "falling", "structural"})
BUILDING = re.compile(r"(\d{1,3})\s*(?:栋|幢|号楼|座)")
FLOOR = re.compile(r"(\d{1,3}|负\d|B\d)\s*(?:楼|层)")


def _kind(value: str | None) -> str:
    # The NLU names entrapment "lift_entrapment" in its newer vocabulary; the desk's tables say "trapped".
    return {"lift_entrapment": "trapped", "fire": "burning", "gas": "gas_leak"}.get(value or "", value or "flooding")


class EmergencyFlow(Flow):
    name = "emergency"
    forms = frozenset({"emergency"})
    priority = 100
    timeout = dt.timedelta(hours=6)
    """An emergency nobody took in six hours is stale; the owner's words go back to the normal desk."""

    async def intercept(self, ctx: Ctx) -> list[str] | None:
        form = ctx.form
        if form is not None and form["name"] == "emergency":
            ticket = await ctx.session.get(Ticket, form["slots"].get("ticket_id"))
            if ticket is not None and ticket.status == "new":
                if STAND_DOWN.search(ctx.text) and len(ctx.text) <= 20:
                    return [self._stand_down(ctx, ticket)]
                if ctx.intent in ("inquiry", "certificate") and ctx.parse is not None and ctx.parse.confidence >= 0.8 \
                        and ctx.entity("location") is None and ctx.entity("house") is None:
                    flow = ctx.router.flow("knowledge" if ctx.intent == "inquiry" else "certificate")
                    answer = await flow.answer(ctx)
                    ctx.state["form"] = form
                    return [*answer, f"您的紧急工单 {ticket.number} 仍在处理中，有新情况请随时告诉我。"]
                return [await self._enrich(ctx, form, ticket)]
            drop_form(ctx.state)  # staff have taken it: the owner's words go back to the normal desk
        if ctx.entity("urgency") is not None and ctx.intent not in ("thanks", "optout"):
            return await self.start(ctx)  # "燃气泄漏 快找人": safety first, the person comes with it
        return None

    async def start(self, ctx: Ctx) -> list[str]:
        form = ctx.form or {}
        slots: dict[str, Any] = form.get("slots", {}) if form.get("name") == "repair" else {}
        kind = _kind(ctx.entity_value("urgency") or slots.get("urgency"))
        text = ctx.text if ctx.entity("urgency") is not None or not slots.get("description") else slots["description"]
        duty = await ctx.setting("duty_phone", "物业值班电话")
        houses = await ctx.houses()
        house: House | None = None
        location = self._location(ctx)
        if kind not in PUBLIC_KINDS and location is None:
            parts = ctx.entity("house")
            house = next((h for h in houses if h.id == slots.get("house_id")), None) or (
                next((h for h in houses if parts is not None and house_matches(h, parts.extra)), None))
            if house is None and len(houses) == 1 and parts is None:
                house = houses[0]
        category = ctx.entity_value("repair_category") or URGENCY_CATEGORY.get(kind, "other")
        project = house.building.project if house else await ctx.project()
        owner = await ctx.owner()
        ticket = await open_ticket(
            ctx.session, kind="repair", project=project, description=text, category=category, house=house,
            location=location or (None if house else "待确认（紧急）"), owner_id=ctx.identity.owner_id,
            conversation_id=ctx.conversation.id, contact_phone=owner.phone if owner else None,
            priority="urgent", now=ctx.now,
        )
        ctx.events.emit(events.TICKET_CREATED, ticket_id=ticket.id, number=ticket.number, kind="repair",
                        priority="urgent", conversation_id=ctx.conversation.id)
        ctx.events.emit(events.EMERGENCY_RAISED, ticket_id=ticket.id, number=ticket.number, urgency=kind,
                        conversation_id=ctx.conversation.id, text=text)
        where = house_text(house) if house else (location or "位置待确认")
        await self._alert(ctx, ticket, kind, where)
        ctx.state.pop("queued", None)
        new_form(ctx.state, "emergency", {"ticket_id": ticket.id, "kind": kind, "where": where,
                                          "located": bool(house or (location and BUILDING.search(location)))})
        if ctx.conversation.mode == verbs.BOT:
            verbs.hand_over(ctx.session, ctx.events, ctx.conversation, reason="emergency", priority=100,
                            now=ctx.now)
        advice = SAFETY.get(kind, "请先确保人身安全，远离危险区域。")
        ask = ""
        if house is None and not (location and BUILDING.search(location)):
            ask = ("请马上告诉我具体是几栋几单元（公共区域请说明位置，如8栋1单元电梯、地下车库B2）。"
                   if kind in PUBLIC_KINDS or location else "请马上告诉我具体位置（楼栋单元房号或公共区域位置）。")
        return [f"【紧急】{advice}\n我们已通知值班人员立即处理（紧急工单 {ticket.number}），请保持电话畅通。"
                f"24小时值班电话：{duty}，情况危急请直接拨打；有人员受伤或明火请立即拨打119/120。{ask}"]

    def _location(self, ctx: Ctx) -> str | None:
        loc = ctx.entity("location")
        if loc is None:
            return None
        words = ctx.turn.inbound.text[loc.start:loc.end]
        building = loc.extra.get("building")
        if building and str(building) not in words:
            words = f"{building}栋{words}"
        elif not building:
            m = BUILDING.search(ctx.text)
            if m and m.group(1) not in words:
                unit = re.search(r"(\d{1,2})\s*单元", ctx.text)
                words = f"{m.group(1)}栋" + (f"{unit.group(1)}单元" if unit else "") + words
        return words

    def _stand_down(self, ctx: Ctx, ticket: Ticket) -> str:
        """"没事了/误报": told to the duty staff on the ticket; they still confirm, the form ends."""
        ctx.session.add(TicketEvent(ticket_id=ticket.id, kind="emergency_update", actor="owner", at=ctx.now,
                                    data={"text": ctx.text[:2000], "stand_down": True}))
        ctx.events.emit(events.TICKET_UPDATED, ticket_id=ticket.id, number=ticket.number, change="emergency_update")
        drop_form(ctx.state)
        return (f"好的，已告知值班人员（紧急工单 {ticket.number}），他们可能会打电话和您确认一下情况。"
                "还有其他需要，直接留言告诉我即可。")

    async def _enrich(self, ctx: Ctx, form: dict[str, Any], ticket: Ticket) -> str:
        """A later message while the emergency is open: add it to the ticket, re-alert with the place."""
        slots = form["slots"]
        text = ctx.text
        location = self._location(ctx)
        building = BUILDING.search(text)
        house_ent = ctx.entity("house")
        if house_ent is not None and house_ent.extra.get("room"):
            location = text[house_ent.start:house_ent.end]  # "3栋2单元501": the home itself, room included
        if location is None and building is not None:
            unit = re.search(r"(\d{1,2})\s*单元", text)
            location = f"{building.group(1)}栋" + (f"{unit.group(1)}单元" if unit else "")
        if location is None and house_ent is not None:
            location = text[house_ent.start:house_ent.end]
        floor = FLOOR.search(text)
        data: dict[str, Any] = {"text": text[:2000]}
        newly_located = False
        if location:
            data["location"] = location
            if ticket.house_id is None:
                ticket.location = location[:100]
            newly_located = not slots.get("located")
            slots["located"] = True
            slots["where"] = location
        if floor:
            data["floor"] = floor.group(0)
        ctx.session.add(TicketEvent(ticket_id=ticket.id, kind="emergency_update", actor="owner", at=ctx.now,
                                    data=data))
        ticket.description = f"{ticket.description}；{text}"[:2000]
        ctx.events.emit(events.TICKET_UPDATED, ticket_id=ticket.id, number=ticket.number, change="emergency_update")
        duty = await ctx.setting("duty_phone", "物业值班电话")
        if newly_located:
            await self._alert(ctx, ticket, slots.get("kind", "other"), location or "", update=text)
            return (f"收到，位置（{location}）已立即转给值班人员，他们正在赶往现场（紧急工单 {ticket.number}）。"
                    f"请保持电话畅通，情况变化请随时告诉我，或直接拨打值班电话{duty}。")
        ask = "" if slots.get("located") else "请告诉我具体是几栋几单元，方便值班人员尽快找到位置。"
        return (f"收到，已补充给值班人员（紧急工单 {ticket.number}）。{ask}"
                f"请保持电话畅通，紧急情况请直接拨打值班电话{duty}。")

    async def _alert(self, ctx: Ctx, ticket: Ticket, kind: str, where: str, update: str = "") -> None:
        """Day or night, the people on duty (the project's roster) get an SMS and the WeCom group a
        message, not only a console badge (actions/alerts.py); a location given later is a second alert."""
        await alerts.raise_emergency(
            ctx.session, ctx.events, ctx.desk.runtime, ticket=ticket, what=URGENCY_LABEL.get(kind, kind),
            location=where, now=ctx.now, conversation_id=ctx.conversation.id, update=update,
            key_suffix=f":{ctx.turn.message_id}" if update else "",
        )
