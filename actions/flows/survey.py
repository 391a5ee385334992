"""The in-chat callback survey (回访): one item at a time, in the owner's own words.

Started from outside a turn by the survey job (``actions/surveys.py`` → ``Router.begin``, the flow's
:meth:`SurveyFlow.opening`), or by the owner answering an invitation a ``survey`` campaign sent ("5",
"挺满意的"), which finds their ``invited`` response. The form ``survey`` holds the response id, the items
still to ask (code, text, type) and where it is.

Each message is read by :func:`actions.scores.read`:

* a score 1–5 (digits, words, emoji, "给4分吧") fills the item; 1–2 asks why, and the owner's words are
  kept in ``answers``; a text item takes the words as they are;
* "跳过" skips the item; "不想答" / "别问了" ends the survey (``declined``, or ``partial`` with answers);
* "还没修好" / "又漏了" reopens the repair as 返修 through the workflow (rework_count) and says so;
* anything else is not an answer: a question ("物业费怎么交") is answered by the normal dialogue and the
  survey resumes with the pending item; an emergency always wins (its intercept runs first); a new
  repair or complaint takes over (the response stays open until it expires, then counts as partial).

Over SMS only the overall item is asked (reply-by-digit; every reply costs the owner a message). A
response already complete (the owner answered before, or staff recorded a phone callback) is never
overwritten: the first complete response stays.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import sqlalchemy as sa

from actions import scores, surveys
from actions.flows.base import Flow, drop_form, intent_of, new_form
from actions.flows.context import NEXT, Ctx, State
from bot.store.models import Conversation, StaffUser, SurveyResponse, SurveyTemplate, Ticket
from nlu.normalize import normalize

FORM = "survey"
WHY = "很抱歉让您不满意。能具体说说是哪里做得不好吗？您的原话会直接转给主管。（不想说可回复“跳过”）"
HINT = "请回复1-5的数字（5分为非常满意，1分为非常不满意），也可以直接说“满意”“一般”“不满意”，或回复“跳过”。"
STALE_OTHER_FORM = dt.timedelta(minutes=30)
STALE_SURVEY = dt.timedelta(hours=24)
QUESTION = re.compile(r"[?？]|怎么|如何|哪里|在哪|多少|吗$|什么时候|能不能|可不可以")
SURVEY_GRUMBLE = re.compile(r"评价|打分|回访|问卷|调查|评分|又要|烦|打扰|麻烦死")


def form_slots(row: SurveyResponse, template: SurveyTemplate, *, sms: bool, number: str | None = None,
               intro: bool = True) -> dict[str, Any]:
    """The survey form's slots for ``row`` (``Router.begin(state, "survey", now, **slots)``). Over SMS
    only the overall item, and no introduction (the invitation's approved template is the introduction)."""
    items = [{"code": i["code"], "text": i["text"], "type": i.get("type", "score")} for i in template.items or []]
    if sms:
        items = [i for i in items if i["code"] == "overall"][:1]
    return {"survey": row.id, "kind": row.kind, "ticket_id": row.ticket_id, "items": items, "i": 0, "sms": sms,
            "intro": surveys.intro(row.kind, number, len(items)) if intro and not sms else ""}


async def busy(conv: Conversation, now: dt.datetime) -> bool:
    """The owner is filling another form right now (an invitation would interrupt a repair report), or
    answering another survey today (two closed tickets: one survey at a time)."""
    form = (conv.state or {}).get("form")
    if not isinstance(form, dict):
        return False
    updated = form.get("updated")
    if not isinstance(updated, str):
        return False
    quiet = STALE_SURVEY if form.get("name") == FORM else STALE_OTHER_FORM
    return now - dt.datetime.fromisoformat(updated) < quiet


def question(form: dict[str, Any]) -> str:
    slots = form["slots"]
    items = slots["items"]
    i = slots["i"]
    if form.get("asking") == "why":
        return WHY
    item = items[i]
    n = len(items)
    head = f"（{i + 1}/{n}）" if n > 1 else ""
    if item.get("type") == "text":
        return f"{head}{item['text']}（直接回复即可，没有可回复“没有”或“跳过”）"
    if slots.get("sms"):
        return f"{item['text']}请回复1-5分（5分为非常满意）。"
    return f"{head}{item['text']}\n请回复1-5分（5分为非常满意，1分为非常不满意）。"


class SurveyFlow(Flow):
    name = "survey"
    forms = frozenset({FORM})
    priority = 55
    """After emergencies (90, 100) and opt-outs (60), before ticket progress (50): inside a survey
    "还没修好" is the survey's answer (a rework, recorded on the response), not a progress query."""
    timeout = dt.timedelta(days=30)
    """The policy's generic expiry never drops a survey: the survey job expires it (``expire_hours``)."""

    def opening(self, state: State, slots: dict[str, Any]) -> str:
        intro = slots.pop("intro", "")
        form = new_form(state, FORM, slots, asking="item")
        return (intro + "\n" if intro else "") + question(form)

    def question(self, form: dict[str, Any]) -> str:
        return question(form)

    # -- routing ----------------------------------------------------------------------------------

    async def intercept(self, ctx: Ctx) -> list[str] | None:
        form = ctx.form
        if form is not None and form["name"] == FORM:
            return await self._answer(ctx, form, aside_allowed=False)
        if form is not None or len(ctx.text) > 20:
            return None
        answer = scores.read(ctx.text)
        if answer is None or answer.kind not in ("score", "decline"):
            return None
        return await self._invited(ctx, answer)

    async def step(self, ctx: Ctx, form: dict[str, Any]) -> list[str] | None:
        return await self._answer(ctx, form, aside_allowed=True)

    async def cancel(self, ctx: Ctx, form: dict[str, Any]) -> list[str]:
        return await self._decline(ctx, form)

    # -- an invitation a campaign sent -----------------------------------------------------------

    async def _invited(self, ctx: Ctx, answer: scores.Answer) -> list[str] | None:
        owner_id = ctx.identity.owner_id
        if owner_id is None:
            return None
        row = (await ctx.session.execute(
            sa.select(SurveyResponse).where(
                SurveyResponse.owner_id == owner_id,
                sa.or_(SurveyResponse.status.in_(("invited", "in_progress")),
                       # "不想答" and then a score after all: the owner changed their mind
                       sa.and_(SurveyResponse.status == "declined", sa.true() if answer.kind == "score" else sa.false(),
                               SurveyResponse.invited_at >= ctx.now - dt.timedelta(hours=24))))
            .order_by(SurveyResponse.invited_at.desc().nulls_last(), SurveyResponse.id.desc()).limit(1)
        )).scalar_one_or_none()
        if row is not None and row.status == "declined":
            row.status = "in_progress"
        if row is None:
            recent = (await ctx.session.execute(
                sa.select(SurveyResponse.id).where(SurveyResponse.owner_id == owner_id,
                                                   SurveyResponse.status.in_(surveys.DONE),
                                                   SurveyResponse.completed_at >= ctx.now - dt.timedelta(days=3))
                .limit(1))).first()
            if recent is not None and answer.kind == "score":
                return ["您已完成本次回访，我们以您第一次的评价为准，感谢您的支持！" + NEXT]
            return None
        template = await ctx.session.get(SurveyTemplate, row.template_id)
        if template is None:
            return None
        caps = ctx.desk.runtime.channels.capabilities(ctx.identity.channel)
        slots = form_slots(row, template, sms=bool(caps is not None and caps.templates_only), intro=False)
        slots.pop("intro", None)
        form = new_form(ctx.state, FORM, slots, asking="item", now=ctx.now)
        for i, item in enumerate(slots["items"]):  # resume after what was answered already
            if item["code"] not in (row.scores or {}) and item["code"] not in (row.answers or {}):
                slots["i"] = i
                break
        return await self._answer(ctx, form, aside_allowed=False)

    # -- one answer -------------------------------------------------------------------------------

    async def _row(self, ctx: Ctx, form: dict[str, Any]) -> SurveyResponse | None:
        return await ctx.session.get(SurveyResponse, form["slots"].get("survey"))

    async def _answer(self, ctx: Ctx, form: dict[str, Any], *, aside_allowed: bool) -> list[str] | None:
        slots = form["slots"]
        row = await self._row(ctx, form)
        if row is None or row.status not in surveys.PENDING:
            drop_form(ctx.state)
            if row is not None and row.status in surveys.DONE:
                if scores.read(ctx.text) is not None and len(ctx.text) <= 20:
                    return ["您已完成本次回访，我们以您第一次的评价为准，感谢您的支持！" + NEXT]
            return None  # expired, cancelled meanwhile: the message is routed as usual
        answer = scores.read(ctx.text)
        asking = form.get("asking")
        items = slots["items"]
        item = items[slots["i"]]
        if answer is not None and answer.kind == "still_broken":
            return await self._rework(ctx, form, row)
        if answer is not None and answer.kind == "decline":
            return await self._decline(ctx, form)
        if asking == "why":
            if answer is None and aside_allowed and self._aside(ctx) and QUESTION.search(ctx.text):
                return await self._aside_answer(ctx, form)  # a question, not the reason: answered, then why again
            if answer is None and not aside_allowed and self._aside(ctx) and QUESTION.search(ctx.text):
                return None
            if answer is None or answer.kind != "skip":
                row.answers = {**(row.answers or {}), slots["why"]: ctx.text[:500]}
            form["asking"] = "item"
            return await self._next(ctx, form, row, "谢谢您告诉我们，已经记下了。")
        if item.get("type") == "text":
            if (answer is not None and answer.kind == "skip") or ctx.text.strip("。.!！ ") in ("没有", "没了", "无", "没有了"):
                return await self._next(ctx, form, row, "")
            if answer is None and self._aside(ctx):
                return await self._aside_answer(ctx, form) if aside_allowed else None
            row.answers = {**(row.answers or {}), item["code"]: ctx.text[:500]}
            return await self._next(ctx, form, row, "")
        if answer is None and SURVEY_GRUMBLE.search(ctx.text) and len(ctx.text) <= 20:
            # "烦死了 又要评价": a grumble about being asked, not a complaint to open (nor a refusal yet)
            return ["抱歉打扰您了！只有几个问题，一分钟就好；不想答可以直接回复“不想答”。\n" + question(form)]
        if answer is None:
            if self._aside(ctx):
                return await self._aside_answer(ctx, form) if aside_allowed else None
            if not aside_allowed:
                return None  # the router tries the other flows first, then comes back to step()
            slots["misses"] = int(slots.get("misses", 0)) + 1
            return ["抱歉，没能看出您的评分。" + HINT + "\n" + question(form)]
        if answer.kind == "skip":
            return await self._next(ctx, form, row, "好的，这题跳过。")
        assert answer.score is not None
        row.scores = {**(row.scores or {}), item["code"]: answer.score}
        row.status = "in_progress"
        if answer.score <= surveys.LOW:
            if slots.get("asked_why"):  # asked once per survey: a hurried owner is not asked again and again
                if not _only_score(ctx.text):
                    row.answers = {**(row.answers or {}), item["code"]: ctx.text[:500]}
            elif not _only_score(ctx.text):  # "太慢了，差评": the reason came with the score
                row.answers = {**(row.answers or {}), item["code"]: ctx.text[:500]}
            else:
                slots["why"] = item["code"]
                slots["asked_why"] = True
                form["asking"] = "why"
                return [WHY]
        return await self._next(ctx, form, row, "")

    def _aside(self, ctx: Ctx) -> bool:
        intent, confident = intent_of(ctx)
        return (confident and intent in ("inquiry", "certificate", "complaint", "repair", "human", "optout")) \
            or "?" in ctx.text or "？" in ctx.text

    async def _aside_answer(self, ctx: Ctx, form: dict[str, Any]) -> list[str] | None:
        """A question mid-survey: answered, then the pending item again. A new repair, complaint or a
        request for a person is not an aside: the other flow takes over."""
        intent, confident = intent_of(ctx)
        if confident and intent in ("repair", "complaint", "human", "optout"):
            return None
        flow = ctx.router.flow("certificate" if intent == "certificate" else "knowledge")
        reply = "\n".join(await flow.answer(ctx))
        ctx.state["form"] = form
        return [reply, "我们继续刚才的回访：" + question(form)]

    async def _next(self, ctx: Ctx, form: dict[str, Any], row: SurveyResponse, ack: str) -> list[str]:
        slots = form["slots"]
        slots["i"] += 1
        slots.pop("misses", None)
        if slots["i"] < len(slots["items"]):
            return [(ack + "\n" if ack else "") + question(form)]
        drop_form(ctx.state)
        recovery = await surveys.finish(ctx.desk.runtime, ctx.session, ctx.events, row, "complete", ctx.now)
        return [self._thanks(row, recovery, ack)]

    @staticmethod
    def _thanks(row: SurveyResponse, recovery: Ticket | None, ack: str = "") -> str:
        text = (ack + "\n" if ack else "") + "感谢您的评价！"
        if recovery is not None:
            hours = int((recovery.due_at - row.completed_at).total_seconds() // 3600) \
                if recovery.due_at and row.completed_at else 24
            text += f"您反映的问题我们已转给主管跟进（补救单 {recovery.number}），会在{hours}小时内与您联系。"
        else:
            text += "我们会继续努力，做好服务。"
        return text + NEXT

    async def _decline(self, ctx: Ctx, form: dict[str, Any]) -> list[str]:
        row = await self._row(ctx, form)
        drop_form(ctx.state)
        if row is not None and row.status in surveys.PENDING:
            status = "partial" if row.scores else "declined"
            await surveys.finish(ctx.desk.runtime, ctx.session, ctx.events, row, status, ctx.now)
        return ["好的，不打扰您了。如有任何需要，随时给我们留言。"]

    async def _rework(self, ctx: Ctx, form: dict[str, Any], row: SurveyResponse) -> list[str]:
        """"还没修好" in a callback: the ticket is reopened as 返修 (rework_count + 1) and the owner told."""
        from actions.workflow import TicketWorkflow, WorkflowError

        drop_form(ctx.state)
        ticket = await ctx.session.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
        code = form["slots"]["items"][form["slots"]["i"]]["code"]
        row.answers = {**(row.answers or {}), code if code != "overall" else "result": ctx.text[:500]}
        row.comment = f"回访时业主反馈：{ctx.text}"[:2000]
        if ticket is None or ticket.kind not in ("repair", "complaint"):
            await surveys.finish(ctx.desk.runtime, ctx.session, ctx.events, row,
                                 "partial" if row.scores else "declined", ctx.now, words=ctx.text)
            return ["非常抱歉！您反映的情况已记录并转给主管，我们会尽快联系您。" + NEXT]
        try:
            await TicketWorkflow(ctx.desk.runtime).reopen(ctx.session, ctx.events, ticket, actor="owner",
                                                          reason=f"回访时业主反馈：{ctx.text}"[:500], now=ctx.now,
                                                          notify=False)
        except WorkflowError:
            pass  # already reopened by staff: the owner is told the same
        await surveys.finish(ctx.desk.runtime, ctx.session, ctx.events, row,
                             "partial" if row.scores else "cancelled", ctx.now)
        assignee = await ctx.session.get(StaffUser, ticket.assignee_id) if ticket.assignee_id else None
        who = f"，仍由{assignee.display_name}负责" if assignee is not None else ""
        what = "报修单" if ticket.kind == "repair" else "投诉单"
        return [f"非常抱歉给您添麻烦了！{what} {ticket.number} 已为您安排返修{who}，我们会尽快联系您确认上门时间。"
                "处理好后我们会再次回访。" + NEXT]


EVALUATION = re.compile(
    r"非常|很|特别|十分|超级|太|极其|真的|不太|不是很|不怎么|不|没|满意|差评|差劲|差|烂|糟糕|糟|垃圾|恶劣|失望|无语|气人"
    r"|一般|还行|凑合|好|分|星|打|给|[\d一二两三四五]|[了吧啊呀的呢嘛哦]"
)


def _only_score(text: str) -> bool:
    """"1分" / "很差" / "😡": a bare score, no reason in it yet (so the flow asks why); "太慢了，差评" has one."""
    rest = EVALUATION.sub("", normalize(text).text)
    return not re.search(r"[\u4e00-\u9fffa-z]", rest)
