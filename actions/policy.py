"""The dialogue policy: what the desk does with each message (DOMAIN.md), as forms with slots.

State lives in ``Conversation.state`` (JSON) and is replaced as a whole at the end of a turn, so the
ORM notices the change:

- ``form``: the active form ``{"name", "slots", "asking", "updated"}``; forms: ``repair``,
  ``bind_phone``, ``bind_code``, ``choose_house``, ``complaint_contact``;
- ``resume``: what to do once binding finished (``{"intent", "text"}``);
- ``queued``: repairs mentioned while another was in progress ("还有，楼道灯也坏了");
- ``choices``: knowledge-base entries offered as numbered choices;
- ``misses``: misunderstandings in a row (two → offer a person).

Every reply ends with what the owner can do next: no dead ends.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import re
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, selectinload

from actions import alerts, binding, optout
from actions.hours import describe_hours, in_staff_hours, next_opening
from actions.knowledge import KnowledgeService
from actions.tickets import KIND_LABEL, cn_date, local_now, open_ticket, warranty_verdict
from bot import conversation as verbs
from bot import events
from bot.policy import HELP, NON_TEXT, WELCOME, OutboundMessage, Turn
from bot.store.models import (
    Building,
    CertificateRecord,
    Conversation,
    House,
    Message,
    Owner,
    OwnerHouse,
    Project,
    StaffUser,
    Ticket,
    utcnow,
)

log = logging.getLogger("yezhu.policy")

FORM_TIMEOUT = dt.timedelta(minutes=30)
ACCOUNT_PROJECT_TTL = 60.0
"""Seconds an account's project (for owners without a bound house) is kept between look-ups."""
CONFIDENT = 0.5
GROUP_THRESHOLD = 3
GROUP_WINDOW = dt.timedelta(hours=24)

CANCEL = re.compile(r"^(算了|取消|不用了|不需要了|不报了|退出|结束|不修了|先不用|cancel)[了吧啊。！!,，\s]*$|算了|取消报修|不用报了")
AFFIRM = re.compile(r"^(确认|对|对的|是|是的|好|好的|没问题|可以|ok|OK|嗯|确定|提交|没错|正确)[的了吧啊。！!,，\s]*$")
ANYTIME = re.compile(r"随时|都可以|都行|什么时候都|任何时间|全天")
MY_TICKETS = re.compile(
    r"(我|我家|我们)(的|报的|报修的|投诉的|反映的|提交的)?(报修|工单|投诉|维修|单子|问题).{0,8}"
    r"(怎么样|进度|到哪|处理了吗|处理得|好了吗|修好|有人|什么时候|结果|咋样|如何)|查(一下|询)?(我的)?(报修|工单)|我的工单"
)
ANOTHER = re.compile(r"^(还有|另外|对了|顺便|再报|还要报)")
PERSONAL_CERT = re.compile(r"我的|我家|我们家|本人|办好了没|办好了吗|好了没|好了吗|到了吗|进度|能领|可以领|什么时候能拿")
PHONE = re.compile(r"(?<!\d)(1[3-9]\d{9})(?!\d)")
CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")

SAFETY = {
    "gas_leak": "请立即关闭燃气总阀，打开门窗通风；不要开关任何电器、不要使用明火，也不要在室内打电话，请先撤离到室外。",
    "flooding": "请先关闭入户水阀总闸，断开可能被水浸到的电源，把贵重物品移到高处，注意防滑。",
    "burning": "请立即断开电源总闸，不要用水扑救电器起火；如有明火或浓烟，请马上拨打119并撤离。",
    "sparks": "请立即断开电源总闸，远离冒火花的位置，不要触碰电线或开关。",
    "trapped": "请保持冷静，不要强行扒门或攀爬，按下电梯内的紧急呼叫按钮，救援人员正在赶来。",
    "falling": "请立即远离坠物区域，不要在下方停留，并提醒家人和邻居注意安全。",
}
URGENCY_LABEL = {"gas_leak": "燃气泄漏", "flooding": "漏水/水浸", "burning": "焦糊味/起火", "sparks": "电线打火",
                 "trapped": "有人被困电梯", "falling": "高空坠物"}
REPAIR_LABEL = {
    "plumbing": "给排水/漏水", "drainage": "下水堵塞", "electrical": "电路", "gas": "燃气", "door_window": "门窗锁具",
    "wall_floor": "墙地面/瓷砖/裂缝", "hvac": "暖通空调", "elevator": "电梯", "intercom": "门禁对讲",
    "public_facility": "公共设施", "fire": "消防设施", "other": "其他",
}
COMPLAINT_LABEL = {
    "noise": "噪音", "staff_attitude": "服务态度", "no_show": "无人处理", "fees": "收费", "parking": "停车",
    "hygiene": "环境卫生", "security": "安全管理", "sales_promise": "销售承诺", "construction_quality": "工程质量",
    "other": "其他",
}
STATUS_LABEL = {
    "new": ("待派工", "我们正在为您安排负责的工程师。"),
    "dispatched": ("已派工", "工程师会按约定时间上门。"),
    "in_progress": ("处理中", "工程师正在处理。"),
    "done": ("已完工", "请您检查维修效果，2天内回复“验收通过”或“还没修好”。"),
    "awaiting_acceptance": ("待验收", "请您检查维修效果，2天内回复“验收通过”或“还没修好”。"),
    "closed": ("已完结", ""),
    "reopened": ("返修中", "我们会尽快安排工程师再次上门。"),
}
NEXT = "还有其他需要，直接留言告诉我即可。"


def mask_phone(phone: str | None) -> str:
    return f"{phone[:3]}****{phone[-4:]}" if phone and len(phone) == 11 else (phone or "")


def house_text(house: House) -> str:
    return f"{house.building.name}栋{house.unit}单元{house.room}"


