"""Progress of the owner's tickets (我的报修): every common way of asking lists the open tickets.

Asked in any wording (我的报修 / 修好没有 / 上次报的漏水修好没 / 进度查一下 / 怎么还没人来), even in the
middle of a form (the form stays). "催一下"/"还没人来" is also recorded on the tickets as the owner's
follow-up (催办), "还没修好" about a finished repair reopens it as 返修, and "验收通过" closes it (the
owner accepted the work; its callback survey follows).
"""

from __future__ import annotations

import re

from actions.flows import followup
from actions.flows.base import MIND_CHANGE, Flow
from actions.flows.binding import require_binding
from actions.flows.context import NEXT, Ctx
from actions.flows.understand import STILL_BROKEN, asks_progress
from actions.tickets import KIND_LABEL

NUMBER = re.compile(r"(?:BX|TS|ZX|BZ)\d{8}-\d{4}", re.IGNORECASE)
WITHDRAW = re.compile(r"取消(?:报修|投诉|工单|维修|这个单|那个单|这单)|撤(?:销|回)(?:报修|投诉|工单)?|不用来了|不用修了|不修了"
                      r"|别来了|不用派人|不需要(?:上门|修)了")
ACCEPT = re.compile(
    r"^(?:(?:验收通过|验收合格|确认验收|同意验收|可以验收|验收了|已验收|验收ok|已经修好了|都修好了|修好了|好了没问题|没问题了|没问题)"
    r"[了啦吧啊。.!！,，\s]*)+(?:谢谢|辛苦了|辛苦|感谢)?(?:师傅|你们|您)?[了啦吧。.!！\s]*$", re.IGNORECASE)
"""The owner accepts finished work (the acceptance notice asks them to reply 验收通过 or 还没修好)."""
URGE = re.compile(r"催|还没(?:人)?(?:来|上门|联系|修)|怎么还|到底|等了|快点|赶紧|尽快")


class MyTicketsFlow(Flow):
    name = "my_tickets"
    priority = 50

    async def intercept(self, ctx: Ctx) -> list[str] | None:
        form = ctx.form
        if form is not None and form["name"] in ("bind_phone", "bind_code", "choose_house"):
            return None
        if form is None and ACCEPT.match(ctx.text):
            accepted = await self._accept(ctx)
            if accepted is not None:
                return [accepted]
        numbers = [n.upper() for n in NUMBER.findall(ctx.text)]
        if form is None and WITHDRAW.search(ctx.text) and len(ctx.text) <= 20 and not MIND_CHANGE.search(ctx.text):
            withdrawn = await self._withdraw(ctx, numbers)
            if withdrawn is not None:
                return [withdrawn]
        if numbers:
            return [await self.show(ctx, numbers=numbers)]
        if not asks_progress(ctx) and not (STILL_BROKEN.search(ctx.text) and len(ctx.text) <= 20
                                           and await self._has_finished(ctx)):
            return None
        reply = await self.show(ctx)
        if form is not None and ctx.form is form and form["name"] not in ("emergency",):
            flow = ctx.router.owner_of(form["name"])
            question = getattr(flow, "question", None)
            if callable(question):
                reply += "\n\n我们继续刚才的登记：" + question(form)
        return [reply]

    async def start(self, ctx: Ctx) -> list[str]:
        return [await self.show(ctx)]

    async def resume(self, ctx: Ctx, resume: dict[str, object]) -> str:
        return await self.show(ctx)

    async def _withdraw(self, ctx: Ctx, numbers: list[str]) -> str | None:
        """"取消报修 不用来了" with a ticket open: the request goes on the ticket; staff confirm and close."""
        tickets = await followup.tickets_by_number(ctx, numbers) if numbers else await followup.open_tickets(ctx)
        tickets = [t for t in tickets if t.status in ("new", "dispatched", "reopened")]
        if not tickets:
            return None
        ticket = tickets[-1]
        followup.add_followup(ctx, ticket, ctx.text, withdraw=True)
        return (f"好的，已把您取消{KIND_LABEL.get(ticket.kind, '')}单 {ticket.number} 的要求转给负责的同事，"
                "客服确认后会关闭工单并通知您。" + NEXT)

    async def _accept(self, ctx: Ctx) -> str | None:
        """"验收通过": the owner's finished repair is closed (办结) through the workflow, which schedules its
        callback survey (actions/surveys.py)."""
        from actions.workflow import TicketWorkflow

        waiting = [t for t in await followup.open_tickets(ctx, "repair") if t.status in ("done", "awaiting_acceptance")]
        if not waiting:
            return None
        ticket = waiting[-1]
        await TicketWorkflow(ctx.desk.runtime).close(ctx.session, ctx.events, ticket, actor="owner",
                                                     reason=f"业主确认验收：{ctx.text}"[:500], now=ctx.now, notify=False)
        return (f"感谢您的确认！报修单 {ticket.number} 已验收办结。稍后我们会请您花一分钟评价本次服务。" + NEXT)

    async def _has_finished(self, ctx: Ctx) -> bool:
        category = ctx.entity_value("repair_category")
        return await followup.finished_repair(ctx, category=category) is not None

    async def show(self, ctx: Ctx, *, numbers: list[str] | None = None) -> str:
        if numbers:
            mine = await followup.tickets_by_number(ctx, numbers)
            if not mine:
                return ("没有查到您名下的这张工单，请核对单号；查看您的全部工单可以回复“我的报修”。"
                        if ctx.bound else require_binding(ctx, "my_tickets", ctx.text))
            return "\n".join(f"{t.number}（{KIND_LABEL.get(t.kind, t.kind)}：{self._short(t.description)}）\n"
                             f"{followup.status_line(t)}" for t in mine) + "\n如需催办或补充信息，直接留言即可。"
        tickets = await followup.open_tickets(ctx)
        text = ctx.text
        if STILL_BROKEN.search(text) and not URGE.search(text.replace("还没修好", "")):
            done = await followup.finished_repair(ctx, category=ctx.entity_value("repair_category"))
            if done is not None and (not tickets or all(t.id != done.id for t in tickets)
                                     or done.status in ("done", "awaiting_acceptance")):
                await followup.reopen(ctx, done, text)
                who = f"，仍由{done.assignee.display_name}负责" if done.assignee else ""
                return (f"非常抱歉给您添麻烦了。报修单 {done.number} 已为您安排返修{who}，"
                        "我们会尽快联系您确认上门时间。" + NEXT)
        if not tickets:
            if not ctx.bound:
                return require_binding(ctx, "my_tickets", text)
            return "您目前没有未完结的工单。如需报修或反映问题，直接告诉我即可。"
        urged = bool(URGE.search(text))
        lines = [f"您目前有{len(tickets)}张未完结的工单："]
        for n, t in enumerate(tickets, 1):
            desc = self._short(t.description)
            lines.append(f"{n}. {t.number}（{KIND_LABEL.get(t.kind, t.kind)}：{desc}）\n   {followup.status_line(t)}")
            if urged and t.status != "awaiting_acceptance":
                followup.add_followup(ctx, t, text, urge=True)
        lines.append("已把您的催办转给负责的同事，我们会尽快处理。" if urged else "如需催办或补充信息，直接留言即可。")
        return "\n".join(lines)

    @staticmethod
    def _short(description: str) -> str:
        return description if len(description) <= 20 else description[:20] + "…"
