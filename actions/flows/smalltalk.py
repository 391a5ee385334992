"""Small talk and the fallback: greetings, thanks, a stray yes/no, and "I did not understand"."""

from __future__ import annotations

import re

from actions.flows.base import Flow
from actions.flows.context import NEXT, Ctx
from bot.policy import HELP

BYE = re.compile(r"拜拜|再见|bye|没事了|没别的了|没有了|就这样|先这样|不用了谢谢|好的谢谢|谢谢啦|谢了|辛苦了")


class SmallTalkFlow(Flow):
    name = "smalltalk"
    intents = frozenset({"greet", "thanks", "affirm", "deny", "other"})

    async def start(self, ctx: Ctx) -> list[str]:
        intent = ctx.intent
        confident = ctx.parse is not None and ctx.parse.confidence >= 0.5
        if BYE.search(ctx.text) and len(ctx.text) <= 12 and intent not in ("repair", "complaint", "certificate"):
            lead = "不客气" if "谢" in ctx.text or "辛苦" in ctx.text else "好的"
            return [f"{lead}，祝您生活愉快！有需要随时找我。"]
        if intent == "greet":
            return ["您好！我是业主服务助手，请问有什么可以帮您？可以直接说报修、投诉、咨询或办证的事情。"]
        if intent == "thanks":
            return ["不客气，很高兴为您服务！" + NEXT]
        if intent in ("affirm", "deny") and confident:
            return ["好的。请问还有什么可以帮您？可以直接说报修、投诉、咨询或办证的事情。"]
        return await self.misunderstood(ctx)

    async def misunderstood(self, ctx: Ctx) -> list[str]:
        # An unclear message may still be a question the knowledge base knows.
        answer = await ctx.desk.knowledge.answer(ctx.text, await ctx.project_code())
        if answer.decision == "answered":
            ctx.state["misses"] = 0
            return [answer.render() + "\n" + NEXT]
        ctx.state["misses"] = ctx.state.get("misses", 0) + 1
        if ctx.state["misses"] >= 2:
            ctx.state["misses"] = 0
            return ["抱歉，我还是没能理解您的意思。需要为您转接人工客服吗？回复“人工”即可；也可以换个说法再告诉我。"]
        return ["抱歉，我没太明白您的意思。" + HELP]
