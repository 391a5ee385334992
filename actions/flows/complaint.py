"""Complaints (投诉, DOMAIN.md): acknowledge at once, know what it is about, one ticket per matter.

* A complaint without substance ("我要投诉") asks what happened before anything is opened.
* Severity and category come from the whole conversation (the cues are kept in
  ``state["complaint"]``): a later "再不解决我就打12345" upgrades the open complaint and escalates it.
* Follow-up sentences join the open complaint's timeline instead of opening another ticket.
* A complaint that also needs a repair (a garage leak nobody fixes) opens both, linked on both timelines.
* Call-back promises come from staff hours (actions/hours.py ``callback_promise``) and the project's
  ``complaint`` settings (``callback_hours``; texts ``serious``/``normal``/``group`` override the defaults).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import sqlalchemy as sa

from actions import alerts
from actions.flows import followup
from actions.flows.base import Flow, drop_form, new_form
from actions.flows.context import NEXT, Ctx, mask_phone
from actions.flows.labels import COMPLAINT_LABEL
from actions.hours import callback_promise
from actions.tickets import open_ticket
from bot import conversation as verbs
from bot import events
from bot.store.models import Project, StaffUser, Ticket, TicketEvent

GROUP_THRESHOLD = 3
GROUP_WINDOW = dt.timedelta(hours=24)
SAME_TALK = dt.timedelta(minutes=60)
"""Complaint sentences within this time of the last one in the same chat belong to the same complaint."""
FILLER = re.compile(r"我要|我想|我得|要|想|投诉|举报|反映|你们|物业|一下|我|啊|吧|呢|了|的|！|!|。|，|,|\s")
VENT = re.compile(r"到底|是干什么吃的|干什么吃的|干啥吃的|吃干饭|不作为|太差|差劲|太烂|垃圾|什么玩意|怎么回事|搞什么|搞什么鬼|"
                  r"真是|简直|无语|服了|气死|受不了|太过分|过分|不像话|不负责|不靠谱|太坑|坑人|黑心|管不管|还管不管|"
                  r"怎么搞的|什么服务|服务太|态度|不满意|很生气|生气|失望|太失望")
"""Venting with no subject ("物业太不作为了"): heard, but it does not say what happened."""
DELAY = re.compile(r"没人|不管|没管|一直|多次|好几次|几次|还没|拖|等了|至今|始终|总是")
BROKEN = re.compile(r"坏|漏|渗|堵塞|不亮|不通|裂|掉|断|故障|失灵|不能用|用不了|停了|不动|不转|积水|进水|塌|松动|脱落")
"""A complaint "with a repair inside": something is physically broken, not only badly kept."""
NO_SHOW = re.compile(r"(?:师傅|人|工人|维修工|保安|物业)(?:根本|一直|都|也|还|压根)?(?:没来|没有来|不来|没上门|没过来)|没人来|没人管|没人理|没人处理|"
                     r"没人联系|没人回|放鸽子|爽约|等了一天|白等")
SEVERE = re.compile(r"12345|市长热线|媒体|记者|曝光|律师|起诉|法院|报警|消协|住建|投诉到|告你们|维权")


HANDLING = re.compile(r"怎么处理|如何处理|怎么解决|什么时候处理|什么时候解决|多久|给个说法|给我个说法|有结果|怎么办|打算怎么")
"""The owner asks what will happen with the complaint they just made."""
CONTINUES = dt.timedelta(minutes=10)
"""A sentence this soon after the last one of a complaint, with no business of its own, continues it."""


class ComplaintFlow(Flow):
    name = "complaint"
    intents = frozenset({"complaint"})
    forms = frozenset({"complaint", "complaint_contact"})
    priority = 30  # "就是东门那个高个子的" right after a complaint about a guard: more of the same complaint

    async def intercept(self, ctx: Ctx) -> list[str] | None:
        talk = ctx.state.get("complaint")
        if ctx.form is not None or not isinstance(talk, dict) or not talk.get("at"):
            return None
        if ctx.now - dt.datetime.fromisoformat(talk["at"]) > CONTINUES:
            return None
        intent = ctx.intent
        confident = ctx.parse is not None and ctx.parse.confidence >= 0.8
        if HANDLING.search(ctx.text) and len(ctx.text) <= 20 and ctx.entity("urgency") is None:
            ticket = await ctx.session.get(Ticket, talk["ticket_id"])
            if ticket is not None and ticket.status != "closed":
                return [await self._next_step(ctx, ticket)]
        if ctx.entity("urgency") is not None or BROKEN.search(ctx.text) or ctx.entity("time") is not None:
            return None  # an emergency, or a repair of its own
        if confident and intent in ("inquiry", "certificate", "human", "greet", "thanks", "affirm", "deny", "optout"):
            return None
        if (confident and intent not in ("complaint", "other", "repair")) or len(ctx.text) < 4 or "修" in ctx.text:
            return None
        ticket = await ctx.session.get(Ticket, talk["ticket_id"])
        if ticket is None or ticket.status == "closed":
            return None
        return [await self._join(ctx, ticket, talk)]

    async def start(self, ctx: Ctx) -> list[str]:
        text = ctx.text
        talk = self._recent(ctx)
        if talk is not None:
            ticket = await ctx.session.get(Ticket, talk["ticket_id"])
            if ticket is not None and ticket.status != "closed":
                return [await self._join(ctx, ticket, talk)]
        category = ctx.entity_value("complaint_category")
        if category in (None, "other") and ctx.entity_value("repair_category") in (None, "other") \
                and not NO_SHOW.search(text) and len(FILLER.sub("", VENT.sub("", text))) < 4:
            new_form(ctx.state, "complaint", {"text": text}, asking="description")
            return ["很抱歉让您不满意了。请问您要反映什么问题？说说发生了什么、在哪里，我马上为您登记并转给负责的同事。"]
        related = await followup.related_open(ctx, "complaint", category=category or "other")
        if related is not None and category not in (None, "other"):
            self._remember(ctx, related, [])
            return [await self._join(ctx, related, ctx.state["complaint"])]
        return [await self.open(ctx, text)]

    async def step(self, ctx: Ctx, form: dict[str, Any]) -> list[str] | None:
        if form["name"] == "complaint_contact":
            phone = ctx.phone()
            drop_form(ctx.state)
            if phone is None:
                return None
            ticket = await ctx.session.get(Ticket, form["slots"]["ticket_id"])
            if ticket is not None:
                ticket.contact_phone = phone
            return [f"好的，已记录联系电话{mask_phone(phone)}，负责的同事会通过这个号码与您联系。" + NEXT]
        # Asking what the complaint is about: anything with substance opens it, once asked is enough.
        text = ctx.text
        if ctx.intent in ("greet", "thanks") and len(text) <= 4:
            return None
        slots = form["slots"]
        said = [*slots.get("said", []), text]
        slots["said"] = said
        substantive = (ctx.entity_value("complaint_category") not in (None, "other")
                       or ctx.entity_value("repair_category") not in (None, "other") or NO_SHOW.search(text)
                       or len(FILLER.sub("", VENT.sub("", text))) >= 4)
        if not substantive and not slots.get("asked_again"):
            slots["asked_again"] = True
            return ["请简单说说具体是什么事，例如“楼上装修太吵”“保安态度很差”“车库一直漏水没人管”。"]
        drop_form(ctx.state)
        earlier = [t for t in [slots.get("text", ""), *said[:-1]] if len(FILLER.sub("", t)) >= 2]
        return [await self.open(ctx, text, earlier="；".join(earlier) or None)]

    def _recent(self, ctx: Ctx) -> dict[str, Any] | None:
        talk = ctx.state.get("complaint")
        if not isinstance(talk, dict) or not talk.get("at"):
            return None
        if ctx.now - dt.datetime.fromisoformat(talk["at"]) > SAME_TALK:
            ctx.state.pop("complaint", None)
            return None
        return talk

    def _remember(self, ctx: Ctx, ticket: Ticket, cues: list[str]) -> None:
        ctx.state["complaint"] = {"ticket_id": ticket.id, "at": ctx.now.isoformat(), "cues": cues}

    @staticmethod
    def _cues(ctx: Ctx) -> list[str]:
        parse = ctx.parse
        cues = [e.value for e in parse.entities_of("severity")] if parse is not None else []
        if SEVERE.search(ctx.text) and not cues:
            cues.append("external")
        return cues

    async def _next_step(self, ctx: Ctx, ticket: Ticket) -> str:
        """What happens next with the complaint, as promised when it was opened (no new promise)."""
        hours = await ctx.setting("staff_hours")
        config = await ctx.setting("complaint", {}) or {}
        if ticket.priority in ("serious", "group"):
            when = callback_promise(hours, ctx.now, float(config.get("callback_hours", 4)))
            who = "客服主管"
        else:
            when = callback_promise(hours, ctx.now, 24)
            who = "负责的客服"
        return (f"您的投诉单 {ticket.number} 已交给{who}，会{when}与您联系，先核实情况，再告诉您处理方案和时间；"
                "处理完成后我们还会回访。有新的情况可以直接补充给我。")

    async def _join(self, ctx: Ctx, ticket: Ticket, talk: dict[str, Any]) -> str:
        """A further sentence about the same complaint: its timeline, and an upgrade if it got serious."""
        followup.add_followup(ctx, ticket, ctx.text)
        cues = self._cues(ctx)
        talk["cues"] = sorted(set(talk.get("cues", [])) | set(cues))
        talk["at"] = ctx.now.isoformat()
        ctx.state["complaint"] = talk
        lead = f"您补充的情况已记录到投诉单 {ticket.number}，负责的同事会一并核实。"
        if cues and ticket.priority == "normal":
            ticket.priority = "serious"
            ctx.session.add(TicketEvent(ticket_id=ticket.id, kind="note", actor="bot", at=ctx.now,
                                        data={"change": "priority", "priority": "serious",
                                              "text": "业主补充后升级为重要投诉"}))
            ctx.events.emit(events.TICKET_UPDATED, ticket_id=ticket.id, number=ticket.number, change="priority")
            return lead + await self._escalate(ctx, ticket, "serious")
        if cues:
            when = callback_promise(await ctx.setting("staff_hours"), ctx.now,
                                    float((await ctx.setting("complaint", {}) or {}).get("callback_hours", 4)))
            return lead + f"已同时转告客服主管，主管会{when}与您联系。"
        return lead + NEXT

    async def _escalate(self, ctx: Ctx, ticket: Ticket, level: str, lead: str = "客服主管") -> str:
        config = await ctx.setting("complaint", {}) or {}
        hours = await ctx.setting("staff_hours")
        within = float(config.get("callback_hours", 4))
        when = callback_promise(hours, ctx.now, within)
        label = COMPLAINT_LABEL.get(ticket.category or "other", "其他")
        summary = f"{'群体' if level == 'group' else '重要'}投诉：{label}"
        alert = await alerts.alert(ctx.session, ctx.events, ctx.desk.runtime, level=level, ticket=ticket,
                                   summary=summary, location=ticket.location or "见工单", now=ctx.now)
        ctx.events.emit(events.STAFF_ALERT, level=level, ticket_id=ticket.id, number=ticket.number,
                        recipients=list(alert.recipients), conversation_id=ctx.conversation.id, summary=summary)
        if ctx.conversation.mode == verbs.BOT:
            verbs.hand_over(ctx.session, ctx.events, ctx.conversation,
                            reason="group_complaint" if level == "group" else "serious_complaint",
                            priority=90 if level == "group" else 80, now=ctx.now)
        if level == "group":
            return config.get("group") or (f"近期已有多位业主反映同一问题，我们已将其作为专项处理，由{lead}统一负责，"
                                           f"会{when}给大家答复处理方案和时间。")
        return config.get("serious") or f"您的投诉已升级至客服主管，主管会{when}与您联系，说明核实情况和处理安排。"

    async def open(self, ctx: Ctx, text: str, *, earlier: str | None = None) -> str:
        description = f"{earlier}；{text}" if earlier and earlier != text and len(FILLER.sub("", earlier)) >= 2 else text
        category = ctx.entity_value("complaint_category") or "other"
        if category == "other" and NO_SHOW.search(description):
            category = "no_show"  # DOMAIN.md: "nobody came" is serious
        repair_category = ctx.entity_value("repair_category")
        if repair_category in (None, "other") or not (BROKEN.search(description) or repair_category == "drainage"):
            repair_category = None
        if repair_category is not None and category in ("other", "hygiene"):
            category = "no_show" if DELAY.search(description) else "other"
        cues = self._cues(ctx)
        owner = await ctx.owner()
        project = await ctx.project()
        houses = await ctx.houses()
        repeated = False
        if owner is not None:
            repeated = bool(await ctx.session.scalar(
                sa.select(sa.func.count()).select_from(Ticket).where(
                    Ticket.owner_id == owner.id, Ticket.kind == "complaint",
                    Ticket.created_at >= ctx.now - dt.timedelta(days=30))))
        serious = bool(cues) or repeated or category == "no_show"
        ticket = await open_ticket(
            ctx.session, kind="complaint", project=project, description=description, category=category,
            house=houses[0] if len(houses) == 1 else None, owner_id=ctx.identity.owner_id,
            conversation_id=ctx.conversation.id, contact_phone=owner.phone if owner else None,
            priority="serious" if serious else "normal", now=ctx.now,
        )
        ctx.events.emit(events.TICKET_CREATED, ticket_id=ticket.id, number=ticket.number, kind="complaint",
                        priority=ticket.priority, conversation_id=ctx.conversation.id)
        self._remember(ctx, ticket, cues)
        repair_line = ""
        if repair_category is not None:
            repair_line = await self._linked_repair(ctx, ticket, description, repair_category)
        group = await self._group_incident(ctx, ticket, project, category)
        label = COMPLAINT_LABEL.get(category, "")
        matter = f"{label}问题" if label and category != "other" else "情况"
        reply = f"非常抱歉给您带来了不好的体验，您反映的{matter}我们已经记录（投诉单号 {ticket.number}）。"
        if repair_line:
            reply += repair_line
        if group is not None:
            reply += await self._escalate(ctx, ticket, "group", group[1])
        elif serious:
            reply += await self._escalate(ctx, ticket, "serious")
        else:
            config = await ctx.setting("complaint", {}) or {}
            when = callback_promise(await ctx.setting("staff_hours"), ctx.now, 24)
            reply += config.get("normal") or (f"客服会{when}核实情况并回复您处理结果，处理完成后我们还会回访听取您的意见。"
                                               if "小时" not in when else
                                               "客服会在24小时内核实情况并回复您处理结果，处理完成后我们还会回访听取您的意见。")
        if ctx.bound and self._about_certificate(ctx):
            # A grievance about the certificate (交房一年多了房产证还没办下来): the complaint is recorded
            # and the owner also gets their own house's certificate status in the same answer.
            from actions.flows.certificate import CertificateFlow  # the certificate flow offers complaints

            status = await ctx.router.get(CertificateFlow).status(ctx, complaint_opened=True)
            if status:
                reply += "\n" + status
        if owner is None and ticket.contact_phone is None:
            new_form(ctx.state, "complaint_contact", {"ticket_id": ticket.id}, asking="contact")
            reply += "\n方便留一个联系电话吗？直接回复手机号即可，便于我们跟进。"
        else:
            reply += NEXT
        return reply

    @staticmethod
    def _about_certificate(ctx: Ctx) -> bool:
        parse = ctx.parse
        return (parse is not None and parse.topic == "certificate") or ctx.entity("certificate_topic") is not None

    async def _linked_repair(self, ctx: Ctx, complaint: Ticket, text: str, category: str) -> str:
        """The complaint is also a repair (a leak, a broken gate): open it too, linked both ways."""
        loc = ctx.entity("location")
        location = ctx.turn.inbound.text[loc.start:loc.end] if loc is not None else None
        house_id = None
        if location is None:
            houses = await ctx.houses()
            house_id = houses[0].id if len(houses) == 1 else None
        existing = await followup.related_open(ctx, "repair", category=category, house_id=house_id, location=location)
        if existing is not None:
            repair = existing
            followup.add_followup(ctx, repair, text)
        else:
            house = await ctx.house(house_id)
            repair = await open_ticket(
                ctx.session, kind="repair", project=await ctx.project(), description=text, category=category,
                house=house, location=None if house else (location or "待确认"), owner_id=ctx.identity.owner_id,
                conversation_id=ctx.conversation.id, contact_phone=complaint.contact_phone, now=ctx.now,
            )
            ctx.events.emit(events.TICKET_CREATED, ticket_id=repair.id, number=repair.number, kind="repair",
                            priority=repair.priority, conversation_id=ctx.conversation.id)
        for a, b in ((complaint, repair), (repair, complaint)):
            ctx.session.add(TicketEvent(ticket_id=a.id, kind="linked", actor="bot", at=ctx.now,
                                        data={"ticket_id": b.id, "number": b.number, "kind": b.kind}))
        verb = "已关联" if existing is not None else "同时已为您登记"
        return f"需要维修的部分{verb}报修单 {repair.number}，由工程部跟进。"

    async def _group_incident(
        self, ctx: Ctx, ticket: Ticket, project: Project | None, category: str
    ) -> tuple[Ticket, str] | None:
        """Several owners, same project and matter, within a day → one group incident (群体投诉)."""
        if project is None or category == "other":
            return None
        settings = (project.settings or {}).get("group_complaint") or {}
        threshold = int(settings.get("owners", GROUP_THRESHOLD))
        window = dt.timedelta(hours=float(settings.get("hours", GROUP_WINDOW.total_seconds() / 3600)))
        recent = (await ctx.session.execute(
            sa.select(Ticket).where(
                Ticket.kind == "complaint", Ticket.project_id == project.id, Ticket.category == category,
                Ticket.created_at >= ctx.now - window, Ticket.priority != "group",
            )
        )).scalars().all()
        reporters = {t.owner_id or f"c{t.conversation_id}" for t in recent}
        if len(reporters) < threshold:
            return None
        group = next((t for t in recent if t.group_id is not None), None)
        if group is not None:
            incident = await ctx.session.get_one(Ticket, group.group_id)
        else:
            lead = (await ctx.session.execute(
                sa.select(StaffUser).where(StaffUser.role == "supervisor", StaffUser.active.is_(True))
                .order_by(StaffUser.id).limit(1)
            )).scalar_one_or_none()
            incident = await open_ticket(
                ctx.session, kind="complaint", project=project, category=category, priority="group",
                description=f"群体投诉：{COMPLAINT_LABEL.get(category, category)}（{len(reporters)}位业主在"
                            f"{int(window.total_seconds() // 3600)}小时内反映）",
                now=ctx.now,
            )
            if lead is not None:
                incident.assignee_id = lead.id
            ctx.events.emit(events.TICKET_CREATED, ticket_id=incident.id, number=incident.number,
                            kind="complaint", priority="group")
        for t in recent:
            if t.id != incident.id:
                t.group_id = incident.id
                t.priority = "group"
        lead_name = "客服主管"
        if incident.assignee_id:
            staff = await ctx.session.get(StaffUser, incident.assignee_id)
            lead_name = staff.display_name if staff else lead_name
        return incident, lead_name