class DialoguePolicy:
    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        self.knowledge: KnowledgeService = runtime.knowledge
        self.notifier = runtime.notifier
        self._account_projects: dict[str, tuple[str | None, float]] = {}

    # --- entry point ---------------------------------------------------------------------------

    async def respond(self, turn: Turn) -> list[OutboundMessage]:
        state = copy.deepcopy(turn.conversation.state or {})
        turn.extra["state"] = state
        replies: list[str] = []
        try:
            replies = await self._respond(turn, state)
        finally:
            form = state.get("form")
            if form:
                form["updated"] = turn.now.isoformat()
            turn.conversation.state = state  # replaced whole: the JSON column is not mutation-tracked
        # One message: WeChat's passive reply carries exactly one; more would go the slow API path.
        text = "\n\n".join(r for r in replies if r)
        if text and not self._can_reply(turn):
            return self._hold_for_staff(turn, text)
        return [OutboundMessage(text)] if text else []

    def _can_reply(self, turn: Turn) -> bool:
        """A templates-only channel (SMS) can carry the bot's words only through an approved reply template."""
        caps = self.rt.channels.capabilities(turn.identity.channel)
        return caps is None or not caps.templates_only or self.notifier.has_template("reply")

    def _hold_for_staff(self, turn: Turn, text: str) -> list[OutboundMessage]:
        """No approved reply template: the conversation goes to staff (who phone or use a template) and the
        bot's draft is kept as an internal note for them; nothing is sent."""
        if turn.conversation.mode == verbs.BOT:
            verbs.hand_over(turn.session, turn.events, turn.conversation, reason="sms_no_reply_template",
                            now=turn.now)
        turn.session.add(Message(
            conversation_id=turn.conversation.id, direction="note", channel=turn.identity.channel,
            account=turn.identity.account, kind="text", author="bot", at=turn.now,
            text="短信渠道没有已审核通过的回复模板，机器人未回复，已转人工。机器人拟回复：\n" + text,
        ))
        return []

    async def _respond(self, turn: Turn, state: dict[str, Any]) -> list[str]:
        msg = turn.inbound
        if msg.kind == "event":
            return await self._event(turn, state)
        if msg.kind == "image":
            return self._image(turn, state)
        if msg.kind == "location" and state.get("form", {}).get("name") == "repair":
            state["form"]["slots"].setdefault("location", msg.text or "已发送定位")
            return [await self._advance_repair(turn, state)]
        if msg.kind not in ("text", "voice", "link", "location") or not msg.text.strip():
            return [NON_TEXT if msg.kind != "unknown" else "抱歉，暂时无法识别这类消息。" + HELP]

        prefix: list[str] = []
        form = state.get("form")
        if form and self._expired(form, turn.now):
            state.pop("form", None)
            state.pop("resume", None)
            prefix.append("您之前未完成的登记已超时取消，如仍需办理请重新告诉我。")
        return prefix + await self._text(turn, state)

    # --- events and media ----------------------------------------------------------------------

    async def _event(self, turn: Turn, state: dict[str, Any]) -> list[str]:
        event = turn.inbound.event
        if event in ("subscribe", "scan"):
            return [WELCOME]
        if event == "click":
            key = (turn.inbound.text or "").upper()
            if key in ("REPAIR", "BAOXIU"):
                return [await self._start_repair(turn, state, "")]
            if key in ("MY_TICKETS", "TICKETS"):
                return [await self._my_tickets(turn, state, "")]
            if key in ("CERTIFICATE", "BANZHENG"):
                return [await self._certificate(turn, state, "我的房产证办好了吗", personal=True)]
            if key in ("HUMAN", "KEFU"):
                return [await self._human(turn, state, reason="menu")]
            return [HELP]
        return []

    def _image(self, turn: Turn, state: dict[str, Any]) -> list[str]:
        form = state.get("form")
        media = dict(turn.inbound.media)
        if form and form["name"] == "repair":
            form["slots"].setdefault("photos", []).append(media)
            return ["照片已收到，会一并交给维修师傅。" + (self._repair_question(form) or "")]
        return ["照片已收到。请用文字简单描述一下问题，例如“卫生间漏水”，我来为您登记。"]

    # --- text ----------------------------------------------------------------------------------

    async def _text(self, turn: Turn, state: dict[str, Any]) -> list[str]:
        text = turn.inbound.text.strip()
        parse = turn.parse
        intent = parse.intent if parse is not None else "other"
        confident = parse is not None and parse.confidence >= CONFIDENT
        form = state.get("form")

        # Emergencies first, whatever else is going on (DOMAIN.md: at once, day or night).
        if parse is not None and parse.entity("urgency") is not None and intent in ("repair", "complaint", "other", "inquiry"):
            return [await self._emergency(turn, state, text)]

        # 退订 / 订阅 said as the whole message (any channel; bare letters such as T or R only count on
        # SMS, where the templates tell owners to reply them): honoured before anything else.
        said = optout.classify(text)
        caps = self.rt.channels.capabilities(turn.identity.channel)
        if said is not None and (len(optout.normalise(text)) > 2 or (caps is not None and caps.templates_only)):
            return [await self._optout(turn)]

        if form and CANCEL.search(text) and len(text) <= 12:
            state.pop("form", None)
            state.pop("resume", None)
            state.pop("queued", None)
            return ["好的，已为您取消本次登记。" + NEXT]

        if form:
            handled = await self._in_form(turn, state, form, text, intent, confident)
            if handled is not None:
                state["misses"] = 0
                return handled

        if state.get("choices"):
            picked = await self._pick_choice(state, text)
            if picked:
                state["misses"] = 0
                return [picked]

        if MY_TICKETS.search(text):
            state["misses"] = 0
            return [await self._my_tickets(turn, state, text)]

        if parse is not None and parse.entity("repair_category") is not None and intent in ("other", "greet", "affirm"):
            intent, confident = "repair", True  # "楼道灯坏了。" with a weak intent: the category says repair
        if not confident and intent not in ("greet", "thanks"):
            return await self._misunderstood(turn, state, text)
        state["misses"] = 0
        if intent == "repair":
            return [await self._start_repair(turn, state, text)]
        if intent == "complaint":
            return [await self._complaint(turn, state, text)]
        if intent == "certificate":
            return [await self._certificate(turn, state, text)]
        if intent == "inquiry":
            return [await self._inquiry(turn, state, text)]
        if intent == "human":
            return [await self._human(turn, state, reason="owner_asked")]
        if intent == "greet":
            return ["您好！我是业主服务助手，请问有什么可以帮您？可以直接说报修、投诉、咨询或办证的事情。"]
        if intent == "thanks":
            return ["不客气，很高兴为您服务！" + NEXT]
        if intent == "optout":
            return [await self._optout(turn)]
        if intent in ("affirm", "deny"):
            return ["好的。请问还有什么可以帮您？可以直接说报修、投诉、咨询或办证的事情。"]
        return await self._misunderstood(turn, state, text)

    async def _misunderstood(self, turn: Turn, state: dict[str, Any], text: str) -> list[str]:
        # An unclear message may still be a question the knowledge base knows.
        answer = await self.knowledge.answer(text, await self._project_code(turn))
        if answer.decision == "answered":
            state["misses"] = 0
            return [answer.render() + "\n" + NEXT]
        state["misses"] = state.get("misses", 0) + 1
        if state["misses"] >= 2:
            state["misses"] = 0
            return ["抱歉，我还是没能理解您的意思。需要为您转接人工客服吗？回复“人工”即可；也可以换个说法再告诉我。"]
        return ["抱歉，我没太明白您的意思。" + HELP]

    # --- forms ---------------------------------------------------------------------------------

    @staticmethod
    def _expired(form: dict[str, Any], now: dt.datetime) -> bool:
        updated = form.get("updated")
        return bool(updated) and now - dt.datetime.fromisoformat(updated) > FORM_TIMEOUT

    async def _in_form(
        self, turn: Turn, state: dict[str, Any], form: dict[str, Any], text: str, intent: str, confident: bool
    ) -> list[str] | None:
        name = form["name"]
        if name == "bind_phone":
            return await self._bind_phone(turn, state, text)
        if name == "bind_code":
            return await self._bind_code(turn, state, text)
        if name == "choose_house":
            return await self._choose_house(turn, state, text)
        if name == "complaint_contact":
            phone = self._phone(turn)
            if phone:
                ticket = await turn.session.get(Ticket, form["slots"]["ticket_id"])
                if ticket is not None:
                    ticket.contact_phone = phone
                state.pop("form", None)
                return [f"好的，已记录联系电话{mask_phone(phone)}，主管会通过这个号码与您联系。" + NEXT]
            state.pop("form", None)
            return None
        if name == "repair":
            return await self._repair_turn(turn, state, form, text, intent, confident)
        return None

    # --- binding -------------------------------------------------------------------------------

    async def _require_binding(self, turn: Turn, state: dict[str, Any], intent: str, text: str) -> str:
        state["resume"] = {"intent": intent, "text": text, "form": state.get("form")}
        state["form"] = {"name": "bind_phone", "slots": {}, "asking": "phone"}
        return ("为保护您的个人信息，查询或办理与房屋相关的业务需要先验证业主身份。"
                "请回复您购房时登记的手机号码，我们会发送6位验证码。")

    def _phone(self, turn: Turn) -> str | None:
        if turn.parse is not None:
            ent = turn.parse.entity("phone")
            if ent is not None and PHONE.fullmatch(ent.value):
                return ent.value
        m = PHONE.search(turn.inbound.text.replace(" ", "").replace("-", ""))
        return m.group(1) if m else None

    async def _bind_phone(self, turn: Turn, state: dict[str, Any], text: str) -> list[str]:
        phone = self._phone(turn)
        if phone is None:
            return ["请回复11位手机号码（购房时登记的号码），例如 13800000000；不想验证了可以回复“取消”。"]
        result = await binding.send_code(turn.session, self.notifier, turn.events, turn.identity, phone)
        state["form"] = {"name": "bind_code", "slots": {"phone": phone}, "asking": "code"}
        if result.throttled:
            return ["验证码刚刚已发送，请查看短信并回复6位验证码（1分钟后可重新获取）。"]
        # The same words whether or not the number is registered: no one learns who owns a home here.
        return [f"如该号码{mask_phone(phone)}已在物业登记，验证码已发送，请在10分钟内回复短信中的6位验证码。"
                "没有收到可回复“重新获取”。"]

    async def _bind_code(self, turn: Turn, state: dict[str, Any], text: str) -> list[str]:
        if "重新" in text or "没收到" in text or "再发" in text:
            phone = state["form"]["slots"]["phone"]
            result = await binding.send_code(turn.session, self.notifier, turn.events, turn.identity, phone)
            return ["验证码刚刚已发送，请稍候1分钟再试。" if result.throttled else "验证码已重新发送，请查收短信。"]
        new_phone = self._phone(turn)
        if new_phone:
            return await self._bind_phone(turn, state, text)
        m = CODE.search(text)
        if m is None:
            return ["请回复短信中的6位数字验证码；如需更换手机号请直接发送新号码，或回复“取消”。"]
        result = await binding.check_code(turn.session, turn.identity, m.group(1))
        if not result.ok:
            if result.reason == "wrong":
                return [f"验证码不正确，请核对后重新输入（还可尝试{result.attempts_left}次）。"]
            state.pop("form", None)
            state.pop("resume", None)
            if result.reason == "expired":
                return ["验证码已过期，请重新发送手机号获取新的验证码。"]
            if result.reason == "locked":
                return ["验证码错误次数过多，为保护您的信息已暂停验证。请稍后重新发送手机号，或回复“人工”由客服协助。"]
            return ["未能完成验证，请重新发送手机号码。"]
        owner = result.owner
        assert owner is not None
        turn.conversation.owner_id = owner.id
        turn.owner = owner
        turn.extra.pop("houses", None)
        houses = await self._houses(turn)
        lead = f"验证成功，{owner.name}您好！已为您绑定业主身份。"
        state.pop("form", None)
        if len(houses) > 1:
            return [lead + "\n" + self._ask_house(state, houses)]
        if houses:
            state["house_id"] = houses[0].id
        return [lead + "\n" + await self._resume(turn, state)]

    def _ask_house(self, state: dict[str, Any], houses: list[House]) -> str:
        state["form"] = {"name": "choose_house", "slots": {"options": [h.id for h in houses]}, "asking": "house"}
        lines = "\n".join(f"{n}. {house_text(h)}" for n, h in enumerate(houses, 1))
        return f"您名下有{len(houses)}套房屋，请问是哪一套？回复序号即可：\n{lines}"

    async def _choose_house(self, turn: Turn, state: dict[str, Any], text: str) -> list[str]:
        options: list[int] = state["form"]["slots"]["options"]
        houses = {h.id: h for h in await self._houses(turn)}
        chosen: int | None = None
        m = re.search(r"[1-9]", text)
        if m and len(text) <= 4 and int(m.group()) <= len(options):
            chosen = options[int(m.group()) - 1]
        elif turn.parse is not None and (ent := turn.parse.entity("house")) is not None:
            chosen = next((hid for hid in options if self._house_matches(houses[hid], ent.extra)), None)
        if chosen is None:
            return ["请回复房屋前面的序号（例如 1）。\n" + self._ask_house(state, [houses[i] for i in options])]
        state["house_id"] = chosen
        state.pop("form", None)
        return [f"好的，{house_text(houses[chosen])}。\n" + await self._resume(turn, state)]

    async def _resume(self, turn: Turn, state: dict[str, Any]) -> str:
        resume = state.pop("resume", None)
        if not resume:
            return "请问有什么可以帮您？"
        if resume.get("form"):
            state["form"] = resume["form"]
            if state["form"]["name"] == "repair":
                return await self._advance_repair(turn, state)
        intent, text = resume["intent"], resume["text"]
        if intent == "certificate":
            return await self._certificate(turn, state, text, personal=True)
        if intent == "my_tickets":
            return await self._my_tickets(turn, state, text)
        if intent == "repair":
            return await self._start_repair(turn, state, text)
        return "请问有什么可以帮您？"

    # --- owner, houses, project ----------------------------------------------------------------

    async def _houses(self, turn: Turn) -> list[House]:
        if "houses" in turn.extra:
            return turn.extra["houses"]
        owner_id = turn.identity.owner_id
        houses: list[House] = []
        if owner_id is not None:
            houses = list(
                (
                    await turn.session.execute(
                        sa.select(House)
                        .join(OwnerHouse, OwnerHouse.house_id == House.id)
                        .where(OwnerHouse.owner_id == owner_id)
                        .options(joinedload(House.building).joinedload(Building.project))
                        .order_by(House.id)
                    )
                ).scalars()
            )
        turn.extra["houses"] = houses
        return houses

    async def _owner(self, turn: Turn) -> Owner | None:
        if turn.identity.owner_id is None:
            return None
        if turn.owner is None or turn.owner.id != turn.identity.owner_id:
            turn.owner = await turn.session.get(Owner, turn.identity.owner_id)
        return turn.owner

    async def _project(self, turn: Turn) -> Project | None:
        if "project" in turn.extra:
            return turn.extra["project"]
        project: Project | None = None
        houses = await self._houses(turn)
        chosen = turn.extra["state"].get("house_id")
        house = next((h for h in houses if h.id == chosen), houses[0] if houses else None)
        if house is not None:
            project = house.building.project
        else:
            code = getattr(self.rt.settings.wechat_accounts.get(turn.identity.account), "project", None)
            q = sa.select(Project).order_by(Project.id).limit(1)
            if code:
                q = sa.select(Project).where(Project.code == code)
            project = (await turn.session.execute(q)).scalar_one_or_none()
        turn.extra["project"] = project
        return project

    async def _project_code(self, turn: Turn) -> str | None:
        # An owner who has not bound a house gets the account's project. That is asked on most of their
        # messages (knowledge-base answers), so it is kept for a minute, not queried each time.
        account = turn.identity.account if "project" not in turn.extra and turn.identity.owner_id is None else None
        cached = self._account_projects.get(account) if account is not None else None
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        project = await self._project(turn)
        code = project.code if project else None
        if account is not None:
            self._account_projects[account] = (code, time.monotonic() + ACCOUNT_PROJECT_TTL)
        return code

    async def _setting(self, turn: Turn, key: str, default: Any = None) -> Any:
        project = await self._project(turn)
        return ((project.settings if project else None) or {}).get(key, default)

    @staticmethod
    def _house_matches(house: House, parts: dict[str, Any]) -> bool:
        return (
            str(parts.get("building", "")) == house.building.name
            and (not parts.get("unit") or str(parts["unit"]) == house.unit)
            and str(parts.get("room", "")) == house.room
        )

    # --- repair --------------------------------------------------------------------------------

    async def _start_repair(self, turn: Turn, state: dict[str, Any], text: str) -> str:
        if state.get("form", {}).get("name") == "repair" and text:
            # Another repair while one is open: finish the first, then this one.
            state.setdefault("queued", []).append(text)
            return "好的，这个问题我也记下了，等当前这张报修登记完成后马上为您登记。\n" + (
                self._repair_question(state["form"]) or ""
            )
        form = {"name": "repair", "slots": {}, "asking": None}
        state["form"] = form
        self._fill_repair(turn, form, text, first=True)
        return await self._advance_repair(turn, state)

    def _fill_repair(self, turn: Turn, form: dict[str, Any], text: str, *, first: bool = False) -> None:
        slots = form["slots"]
        parse = turn.parse
        if parse is None:
            return
        if (cat := parse.entity("repair_category")) is not None and "category" not in slots:
            slots["category"] = cat.value
        if (loc := parse.entity("location")) is not None:
            slots["location"] = text[loc.start:loc.end] if not loc.extra.get("building") else (
                f"{loc.extra['building']}栋{text[loc.start:loc.end]}"
                if str(loc.extra["building"]) not in text[loc.start:loc.end] else text[loc.start:loc.end]
            )
            slots["public"] = True
        if (house := parse.entity("house")) is not None:
            slots["house_parts"] = dict(house.extra)
            slots.pop("public", None)
        if (phone := parse.entity("phone")) is not None and PHONE.fullmatch(phone.value):
            slots["contact"] = phone.value
        if (time_ent := parse.entity("time")) is not None:
            slots["visit_time"] = text[time_ent.start:time_ent.end]
            slots["visit_iso"] = time_ent.value
        elif ANYTIME.search(text):
            slots["visit_time"] = "随时可上门"
        if (urg := parse.entity("urgency")) is not None:
            slots["urgency"] = urg.value
        substantive = parse.entity("repair_category") is not None or len(text) >= 8
        if first and text and substantive:
            slots["description"] = text
        elif not first and "description" not in slots and form.get("asking") == "description" and text:
            slots["description"] = text
            if "category" not in slots:
                slots["category"] = "other"

    def _repair_question(self, form: dict[str, Any]) -> str | None:
        asking = form.get("asking")
        return {
            "description": "请描述一下哪里出了什么问题（例如“主卧窗户关不严”），有照片也可以直接发给我。",
            "where": "请问是哪里需要维修？请告诉我房号（如3栋2单元501）；如果是公共区域，请说明具体位置（如5栋电梯、地下车库B2）。",
            "house": None,
            "contact": "请留一个方便联系的手机号码。",
            "visit_time": "请问什么时间方便师傅上门？（例如：明天上午、周六下午，或“随时”）",
            "confirm": "确认请回复“确认”，需要修改请直接说明，不报了请回复“取消”。",
        }.get(asking or "")

    async def _repair_turn(
        self, turn: Turn, state: dict[str, Any], form: dict[str, Any], text: str, intent: str, confident: bool
    ) -> list[str] | None:
        parse = turn.parse
        # "还有，楼道灯也坏了": a second repair, queued behind this one.
        if ANOTHER.search(text) and parse is not None and parse.entity("repair_category") is not None:
            state.setdefault("queued", []).append(re.sub(ANOTHER, "", text).lstrip("，,、 "))
            q = self._repair_question(form) or ""
            return ["好的，这个问题我也记下了，当前这张报修登记完成后马上为您登记第二张。\n" + q]
        slot_entities = parse is not None and any(
            parse.entity(n) is not None for n in ("house", "location", "phone", "time")
        )
        asking = form.get("asking")
        # A question in the middle of the form: answer it, then pick the form up again.
        if confident and intent in ("inquiry", "certificate") and not slot_entities and asking != "description":
            answer = (
                await self._certificate(turn, state, text) if intent == "certificate"
                else await self._inquiry(turn, state, text, inside_form=True)
            )
            state["form"] = form
            return [answer, "我们继续刚才的报修登记：" + (self._repair_question(form) or "")]
        if confident and intent in ("complaint", "human") and not slot_entities:
            return None  # the owner moved on: handle it outside the form (the form stays)
        if asking == "confirm":
            if AFFIRM.match(text) or (parse is not None and parse.intent == "affirm" and len(text) <= 6):
                return [await self._create_repair(turn, state, form)]
            if parse is not None and parse.intent == "deny" and not slot_entities and len(text) <= 6:
                form["asking"] = None
                return ["好的，请直接告诉我需要修改的内容（如联系电话、上门时间），或回复“取消”。"]
        before = copy.deepcopy(form["slots"])
        self._fill_repair(turn, form, text)
        if asking == "visit_time" and "visit_time" not in form["slots"] and text and len(text) <= 20:
            form["slots"]["visit_time"] = text  # "下班后" / "晚上七点以后": take it as the owner said it
        if asking == "contact" and "contact" not in form["slots"]:
            return ["这个号码好像不完整，请回复11位手机号码。"]
        if form["slots"] == before and asking not in ("description",):
            return None  # nothing for this form in the message: treat it as a new request
        return [await self._advance_repair(turn, state)]

    async def _advance_repair(self, turn: Turn, state: dict[str, Any]) -> str:
        form = state["form"]
        slots = form["slots"]
        if "description" not in slots:
            form["asking"] = "description"
            return self._repair_question(form) or ""
        if slots.get("urgency"):
            return await self._emergency(turn, state, slots["description"])
        if not slots.get("public"):
            # A repair at home is personal: the house must be the verified owner's.
            if turn.identity.owner_id is None:
                if "house_parts" in slots or "location" not in slots:
                    if "house_parts" not in slots and not slots.get("asked_where"):
                        slots["asked_where"] = True
                        form["asking"] = "where"
                        return self._repair_question(form) or ""
                    return await self._require_binding(turn, state, "repair", slots["description"])
            houses = await self._houses(turn)
            if "house_id" not in slots:
                parts = slots.get("house_parts")
                if parts:
                    match = next((h for h in houses if self._house_matches(h, parts)), None)
                    if match is None:
                        slots.pop("house_parts", None)
                        form["asking"] = "where"
                        listed = "、".join(house_text(h) for h in houses)
                        return f"您登记的房屋是{listed}，没有找到您说的房号。请确认是哪一套房屋，或说明公共区域的具体位置。"
                    slots["house_id"] = match.id
                elif len(houses) == 1:
                    slots["house_id"] = houses[0].id
                elif state.get("house_id") in [h.id for h in houses]:
                    slots["house_id"] = state["house_id"]
                elif houses:
                    state["resume"] = {"intent": "repair", "text": slots["description"], "form": form}
                    return self._ask_house(state, houses)
        if "contact" not in slots:
            owner = await self._owner(turn)
            if owner is not None:
                slots["contact"] = owner.phone
            else:
                form["asking"] = "contact"
                return self._repair_question(form) or ""
        if "visit_time" not in slots:
            form["asking"] = "visit_time"
            return self._repair_question(form) or ""
        form["asking"] = "confirm"
        return await self._repair_summary(turn, form)

    async def _repair_where(self, turn: Turn, slots: dict[str, Any]) -> tuple[str, House | None]:
        if slots.get("house_id"):
            house = next((h for h in await self._houses(turn) if h.id == slots["house_id"]), None)
            if house is not None:
                return house_text(house), house
        return slots.get("location") or "公共区域", None

    async def _verdict(self, turn: Turn, slots: dict[str, Any], house: House | None) -> dict[str, Any]:
        if house is None:
            return warranty_verdict("public_facility", "", None, {}, local_now(turn.now).date()).to_dict()
        table = (house.building.project.settings or {}).get("warranty") or {}
        return warranty_verdict(
            slots.get("category"), slots.get("description", ""), house.handover_date, table, local_now(turn.now).date()
        ).to_dict()

    async def _repair_summary(self, turn: Turn, form: dict[str, Any]) -> str:
        slots = form["slots"]
        where, house = await self._repair_where(turn, slots)
        verdict = await self._verdict(turn, slots, house)
        photos = len(slots.get("photos", []))
        lines = [
            "请确认报修信息：",
            f"地点：{where}",
            f"问题：{slots['description']}",
            f"类别：{REPAIR_LABEL.get(slots.get('category') or 'other', '其他')}",
            f"联系电话：{mask_phone(slots['contact'])}",
            f"上门时间：{slots['visit_time']}",
        ]
        if photos:
            lines.append(f"照片：{photos}张")
        lines.append(f"保修说明：{verdict['reason']}")
        lines.append(self._repair_question(form) or "")
        return "\n".join(lines)

    async def _create_repair(self, turn: Turn, state: dict[str, Any], form: dict[str, Any]) -> str:
        slots = form["slots"]
        where, house = await self._repair_where(turn, slots)
        verdict = await self._verdict(turn, slots, house)
        project = house.building.project if house else await self._project(turn)
        ticket = await open_ticket(
            turn.session, kind="repair", project=project, description=slots["description"],
            category=slots.get("category") or "other", house=house,
            location=None if house else where, owner_id=turn.identity.owner_id,
            conversation_id=turn.conversation.id, contact_phone=slots.get("contact"),
            visit_time=slots.get("visit_time"), warranty=verdict, media=slots.get("photos", []), now=turn.now,
        )
        turn.events.emit(events.TICKET_CREATED, ticket_id=ticket.id, number=ticket.number, kind="repair",
                         priority=ticket.priority, conversation_id=turn.conversation.id)
        state.pop("form", None)
        hours = ticket_hours(ticket, turn.now)
        reply = (f"已为您登记报修，单号 {ticket.number}。我们会在{hours}内安排负责的工程师与您联系并按约定时间上门，"
                 "派工后会在这里通知您工程师姓名。查询进度可以回复“我的报修”。")
        queued = state.get("queued") or []
        if queued:
            nxt = queued.pop(0)
            state["queued"] = queued
            reply += "\n\n接下来登记您说的另一个问题：" + await self._start_repair(turn, state, nxt)
        else:
            reply += NEXT
        return reply

    # --- emergencies ---------------------------------------------------------------------------

    async def _emergency(self, turn: Turn, state: dict[str, Any], text: str) -> str:
        parse = turn.parse
        kind = (parse.entity("urgency").value if parse is not None and parse.entity("urgency") else None) or \
            state.get("form", {}).get("slots", {}).get("urgency") or "flooding"
        duty = await self._setting(turn, "duty_phone", "物业值班电话")
        houses = await self._houses(turn)
        slots = state.get("form", {}).get("slots", {}) if state.get("form", {}).get("name") == "repair" else {}
        house = next((h for h in houses if h.id == slots.get("house_id")), houses[0] if len(houses) == 1 else None)
        location = None
        if parse is not None and (loc := parse.entity("location")) is not None:
            location, house = text[loc.start:loc.end], None
        category = (parse.entity("repair_category").value if parse is not None and parse.entity("repair_category")
                    else {"gas_leak": "gas", "trapped": "elevator", "flooding": "plumbing", "burning": "electrical",
                          "sparks": "electrical"}.get(kind, "other"))
        project = house.building.project if house else await self._project(turn)
        owner = await self._owner(turn)
        ticket = await open_ticket(
            turn.session, kind="repair", project=project, description=text, category=category, house=house,
            location=location or (None if house else "待确认（紧急）"), owner_id=turn.identity.owner_id,
            conversation_id=turn.conversation.id, contact_phone=owner.phone if owner else None,
            priority="urgent", now=turn.now,
        )
        turn.events.emit(events.TICKET_CREATED, ticket_id=ticket.id, number=ticket.number, kind="repair",
                         priority="urgent", conversation_id=turn.conversation.id)
        turn.events.emit(events.EMERGENCY_RAISED, ticket_id=ticket.id, number=ticket.number, urgency=kind,
                         conversation_id=turn.conversation.id, text=text)
        summary = f"紧急：{URGENCY_LABEL.get(kind, kind)}"
        where_text = house_text(house) if house else (location or "位置待确认")
        # Day or night: the people on duty get an SMS (and the WeCom group a message), not only a badge.
        staff_alert = await alerts.alert(turn.session, turn.events, self.rt, level="emergency", ticket=ticket,
                                         summary=summary, location=where_text, now=turn.now)
        turn.events.emit(events.STAFF_ALERT, level="emergency", ticket_id=ticket.id, number=ticket.number,
                         recipients=staff_alert.recipients, conversation_id=turn.conversation.id,
                         summary=summary)
        state.pop("form", None)
        if turn.conversation.mode == verbs.BOT:
            verbs.hand_over(turn.session, turn.events, turn.conversation, reason="emergency", priority=100,
                            now=turn.now)
        advice = SAFETY.get(kind, "请先确保人身安全，远离危险区域。")
        where = "" if house or location else "请马上告诉我具体位置（楼栋单元房号或公共区域位置）。"
        return (f"【紧急】{advice}\n我们已通知值班人员立即处理（紧急工单 {ticket.number}），"
                f"请保持电话畅通。24小时值班电话：{duty}，情况危急请直接拨打；有人员受伤或明火请立即拨打119/120。{where}")

    # --- complaints ----------------------------------------------------------------------------

    async def _complaint(self, turn: Turn, state: dict[str, Any], text: str) -> str:
        parse = turn.parse
        category = (parse.entity("complaint_category").value
                    if parse is not None and parse.entity("complaint_category") else "other")
        cues = [e.value for e in parse.entities_of("severity")] if parse is not None else []
        owner = await self._owner(turn)
        project = await self._project(turn)
        houses = await self._houses(turn)
        since = turn.now - dt.timedelta(days=30)
        repeated = False
        if owner is not None:
            repeated = bool(await turn.session.scalar(
                sa.select(sa.func.count()).select_from(Ticket).where(
                    Ticket.owner_id == owner.id, Ticket.kind == "complaint", Ticket.created_at >= since)
            ))
        serious = bool(cues) or repeated or category == "no_show"
        ticket = await open_ticket(
            turn.session, kind="complaint", project=project, description=text, category=category,
            house=houses[0] if len(houses) == 1 else None, owner_id=turn.identity.owner_id,
            conversation_id=turn.conversation.id, contact_phone=owner.phone if owner else None,
            priority="serious" if serious else "normal", now=turn.now,
        )
        group = await self._group_incident(turn, ticket, project, category)
        turn.events.emit(events.TICKET_CREATED, ticket_id=ticket.id, number=ticket.number, kind="complaint",
                         priority=ticket.priority, conversation_id=turn.conversation.id)
        config = await self._setting(turn, "complaint", {}) or {}
        label = COMPLAINT_LABEL.get(category, "")
        ack = f"非常抱歉给您带来了不好的体验，您反映的{label + '问题' if label and category != 'other' else '情况'}我们已经记录（投诉单号 {ticket.number}）。"
        if group is not None:
            lead = group[1]
            next_step = config.get("group") or (
                f"近期已有多位业主反映同一问题，我们已将其作为专项处理，由{lead}统一负责，"
                "4小时内会给大家答复处理方案和时间。")
            priority = 90
        elif serious:
            next_step = config.get("serious") or "您的投诉已升级至客服主管，主管会在4小时内与您联系，说明核实情况和处理安排。"
            priority = 80
        else:
            next_step = config.get("normal") or "客服会在24小时内核实情况并回复您处理结果，处理完成后我们还会回访听取您的意见。"
            priority = 0
        if group is not None or serious:
            summary = f"{'群体' if group else '重要'}投诉：{label or '其他'}"
            alerted = group[0] if group is not None else ticket
            await alerts.alert(turn.session, turn.events, self.rt, level="group" if group else "serious",
                               ticket=alerted, summary=summary,
                               location=alerted.location or (project.name if project else "见工单"), now=turn.now)
            turn.events.emit(events.STAFF_ALERT, level="group" if group else "serious", ticket_id=ticket.id,
                             number=ticket.number, conversation_id=turn.conversation.id, summary=summary)
            if turn.conversation.mode == verbs.BOT:
                verbs.hand_over(turn.session, turn.events, turn.conversation,
                                reason="group_complaint" if group else "serious_complaint", priority=priority,
                                now=turn.now)
        reply = ack + next_step
        if owner is None and ticket.contact_phone is None:
            state["form"] = {"name": "complaint_contact", "slots": {"ticket_id": ticket.id}, "asking": "contact"}
            reply += "\n方便留一个联系电话吗？直接回复手机号即可，便于我们跟进。"
        else:
            reply += NEXT
        return reply

    async def _group_incident(
        self, turn: Turn, ticket: Ticket, project: Project | None, category: str
    ) -> tuple[Ticket, str] | None:
        """Several owners, same project and matter, within a day → one group incident (群体投诉)."""
        if project is None or category == "other":
            return None
        settings = (project.settings or {}).get("group_complaint") or {}
        threshold = int(settings.get("owners", GROUP_THRESHOLD))
        window = dt.timedelta(hours=float(settings.get("hours", GROUP_WINDOW.total_seconds() / 3600)))
        recent = (await turn.session.execute(
            sa.select(Ticket).where(
                Ticket.kind == "complaint", Ticket.project_id == project.id, Ticket.category == category,
                Ticket.created_at >= turn.now - window, Ticket.priority != "group",
            )
        )).scalars().all()
        reporters = {t.owner_id or f"c{t.conversation_id}" for t in recent}
        if len(reporters) < threshold:
            return None
        group = next((t for t in recent if t.group_id is not None), None)
        if group is not None:
            incident = await turn.session.get_one(Ticket, group.group_id)
        else:
            lead = (await turn.session.execute(
                sa.select(StaffUser).where(StaffUser.role == "supervisor", StaffUser.active.is_(True))
                .order_by(StaffUser.id).limit(1)
            )).scalar_one_or_none()
            incident = await open_ticket(
                turn.session, kind="complaint", project=project, category=category, priority="group",
                description=f"群体投诉：{COMPLAINT_LABEL.get(category, category)}（{len(reporters)}位业主在{int(window.total_seconds() // 3600)}小时内反映）",
                now=turn.now,
            )
            if lead is not None:
                incident.assignee_id = lead.id
            turn.events.emit(events.TICKET_CREATED, ticket_id=incident.id, number=incident.number, kind="complaint",
                             priority="group")
        for t in recent:
            if t.id != incident.id:
                t.group_id = incident.id
                t.priority = "group"
        lead_name = "客服主管"
        if incident.assignee_id:
            staff = await turn.session.get(StaffUser, incident.assignee_id)
            lead_name = staff.display_name if staff else lead_name
        return incident, lead_name

    # --- knowledge -----------------------------------------------------------------------------

    async def _inquiry(self, turn: Turn, state: dict[str, Any], text: str, *, inside_form: bool = False) -> str:
        answer = await self.knowledge.answer(text, await self._project_code(turn))
        if answer.decision == "answered":
            return answer.render() + ("" if inside_form else "\n" + NEXT)
        if answer.decision == "choices":
            state["choices"] = [h.item_id for h in answer.choices]
            return answer.render() + "\n都不是的话，可以换个说法，或回复“人工”。"
        await self.knowledge.record_unanswered(turn.session, text, conversation_id=turn.conversation.id,
                                               project=await self._project_code(turn))
        if inside_form:
            return "这个问题我暂时无法准确回答，已记录下来，客服同事稍后会回复您。"
        return await self._human(turn, state, reason="unknown_question",
                                 lead="抱歉，这个问题我暂时无法准确回答，已记录并转给客服同事。")

    async def _pick_choice(self, state: dict[str, Any], text: str) -> str | None:
        slugs = state.get("choices") or []
        m = re.fullmatch(r"\s*(?:第)?([1-9一二三])(?:个|条)?\s*", text)
        if not m:
            state.pop("choices", None)
            return None
        n = "一二三".index(m.group(1)) + 1 if m.group(1) in "一二三" else int(m.group(1))
        state.pop("choices", None)
        if n > len(slugs):
            return None
        item = await self.knowledge.get(slugs[n - 1])
        return (item.answer + "\n" + NEXT) if item else None

    # --- certificates --------------------------------------------------------------------------

    async def _certificate(self, turn: Turn, state: dict[str, Any], text: str, *, personal: bool | None = None) -> str:
        parse = turn.parse
        topic = parse.entity("certificate_topic").value if parse is not None and parse.entity("certificate_topic") else None
        if personal is None:
            personal = bool(PERSONAL_CERT.search(text)) and topic in (None, "progress", "collection")
        if not personal:
            answer = await self.knowledge.answer(text, await self._project_code(turn))
            if answer.decision == "answered":
                return answer.render() + "\n查询您本人的办证进度，可以回复“我的房产证办好了吗”。"
            if answer.decision == "choices":
                state["choices"] = [h.item_id for h in answer.choices]
                return answer.render()
            personal = True
        if turn.identity.owner_id is None:
            return await self._require_binding(turn, state, "certificate", text)
        houses = await self._houses(turn)
        if not houses:
            return "暂未查到您名下登记的房屋，已为您记录，客服核实后会回复您。" + NEXT
        records = {
            r.house_id: r for r in (await turn.session.execute(
                sa.select(CertificateRecord).where(CertificateRecord.house_id.in_([h.id for h in houses]))
            )).scalars()
        }
        owner = await self._owner(turn)
        name = owner.name if owner else ""
        parts = [self._certificate_line(h, records.get(h.id), await self._setting(turn, "certificate_collection", {}))
                 for h in houses]
        return f"{name}您好，为您查询到办证进度：\n" + "\n".join(parts) + "\n" + NEXT

    @staticmethod
    def _certificate_line(house: House, record: CertificateRecord | None, collection: dict[str, Any]) -> str:
        label = house_text(house)
        if record is None:
            return f"{label}：暂未查到办证记录。资料递交登记中心后我们会第一时间更新，如有疑问可回复“人工”。"
        if record.status == "ready":
            place = record.collect_place or collection.get("place", "客服中心")
            hours = record.collect_hours or collection.get("hours", "工作日 9:00–17:00")
            return (f"{label}：不动产权证书已办好，可以领取（批次：{record.batch or '—'}）。\n"
                    f"领取地点：{place}；领取时间：{hours}。\n"
                    "请携带：业主本人身份证原件、购房合同、契税和维修基金缴款凭证；"
                    "委托他人代领需带授权委托书及双方身份证。")
        if record.status == "processing":
            return (f"{label}：正在办理中（批次：{record.batch or '—'}），{record.note or '资料已递交不动产登记中心'}。"
                    "办好后我们会通过微信和短信通知您领取。")
        if record.status == "collected":
            when = cn_date(record.collected_at.date()) if record.collected_at else ""
            return f"{label}：证书已于{when}领取（领取人：{record.collected_by or '业主'}）。"
        if record.status == "mailed":
            return f"{label}：证书已邮寄，{record.note or '请留意快递信息'}。"
        return f"{label}：办理暂缓，{record.note or '需要补充资料'}，客服会与您联系说明。"

    # --- my tickets ----------------------------------------------------------------------------

    async def _my_tickets(self, turn: Turn, state: dict[str, Any], text: str) -> str:
        if turn.identity.owner_id is None:
            # Tickets this identity opened itself are its own business even before binding.
            tickets = await self._open_tickets(turn, Ticket.conversation_id.in_(
                sa.select(Conversation.id).where(Conversation.identity_id == turn.identity.id)
            ))
            if not tickets:
                return await self._require_binding(turn, state, "my_tickets", text)
        else:
            tickets = await self._open_tickets(turn, Ticket.owner_id == turn.identity.owner_id)
        if not tickets:
            return "您目前没有未完结的工单。如需报修或反映问题，直接告诉我即可。"
        lines = [f"您目前有{len(tickets)}张未完结的工单："]
        for n, t in enumerate(tickets, 1):
            status, nxt = STATUS_LABEL.get(t.status, (t.status, ""))
            who = f"，负责人：{t.assignee.display_name}" if t.assignee else ""
            when = f"，预约：{t.visit_time}" if t.visit_time and t.kind == "repair" else ""
            desc = t.description if len(t.description) <= 20 else t.description[:20] + "…"
            lines.append(f"{n}. {t.number}（{KIND_LABEL.get(t.kind, t.kind)}：{desc}）\n   状态：{status}{who}{when}。{nxt}")
        lines.append("如需催办或补充信息，直接留言即可。")
        return "\n".join(lines)

    async def _open_tickets(self, turn: Turn, condition: Any) -> list[Ticket]:
        return list((await turn.session.execute(
            sa.select(Ticket).where(condition, Ticket.status != "closed")
            .options(selectinload(Ticket.assignee)).order_by(Ticket.id)
        )).scalars())

    # --- people --------------------------------------------------------------------------------

    async def _human(self, turn: Turn, state: dict[str, Any], *, reason: str, lead: str = "") -> str:
        hours = await self._setting(turn, "staff_hours", None)
        duty = await self._setting(turn, "duty_phone", None)
        if turn.conversation.mode == verbs.BOT:
            verbs.hand_over(turn.session, turn.events, turn.conversation, reason=reason, now=turn.now)
        if in_staff_hours(hours, turn.now):
            text = "已为您转接人工客服，请稍候，客服人员会尽快回复您。"
        else:
            text = (f"现在是非工作时间（人工客服时间：{describe_hours(hours)}），我们已记录您的需求，"
                    f"人工客服将于{next_opening(hours, turn.now)}起尽快回复您。")
        if duty:
            text += f"如遇漏水、燃气、电梯困人等紧急情况，请拨打24小时值班电话{duty}。"
        return (lead + text) if lead else text

    async def _optout(self, turn: Turn) -> str:
        """退订 said in a chat (WeChat, or an SMS that was more than the bare keyword): recorded through
        ``actions.optout`` with its source; the chat reply is the acknowledgement (no extra SMS)."""
        owner = await self._owner(turn)
        phone = owner.phone if owner is not None else (
            turn.identity.external_id if self.rt.channels.capabilities(turn.identity.channel) is not None
            and self.rt.channels.capabilities(turn.identity.channel).templates_only else "")
        if owner is None and not phone:
            return "好的，已记录您的退订意愿。您绑定业主身份后，我们会停止向您登记的手机号发送通知短信。" + NEXT
        action = "opt_in" if optout.classify(turn.inbound.text) == "opt_in" else "opt_out"
        changed = await optout.record(turn.session, turn.events, self.notifier, phone=phone, action=action,
                                      source=turn.identity.channel, text=turn.inbound.text, owner=owner,
                                      now=turn.now, acknowledge=False)
        if action == "opt_in":
            return ("已为您恢复接收通知短信，回复R可随时退订。" if changed else "您目前已在接收通知短信。") + NEXT
        if not changed:
            return "您此前已退订通知短信，我们不会再向您发送通知类短信（验证码等必要短信除外）。" + NEXT
        return "已为您退订短信通知，今后不再向您发送通知类短信（验证码等必要短信除外）。如需恢复请回复“订阅”。"


def ticket_hours(ticket: Ticket, now: dt.datetime) -> str:
    if ticket.due_at is None:
        return "24小时"
    hours = max(1, round((ticket.due_at - now).total_seconds() / 3600))
    return f"{hours}小时"


__all__ = ["DialoguePolicy", "utcnow"]
