"""Certificates (办证): the verified owner's own status in any wording; general questions from the KB.

* A bound owner asking about "their" certificate in any wording (房本啥时候能下来, 我家证办好没) gets
  their houses' status; an unbound one is asked to verify first (DOMAIN.md: personal data).
* Past the contract deadline (``Project.settings["certificate_deadline_days"]`` from handover, default
  :data:`DEADLINE_DAYS`) the reply says so, apologises, and offers a complaint or a person.
* What to bring when collecting is quoted from the knowledge-base entry
  (``certificate_collection.kb_slug``, default ``cert-collect``), so the status reply and the knowledge
  base always list the same documents.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import sqlalchemy as sa

from actions.flows.base import Flow
from actions.flows.binding import require_binding
from actions.flows.complaint import ComplaintFlow
from actions.flows.context import NEXT, Ctx, house_text
from actions.tickets import cn_date, local_now
from bot.store.models import CertificateRecord, House

DEADLINE_DAYS = 365
GENERAL_TOPICS = frozenset({"documents", "taxes", "proxy", "mail", "name_change", "mortgage"})
PERSONAL = re.compile(
    r"我的|我家|我们家|咱家|俺家|本人|我那|我这|办好了没|办好了吗|好了没|好了吗|到了吗|下来了?没|下来了吗|能下来"
    r"|进度|能领|可以领|什么时候能拿|啥时候能拿|等了|还没|怎么还|到哪"
)
HOWTO = re.compile(r"怎么(?:交|办|领|弄|写|算|缴)|如何|多少|哪些|什么材料|要带|需要带|带什么|税|费用|流程|手续|委托|代领|邮寄|加名|更名")
OFFER_TTL = dt.timedelta(minutes=30)
TAKE_OFFER = re.compile(r"投诉|登记|要的|需要|帮我")
FALLBACK_BRING = "请携带所有产权人的身份证原件和领证通知（或办证收件回执）；委托他人代领需带委托书及双方身份证。"


class CertificateFlow(Flow):
    name = "certificate"
    intents = frozenset({"certificate"})
    priority = 20  # "投诉" right after the bot offered a complaint about an overdue certificate

    async def intercept(self, ctx: Ctx) -> list[str] | None:
        offer = ctx.state.get("offer")
        if not isinstance(offer, dict):
            return None
        if ctx.now - dt.datetime.fromisoformat(offer["at"]) > OFFER_TTL or ctx.form is not None:
            ctx.state.pop("offer", None)
            return None
        text = ctx.text
        if len(text) <= 10 and TAKE_OFFER.search(text) and "不" not in text:
            ctx.state.pop("offer", None)
            return [await ctx.router.get(ComplaintFlow).open(ctx, offer["text"])]
        ctx.state.pop("offer", None)
        return None

    async def start(self, ctx: Ctx, *, inside_form: bool = False, personal: bool | None = None) -> list[str]:
        text = ctx.text
        topic = ctx.entity_value("certificate_topic")
        if personal is None:
            personal = topic not in GENERAL_TOPICS and (bool(PERSONAL.search(text)) or (
                ctx.bound and topic in (None, "progress", "collection") and not HOWTO.search(text)))
        if not personal:
            answer = await ctx.desk.knowledge.answer(text, await ctx.project_code())
            if answer.decision == "answered":
                hint = "" if inside_form else "\n查询您本人的办证进度，可以回复“我的房产证办好了吗”。"
                return [answer.render() + hint]
            if answer.decision == "choices":
                ctx.state["choices"] = [h.item_id for h in answer.choices]
                return [answer.render()]
        if not ctx.bound:
            return [require_binding(ctx, "certificate", text)]
        return [await self.status(ctx)]

    async def answer(self, ctx: Ctx) -> list[str]:
        return await self.start(ctx, inside_form=True)

    async def resume(self, ctx: Ctx, resume: dict[str, Any]) -> str:
        return await self.status(ctx)

    async def status(self, ctx: Ctx, *, complaint_opened: bool = False) -> str:
        """The bound owner's certificate status per house, and an apology past the contract's deadline.

        ``complaint_opened``: a grievance about the certificate already opened a complaint in this turn
        (issue 11: act and topic apart); the status follows it, without offering a complaint again."""
        houses = await ctx.houses()
        if not houses:
            if complaint_opened:
                return ""
            return "暂未查到您名下登记的房屋，已为您记录，客服核实后会回复您。" + NEXT
        records = {r.house_id: r for r in (await ctx.session.execute(
            sa.select(CertificateRecord).where(CertificateRecord.house_id.in_([h.id for h in houses]))
        )).scalars()}
        owner = await ctx.owner()
        collection = await ctx.setting("certificate_collection", {}) or {}
        bring = await self._bring(ctx, collection)
        deadline_days = int(await ctx.setting("certificate_deadline_days", DEADLINE_DAYS))
        today = local_now(ctx.now).date()
        lines, overdue = [], []
        for house in houses:
            record = records.get(house.id)
            lines.append(self.line(house, record, collection, bring))
            if record is None or record.status in ("processing", "pending", "on_hold", "blocked"):
                if house.handover_date is not None:
                    due = house.handover_date + dt.timedelta(days=deadline_days)
                    if due < today:
                        overdue.append((house, due))
        reply = f"{owner.name if owner else ''}您好，为您查询到办证进度：\n" + "\n".join(lines)
        if overdue:
            where = "、".join(house_text(h) for h, _ in overdue)
            due = overdue[0][1]
            if complaint_opened:
                return reply + (f"\n按购房合同约定，开发商应在交房后{deadline_days}天内（{where}为{cn_date(due)}前）"
                                "完成办证资料递交，现已超过约定期限，非常抱歉让您久等了，这一点已一并记入您的投诉。")
            reply += (f"\n按购房合同约定，开发商应在交房后{deadline_days}天内（{where}为{cn_date(due)}前）完成办证资料递交，"
                      "现已超过约定期限，非常抱歉让您久等了。"
                      "如需要，我可以为您登记投诉并由主管跟进（回复“投诉”），或回复“人工”由客服为您核实具体原因。")
            ctx.state["offer"] = {"kind": "certificate_overdue", "at": ctx.now.isoformat(),
                                  "text": f"办证超过合同约定期限：{where}，约定{cn_date(due)}前，至今未办好。业主原话：{ctx.text}"}
            return reply
        return reply if complaint_opened else reply + "\n" + NEXT

    async def _bring(self, ctx: Ctx, collection: dict[str, Any]) -> str:
        item = await ctx.desk.knowledge.get(str(collection.get("kb_slug", "cert-collect")))
        if item is None:
            return FALLBACK_BRING
        lines = [ln.strip() for ln in item.answer.splitlines() if "带" in ln or "委托" in ln]
        return "\n".join(lines) or item.answer

    @staticmethod
    def line(house: House, record: CertificateRecord | None, collection: dict[str, Any], bring: str) -> str:
        label = house_text(house)
        if record is None:
            return f"{label}：暂未查到办证记录。资料递交登记中心后我们会第一时间更新，如有疑问可回复“人工”。"
        if record.status == "ready":
            place = record.collect_place or collection.get("place", "客服中心")
            hours = record.collect_hours or collection.get("hours", "工作日 9:00–17:00")
            return (f"{label}：不动产权证书已办好，可以领取（批次：{record.batch or '—'}）。\n"
                    f"领取地点：{place}；领取时间：{hours}。\n{bring}")
        if record.status == "processing":
            return (f"{label}：正在办理中（批次：{record.batch or '—'}），{record.note or '资料已递交不动产登记中心'}。"
                    "办好后我们会通过微信和短信通知您领取。")
        if record.status == "collected":
            when = cn_date(record.collected_at.date()) if record.collected_at else ""
            return f"{label}：证书已于{when}领取（领取人：{record.collected_by or '业主'}）。"
        if record.status == "mailed":
            return f"{label}：证书已邮寄，{record.note or '请留意快递信息'}。"
        return f"{label}：办理暂缓，{record.note or '需要补充资料'}，客服会与您联系说明。"
