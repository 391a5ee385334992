"""The repair form (报修): what is wrong, where, a contact phone, a visit time, then a summary to confirm.

Slots (DOMAIN.md "Repairs": ask only for what is missing): ``description`` (+ ``category`` from the
NLU), the place (``house_id`` — one of the verified owner's homes — or a public ``location``),
``contact`` and ``visit_time``. Every message in the form is first read for turn-level cues
(actions/flows/understand.py); a slot takes a value only when its validator accepts it, a correction
replaces the value it corrects, and the summary files the ticket only on a plain yes.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from actions.flows import followup
from actions.flows.base import Filled, Flow, Rejected, Slot, Verdict, intent_of, new_form
from actions.flows.binding import ask_house, require_binding
from actions.flows.context import NEXT, Ctx, house_by_room, house_matches, house_text, mask_phone
from actions.flows.labels import REPAIR_LABEL
from actions.flows.slots import contact_phone, visit_time
from actions.flows.understand import (
    STILL_BROKEN,
    THANKS_ONLY,
    is_affirm,
    is_correction,
    is_deny,
    rewrite_correction,
)
from actions.hours import dispatch_promise
from actions.tickets import local_now, open_ticket, warranty_verdict
from bot import events
from bot.store.models import House

BARE = re.compile(r"我要|我想|想|要|帮我|麻烦|你好|您好|请|一下|报修|维修|修理|修|报个修|上门|师傅|家里|东西|坏了|啊|吧|呢|了|的|[，。,.!！?？\s]")
"""Words that carry no problem: "我要报修" / "报修" / "麻烦来修一下" say nothing about what is wrong."""
ANOTHER = re.compile(r"^(还有|另外|对了|顺便|再报|还要报|还有个|还有一个|另报一个|另报)")
PLACE_DETAIL = re.compile(r"\d{1,3}\s*(?:栋|幢|号楼|单元|楼|层)|负一|负二|地下|[东西南北]门|门口|大堂|车库|楼梯|电梯|走廊|过道")


async def _description(ctx: Ctx, slots: dict[str, Any]) -> Verdict:
    text = ctx.text
    if not BARE.sub("", text):
        return Rejected("请具体说说是什么坏了、在哪个位置，")
    if ctx.entity_value("repair_category") not in (None, "other") or len(re.sub(r"[\s，。,.!！?？]", "", text)) >= 4:
        return Filled({"description": text})
    return Rejected("请再具体说说，")


async def _where(ctx: Ctx, slots: dict[str, Any]) -> Verdict:
    values: dict[str, Any] = {}
    house = ctx.entity("house")
    loc = ctx.entity("location")
    text = ctx.turn.inbound.text
    prefix = ""
    if house is not None and not house.extra.get("room") and (slots.get("public") or loc is not None):
        # "8栋1单元" for a corridor light, "9栋2单元楼道": a public place, not a home.
        prefix = text[house.start:house.end] if loc is not None and house.end <= loc.start else ""
        house = None
    if house is not None:
        values["house_parts"] = dict(house.extra)
    if loc is not None:
        words = text[loc.start:loc.end]
        building = loc.extra.get("building")
        if prefix:
            words = prefix + text[house_end(ctx, prefix, loc.start):loc.end]
        elif building and str(building) not in words:
            words = f"{building}栋{words}"
        values["location"] = words.strip()
        if house is None or slots.get("public"):
            values["public"] = True
            if re.search(r"\d", values["location"]):
                values["located"] = True
    if "house_parts" in values and values.get("public"):
        values.pop("house_parts")
    return Filled(values) if values else None


def house_end(ctx: Ctx, prefix: str, loc_start: int) -> int:
    """Where the building–unit words end, so "9栋2单元楼道的" keeps what sits between them and the place."""
    text = ctx.turn.inbound.text
    start = text.find(prefix)
    end = start + len(prefix) if start >= 0 else loc_start
    between = text[end:loc_start]
    return end if len(between) <= 2 else loc_start


DESCRIPTION = Slot("description", "请描述一下哪里出了什么问题，有照片也可以直接发给我。", "主卧窗户关不严", _description)
WHERE = Slot("where", "请问是哪套房屋？请告诉我房号；如果是公共区域，请说明具体位置。",
             "3栋2单元501，或 5栋电梯、地下车库B2", _where)
CONTACT = Slot("contact", "请留一个方便联系的手机号码。", "13800000000", contact_phone)
VISIT = Slot("visit_time", "请问什么时间方便师傅上门？", "明天上午、周六下午3点，或“随时”", visit_time)
SLOTS = (DESCRIPTION, WHERE, CONTACT, VISIT)
CONFIRM = "确认无误请回复“确认”，需要修改直接告诉我改什么（如“上门时间改成周六上午”），不报了回复“取消”。"


class RepairFlow(Flow):
    name = "repair"
    intents = frozenset({"repair"})
    forms = frozenset({"repair"})

    # -- entry ----------------------------------------------------------------------------------

    async def start(self, ctx: Ctx, text: str | None = None) -> list[str]:
        return [await self.begin(ctx, ctx.text if text is None else text)]

    async def begin(self, ctx: Ctx, text: str, *, fill: bool = True) -> str:
        form = ctx.form
        if form is not None and form["name"] == "repair" and text:
            await self._queue(ctx, text)
            return "好的，这个问题我也记下了，等当前这张报修登记完成后马上为您登记。\n" + self.question(form)
        if fill:
            joined = await self._join_existing(ctx, text)
            if joined is not None:
                return joined
        form = new_form(ctx.state, "repair")
        if fill:
            await self.fill(ctx, form, first=True)
        elif text:
            form["slots"]["description"] = text
        return await self.advance(ctx)

    async def resume(self, ctx: Ctx, resume: dict[str, Any]) -> str:
        form = resume.get("form")
        if form and form.get("name") == "repair":
            ctx.state["form"] = form
            if resume.get("house_id"):
                form["slots"]["house_id"] = resume["house_id"]
            return await self.advance(ctx)
        return await self.begin(ctx, resume.get("text", ""), fill=False)

    async def _queue(self, ctx: Ctx, text: str) -> None:
        """Keep a second problem for later, with the slots this message already gives it."""
        pending: dict[str, Any] = {"name": "repair", "slots": {}, "asking": None}
        await self.fill(ctx, pending, first=True)
        pending["slots"]["description"] = text
        pending["slots"].pop("visit_time", None)
        pending["slots"].pop("visit_iso", None)
        ctx.state.setdefault("queued", []).append({"slots": pending["slots"]})

    async def _join_existing(self, ctx: Ctx, text: str) -> str | None:
        """Same matter, open ticket: add to its timeline; "还没修好" on a finished repair: 返修."""
        category = ctx.entity_value("repair_category")
        if category is None or ctx.entity("urgency") is not None:
            return None
        house_id = await self._house_in_text(ctx)
        ticket = await followup.related_open(ctx, "repair", category=category, house_id=house_id,
                                             location=self._location_words(ctx))
        if ticket is not None:
            followup.add_followup(ctx, ticket, text)
            return (f"您说的这个问题已有报修单 {ticket.number} 在处理，我已把您刚才的话补充到这张单子里，"
                    f"负责的同事会看到。\n{followup.status_line(ticket)}\n"
                    "如果是另一个新问题，请说“另报一个”并描述一下。")
        if STILL_BROKEN.search(text):
            done = await followup.finished_repair(ctx, category=category)
            if done is not None:
                await followup.reopen(ctx, done, text)
                who = f"，仍由{done.assignee.display_name}负责" if done.assignee else ""
                return (f"非常抱歉给您添麻烦了。报修单 {done.number} 已为您安排返修{who}，"
                        "我们会尽快联系您确认上门时间。" + NEXT)
        return None

    @staticmethod
    def _location_words(ctx: Ctx) -> str | None:
        loc = ctx.entity("location")
        return ctx.turn.inbound.text[loc.start:loc.end] if loc is not None else None

    @staticmethod
    async def _house_in_text(ctx: Ctx) -> int | None:
        ent = ctx.entity("house")
        by_room = await house_by_room(ctx)
        if by_room is not None:
            return by_room.id
        if ent is None:
            houses = await ctx.houses()
            return houses[0].id if len(houses) == 1 and ctx.entity("location") is None else None
        return next((h.id for h in await ctx.houses() if house_matches(h, ent.extra)), None)

    # -- the form -------------------------------------------------------------------------------

    @staticmethod
    def question(form: dict[str, Any], reason: str = "") -> str:
        asking = form.get("asking")
        if asking == "confirm":
            return CONFIRM
        slot = next((s for s in SLOTS if s.name == asking), None)
        if slot is None:
            return ""
        return slot.reask(reason) if reason else slot.ask()

    async def fill(self, ctx: Ctx, form: dict[str, Any], *, first: bool = False) -> Rejected | None:
        """Take every slot value the message holds; the verdict for the slot being asked, if refused."""
        slots = form["slots"]
        asking = form.get("asking")
        refused: Rejected | None = None
        if (cat := ctx.entity_value("repair_category")) is not None and "category" not in slots:
            slots["category"] = cat
        if (urg := ctx.entity_value("urgency")) is not None:
            slots["urgency"] = urg
        if "house_id" not in slots and ctx.entity("house") is None and ctx.entity("location") is None:
            owned = await house_by_room(ctx)  # "601那套厨房也漏水了": one of the owner's homes by its room
            if owned is not None:
                slots["house_id"] = owned.id
                slots.pop("public", None)
        for slot in (WHERE, CONTACT, VISIT):
            verdict = await slot.validate(ctx, slots)
            if isinstance(verdict, Filled):
                if slot is WHERE and "house_parts" in verdict.values:
                    slots.pop("house_id", None)
                    slots.pop("public", None)
                    slots.pop("location", None)
                slots.update(verdict.values)
            elif isinstance(verdict, Rejected) and (asking == slot.name or self._about(ctx, slot)):
                refused = verdict
        if first:
            if ctx.text and BARE.sub("", ctx.text) and (ctx.entity_value("repair_category") not in (None, "other")
                                                        or len(ctx.text) >= 8):
                slots["description"] = ctx.text
        elif asking == "description" and "description" not in slots:
            verdict = await DESCRIPTION.validate(ctx, slots)
            if isinstance(verdict, Filled):
                slots.update(verdict.values)
                slots.setdefault("category", "other")
            elif isinstance(verdict, Rejected):
                refused = verdict
        return refused

    @staticmethod
    def _about(ctx: Ctx, slot: Slot) -> bool:
        """Whether the message is plainly about ``slot`` (so a refusal of its value must be said)."""
        if slot is VISIT:
            return ctx.entity("time") is not None
        if slot is CONTACT:
            return bool(re.search(r"电话|手机|号码|联系方式|\d{7,}", ctx.text))
        return False

    async def step(self, ctx: Ctx, form: dict[str, Any]) -> list[str] | None:
        text = ctx.text
        slots = form["slots"]
        asking = form.get("asking")
        # "还有，楼道灯也坏了": a second repair, queued behind this one.
        if ANOTHER.search(text) and ctx.entity("repair_category") is not None:
            await self._queue(ctx, ANOTHER.sub("", text).lstrip("，,、 "))
            return ["好的，这个问题我也记下了，当前这张报修登记完成后马上为您登记第二张。\n" + self.question(form)]
        slot_entities = any(ctx.entity(n) is not None for n in ("house", "location", "phone", "time"))
        intent, confident = intent_of(ctx)
        if asking in ("confirm", "change"):
            if is_affirm(ctx):
                return [await self.create(ctx)]
            if is_deny(ctx) and not slot_entities:
                form["asking"] = "change"
                return ["好的，请直接告诉我需要修改的内容（如“上门时间改成周六上午”“是卧室不是客厅”），或回复“取消”。"]
        # A question in the middle of the form: answer it, then pick the form up again.
        if confident and intent in ("inquiry", "certificate") and not slot_entities and asking != "description" \
                and not is_correction(text):
            flow = ctx.router.flow("certificate" if intent == "certificate" else "knowledge")
            answer = "\n".join(await flow.answer(ctx))
            ctx.state["form"] = form
            return [answer, "我们继续刚才的报修登记：" + self.question(form)]
        correction = is_correction(text)
        if confident and intent in ("complaint", "human") and not correction and (not slot_entities or len(text) > 12):
            return None  # the owner moved on: handled outside the form (the form stays)
        category = ctx.entity_value("repair_category")
        if category not in (None, "other") and slots.get("category") not in (None, category) and not correction \
                and ctx.entity("urgency") is None and (len(text) > 6 or not slot_entities):
            return None  # another problem ("空调滴水" while a corridor light is open): queued behind this one
        before = copy.deepcopy(slots)
        refused = await self.fill(ctx, form)
        if refused is None and slots == before and (is_correction(text) or asking == "change"):
            self._correct_description(ctx, slots)
        if slots == before and slots.get("public") and PLACE_DETAIL.search(text) and len(text) <= 20 \
                and ctx.entity_value("repair_category") in (None, "other"):
            # "8栋1单元 12楼" after "楼道灯不亮": a finer location, not a second problem.
            detail = text.strip()
            location = slots.get("location", "")
            for part in re.findall(r"\d{1,3}\s*(?:栋|幢|号楼|单元)", detail):
                if part in location:
                    detail = detail.replace(part, "").strip()
            if detail and detail not in location:
                slots["location"] = f"{location}（{detail}）" if location else detail
            slots["located"] = True
        if refused is not None:
            slot = next((s for s in (VISIT, CONTACT) if self._about(ctx, s)), None) or next(
                (s for s in SLOTS if s.name == asking), VISIT)
            return [slot.reask(refused.reason)]
        if slots == before:
            if asking == "confirm" or asking == "change":
                form["asking"] = "confirm"
                if THANKS_ONLY.match(text):
                    return ["不客气！这张报修还没有提交，信息无误请回复“确认”，我马上为您登记。"]
                return ["抱歉，我没太明白。上面的报修信息是否正确？" + CONFIRM]
            if confident and intent in ("inquiry", "certificate", "complaint", "optout") and asking != "description":
                return None  # something else entirely: handled outside (the form stays)
            if asking in ("visit_time", "contact", "where", "description"):
                slot = next(s for s in SLOTS if s.name == asking)
                return ["抱歉，没能从这句话里得到需要的信息。" + slot.reask("")]
            return None
        if asking in ("confirm", "change") and slots.get("urgency") == before.get("urgency"):
            form["asking"] = None
            reply = await self.advance(ctx)
            return ["好的，已为您修改。\n" + reply]
        return [await self.advance(ctx)]

    def _correct_description(self, ctx: Ctx, slots: dict[str, Any]) -> None:
        """"不对 是卧室的墙 不是客厅": rewrite the description; a new category replaces the old."""
        if "description" not in slots:
            return
        if any(ctx.entity(n) is not None for n in ("phone", "time")) and not re.search(r"是.{1,8}不是|不是.{1,8}是", ctx.text):
            return
        rewritten = rewrite_correction(slots["description"], ctx.text)
        if rewritten is not None:
            slots["description"] = rewritten
        elif ctx.entity("repair_category") is not None or (ctx.entity("house") is None and
                                                            ctx.entity("location") is None and len(ctx.text) >= 6):
            cleaned = re.sub(r"^(?:不对|错了|搞错了|说错了|写错了|不是)[，,。\s]*", "", ctx.text)
            slots["description"] = f"{slots['description']}（更正：{cleaned}）"
        if (cat := ctx.entity_value("repair_category")) is not None:
            slots["category"] = cat

    async def advance(self, ctx: Ctx) -> str:
        form = ctx.state["form"]
        slots = form["slots"]
        if "description" not in slots:
            form["asking"] = "description"
            return self.question(form)
        if slots.get("urgency"):
            emergency = ctx.router.flow("emergency")
            return "\n".join(await emergency.start(ctx))
        if slots.get("public") and not slots.get("located") and not re.search(r"\d", slots.get("location", "")):
            # "楼道灯坏了": which building's corridor? The owner's own, when they have one home there.
            houses = await ctx.houses()
            if len(houses) == 1:
                house = houses[0]
                slots["location"] = f"{house.building.name}栋{house.unit}单元{slots.get('location', '')}"
            else:
                slots["located"] = True
                form["asking"] = "where"
                return f"请问具体是几栋几单元的{slots.get('location') or '位置'}？（例如：8栋1单元12楼）"
        if not slots.get("public"):
            # A repair at home is personal: the house must be the verified owner's.
            if not ctx.bound:
                if "house_parts" not in slots and not slots.get("asked_where"):
                    slots["asked_where"] = True
                    form["asking"] = "where"
                    return self.question(form)
                return require_binding(ctx, "repair", slots["description"])
            houses = await ctx.houses()
            if "house_id" not in slots:
                parts = slots.get("house_parts")
                if parts:
                    match = next((h for h in houses if house_matches(h, parts)), None)
                    if match is None:
                        slots.pop("house_parts", None)
                        form["asking"] = "where"
                        listed = "、".join(house_text(h) for h in houses)
                        return (f"您登记的房屋是{listed}，没有找到您说的房号。"
                                "请确认是哪一套房屋，或说明公共区域的具体位置。")
                    slots["house_id"] = match.id
                elif len(houses) == 1:
                    slots["house_id"] = houses[0].id
                elif houses:
                    # Several homes: ask every time (the last choice may not be this one).
                    ctx.state["resume"] = {"flow": "repair", "text": slots["description"], "form": form}
                    return ask_house(ctx, houses)
        if "contact" not in slots:
            owner = await ctx.owner()
            if owner is not None:
                slots["contact"] = owner.phone
            else:
                form["asking"] = "contact"
                return self.question(form)
        if "visit_time" not in slots and not slots.get("public"):
            form["asking"] = "visit_time"
            return self.question(form)
        form["asking"] = "confirm"
        return await self.summary(ctx, form)

    async def where(self, ctx: Ctx, slots: dict[str, Any]) -> tuple[str, House | None]:
        house = await ctx.house(slots.get("house_id"))
        if house is not None:
            return house_text(house), house
        return slots.get("location") or "公共区域", None

    async def verdict(self, ctx: Ctx, slots: dict[str, Any], house: House | None) -> dict[str, Any]:
        today = local_now(ctx.now).date()
        if house is None:
            return warranty_verdict("public_facility", "", None, {}, today).to_dict()
        settings = house.building.project.settings or {}
        return warranty_verdict(slots.get("category"), slots.get("description", ""), house.handover_date,
                                settings.get("warranty") or {}, today, usage=settings.get("warranty_usage")).to_dict()

    async def summary(self, ctx: Ctx, form: dict[str, Any]) -> str:
        slots = form["slots"]
        where, house = await self.where(ctx, slots)
        verdict = await self.verdict(ctx, slots, house)
        lines = [
            "请确认报修信息：",
            f"地点：{where}",
            f"问题：{slots['description']}",
            f"类别：{REPAIR_LABEL.get(slots.get('category') or 'other', '其他')}",
            f"联系电话：{mask_phone(slots['contact'])}",
        ]
        if slots.get("visit_time"):
            lines.append(f"上门时间：{slots['visit_time']}")
        if slots.get("photos"):
            lines.append(f"照片：{len(slots['photos'])}张")
        lines.append(f"保修说明：{verdict['reason']}")
        lines.append(CONFIRM)
        return "\n".join(lines)

    async def create(self, ctx: Ctx) -> str:
        form = ctx.state["form"]
        slots = form["slots"]
        where, house = await self.where(ctx, slots)
        verdict = await self.verdict(ctx, slots, house)
        project = house.building.project if house else await ctx.project()
        ticket = await open_ticket(
            ctx.session, kind="repair", project=project, description=slots["description"],
            category=slots.get("category") or "other", house=house,
            location=None if house else where, owner_id=ctx.identity.owner_id,
            conversation_id=ctx.conversation.id, contact_phone=slots.get("contact"),
            visit_time=(slots.get("visit_time") or "")[:60] or None, warranty=verdict,
            media=slots.get("photos", []), now=ctx.now,
        )
        ctx.events.emit(events.TICKET_CREATED, ticket_id=ticket.id, number=ticket.number, kind="repair",
                        priority=ticket.priority, conversation_id=ctx.conversation.id)
        ctx.state.pop("form", None)
        promise = dispatch_promise(await ctx.setting("staff_hours"), ctx.now)
        reply = f"已为您登记报修，单号 {ticket.number}。{promise}查询进度可以回复“我的报修”。"
        queued = ctx.state.get("queued") or []
        if queued:
            nxt = queued.pop(0)
            ctx.state["queued"] = queued
            item = nxt if isinstance(nxt, dict) else {"slots": {"description": str(nxt)}}
            new_form(ctx.state, "repair", item.get("slots") or {})
            reply += "\n\n接下来登记您说的另一个问题：" + await self.advance(ctx)
        else:
            reply += NEXT
        return reply

    async def photo(self, ctx: Ctx, form: dict[str, Any], media: dict[str, Any]) -> str:
        form["slots"].setdefault("photos", []).append(media)
        return "照片已收到，会一并交给维修师傅。" + self.question(form)
