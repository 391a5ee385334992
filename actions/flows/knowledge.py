"""Questions (咨询) answered from the knowledge base; numbered choices; unknown questions to a person."""

from __future__ import annotations

import re

from actions.flows.base import Flow
from actions.flows.context import NEXT, Ctx
from actions.flows.handover import HandoverFlow

CHOICE = re.compile(r"\s*(?:第)?([1-9一二三])(?:个|条)?\s*")


class KnowledgeFlow(Flow):
    name = "knowledge"
    intents = frozenset({"inquiry"})
    priority = 10  # a pick among the answers offered last turn ("2")

    async def intercept(self, ctx: Ctx) -> list[str] | None:
        slugs = ctx.state.get("choices") or []
        if not slugs or ctx.form is not None:
            return None
        m = CHOICE.fullmatch(ctx.text)
        ctx.state.pop("choices", None)
        if not m:
            return None
        n = "一二三".index(m.group(1)) + 1 if m.group(1) in "一二三" else int(m.group(1))
        if n > len(slugs):
            return None
        item = await ctx.desk.knowledge.get(slugs[n - 1])
        return [item.answer + "\n" + NEXT] if item else None

    async def start(self, ctx: Ctx, *, inside_form: bool = False) -> list[str]:
        text = ctx.text
        knowledge = ctx.desk.knowledge
        answer = await knowledge.answer(text, await ctx.project_code())
        if answer.decision == "answered":
            return [answer.render() + ("" if inside_form else "\n" + NEXT)]
        if answer.decision == "choices":
            ctx.state["choices"] = [h.item_id for h in answer.choices]
            return [answer.render() + "\n都不是的话，可以换个说法，或回复“人工”。"]
        await knowledge.record_unanswered(ctx.session, text, conversation_id=ctx.conversation.id,
                                          project=await ctx.project_code())
        if inside_form:
            return ["这个问题我暂时无法准确回答，已记录下来，客服同事稍后会回复您。"]
        return [await ctx.router.get(HandoverFlow).hand_over(
            ctx, reason="unknown_question", lead="抱歉，这个问题我暂时无法准确回答，已记录并转给客服同事。")]

    async def answer(self, ctx: Ctx) -> list[str]:
        return await self.start(ctx, inside_form=True)
