"""SMS opt-out and opt-in said in a conversation (退订 / 订阅): the flow around ``actions.optout``.

Started by the ``optout`` intent ("以后别给我发短信了"), and it intercepts a message that is nothing but an
opt-out or opt-in word before any form: on SMS the bare letters too (T, TD, N, R — the templates tell
owners to reply them), elsewhere only words (退订, 订阅, 恢复短信 …), since a lone "N" in a WeChat chat
is more likely a "no". Bare keywords pushed by an SMS provider are honoured before the engine even sees
them (``bot/jobs/sms.py``); this flow is for everything said inside a conversation. The chat reply is
the acknowledgement, so no extra SMS goes out.
"""

from __future__ import annotations

from actions import optout
from actions.flows.base import Flow
from actions.flows.context import NEXT, Ctx


class OptOutFlow(Flow):
    name = "optout"
    intents = frozenset({"optout"})
    priority = 60
    """After emergencies (90, 100), before ticket progress and forms: an opt-out is honoured at once."""

    async def intercept(self, ctx: Ctx) -> list[str] | None:
        said = optout.classify(ctx.text)
        if said is None:
            return None
        caps = ctx.desk.runtime.channels.capabilities(ctx.identity.channel)
        if len(optout.normalise(ctx.text)) <= 2 and not (caps is not None and caps.templates_only):
            return None
        return [await self.record(ctx, said)]

    async def start(self, ctx: Ctx) -> list[str]:
        return [await self.record(ctx, optout.classify(ctx.text) or "opt_out")]

    async def record(self, ctx: Ctx, action: optout.Action) -> str:
        owner = await ctx.owner()
        caps = ctx.desk.runtime.channels.capabilities(ctx.identity.channel)
        phone = owner.phone if owner is not None else (
            ctx.identity.external_id if caps is not None and caps.templates_only else "")
        if not phone:
            return "好的，已记录您的退订意愿。您验证业主身份后，我们会停止向您登记的手机号发送通知短信。" + NEXT
        changed = await optout.record(ctx.session, ctx.events, ctx.desk.notifier, phone=phone, action=action,
                                      source=ctx.identity.channel, text=ctx.text, owner=owner, now=ctx.now,
                                      acknowledge=False)
        if action == "opt_in":
            return ("已为您恢复接收通知短信，回复R可随时退订。" if changed else "您目前已在接收通知短信。") + NEXT
        if not changed:
            return "您此前已退订通知短信，我们不会再向您发送通知类短信（验证码等必要短信除外）。" + NEXT
        return "已为您退订短信通知，今后不再向您发送通知类短信（验证码等必要短信除外）。如需恢复请回复“订阅”。"
