"""A paid repair's quote (有偿维修报价): the owner's yes or no in chat (actions/quotes.py owns the rules).

Staff propose a price from the console; the ticket waits until the owner accepts. Outside a form any
yes/no can be the answer to a waiting quote; inside a form only a message that names the quote (报价) is,
so "好的" at a repair's summary still files that repair.
"""

from __future__ import annotations

from actions import quotes
from actions.flows.base import Flow
from actions.flows.context import Ctx


class QuoteFlow(Flow):
    name = "quote"
    priority = 60  # above progress questions (50): "同意" to a waiting quote is not a progress question

    async def intercept(self, ctx: Ctx) -> list[str] | None:
        if ctx.form is not None and "报价" not in ctx.text:
            return None
        reply = await quotes.answer_from_chat(ctx.session, ctx.events, ctx.conversation, ctx.text, now=ctx.now)
        return [reply] if reply is not None else None
