"""Hand-over to a person (DOMAIN.md): when the owner asks, honestly about when someone will reply."""

from __future__ import annotations

from actions.flows.base import Flow
from actions.flows.context import Ctx
from actions.flows.understand import asks_for_person
from actions.hours import describe_hours, in_staff_hours, next_opening
from bot import conversation as verbs


class HandoverFlow(Flow):
    name = "handover"
    intents = frozenset({"human"})
    priority = 40  # "转人工" in the middle of any form

    async def intercept(self, ctx: Ctx) -> list[str] | None:
        if ctx.form is not None and asks_for_person(ctx):
            return [await self.hand_over(ctx, reason="owner_asked")]
        return None

    async def start(self, ctx: Ctx) -> list[str]:
        return [await self.hand_over(ctx, reason="owner_asked")]

    async def hand_over(self, ctx: Ctx, *, reason: str, lead: str = "") -> str:
        hours = await ctx.setting("staff_hours", None)
        duty = await ctx.setting("duty_phone", None)
        if ctx.conversation.mode == verbs.BOT:
            verbs.hand_over(ctx.session, ctx.events, ctx.conversation, reason=reason, now=ctx.now)
        if in_staff_hours(hours, ctx.now):
            text = "已为您转接人工客服，请稍候，客服人员会尽快回复您。"
        else:
            text = (f"现在是非工作时间（人工客服时间：{describe_hours(hours)}），我们已记录您的需求，"
                    f"人工客服将于{next_opening(hours, ctx.now)}起尽快回复您。")
        if duty:
            text += f"如遇漏水、燃气、电梯困人等紧急情况，请拨打24小时值班电话{duty}。"
        return (lead + text) if lead else text
