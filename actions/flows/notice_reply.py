"""Replies in context: the owner answers a notice the bot sent them (issue 14, "Replies in context").

The bot knows what it last sent an owner: their latest campaign :class:`Delivery` that reached them
(``sent``, ``delivered`` or ``acknowledged``) within ``YEZHU_CAMPAIGN_REPLY_DAYS`` (7), joined with its
:class:`Campaign` (the shared contract of issues 14 and 15). A short reply is read against it:

* an acknowledgement of any notice ("收到", "好的知道了", "ok 谢谢") marks the delivery ``acknowledged``
  (with ``acknowledged_at``) and is answered politely — once: a second "好的" goes to the normal dialogue;
* after a certificate notice (``certificate_collection``), questions about collecting — a proxy (可以代领吗),
  the hours (几点能去, 周六上班吗, 明天下午可以去吗), the place, the documents (要带什么), mail (能寄吗) —
  are answered with **that owner's** details: their :class:`CertificateRecord`'s place and hours win over
  the campaign's ``place``/``hours``, then ``documents``, ``proxy`` and ``mail`` of the campaign's params,
  then the project's ``certificate_collection`` settings; a certificate already collected says so;
* after an outage notice (``outage``), "什么时候来水/来电", "停多久", "为什么停水", "哪些楼停" are answered
  from the notice's ``utility``, ``start``, ``end``, ``area`` and ``reason``; once the planned end has
  passed, the reply says so and offers a repair.

What a message asks is read from the NLU (its normalised text, the ``certificate_topic`` entity the
lexicon fills for every way owners name a proxy, mail, documents or collection, a ``time`` entity for
"明天下午能去吗", the intent for thanks and yes) plus the desk's words for each aspect below; a message that
asks none of them, any emergency, and anything while a form is open falls through to the normal dialogue.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from actions.flows.base import Flow
from actions.flows.context import Ctx, house_text
from actions.flows.understand import AFFIRM, THANKS_ONLY
from actions.labels import UTILITY_LABELS
from actions.workflow import CHINA
from bot.store.models import Campaign, CertificateRecord, Delivery, House, Project

REACHED = ("sent", "delivered", "acknowledged")
MAX_LENGTH = 40
"""Longer messages are business of their own (a repair, a complaint), not a reply to a notice."""

_TAIL = r"[了啦拉勒咯喽嘞哒滴的啊呀哈哦喔噢嗯呢吧~～,，。.!！\s]*"  # typed in a hurry: 收到拉, 知道勒
ACK = re.compile(
    r"^(?:(?:收到|已收到|收悉|知道|知道了|晓得|明白|明白了|了解|清楚|好的?|好滴|好嘞|嗯+|恩+|ok|okay|k|行|可以|谢谢|多谢|感谢"
    r"|谢了|辛苦|辛苦了|看到了?|已阅|get|是的|没问题|懂了|记住了)" + _TAIL + r"(?:你们|您|大家)?" + _TAIL + r")+$"
)
QUESTION = re.compile(r"[?？吗么呢]|怎么|什么|啥|几|哪|能不能|可不可以|可以不|行不行|是不是|有没有|多久|多长|为什么|为啥|咋")

# --- certificate notices: what the owner asks about collecting --------------------------------------
PROXY = re.compile(r"代领|代取|代办|代拿|委托|授权|帮我?(?:去)?(?:领|拿|取)|替我?(?:去)?(?:领|拿|取)"
                   r"|(?:让|叫|请|找|派)[^，,。]{0,6}(?:去|来|帮)?(?:领|拿|取)|(?:别人|他人|家人|家里人|亲戚|朋友|老婆|老公|爱人"
                   r"|媳妇|丈夫|妻子|儿子|女儿|孩子|爸|妈|父母|同事)[^，,。]{0,4}(?:去|来|帮|代)?(?:领|拿|取)|本人不能|本人没空|本人去不了"
                   r"|自己去不了|我去不了|没空去|没时间去")
MAIL = re.compile(r"寄|邮|快递|顺丰|ems|送上门|送到家|送过来")
DOCUMENTS = re.compile(r"带什么|带啥|带哪些|要带|需要带|得带|准备什么|准备啥|什么材料|哪些材料|材料|资料|证件|身份证|户口本|原件|复印件|手续")
HOURS = re.compile(r"几点|什么时候|啥时候|何时|时间|周末|周六|周日|星期|礼拜|节假日|假期|上班|下班|营业|开门|中午|午休|晚上|早上|上午|下午"
                   r"|今天|明天|后天|几号|哪天|哪一天|随时|能去|可以去|过去|多久有效|截止|期限|过期")
PLACE = re.compile(r"哪里|哪儿|哪边|在哪|去哪|什么地方|啥地方|地址|地点|位置|怎么走|哪个(?:办公室|地方|楼|窗口)|哪栋|服务中心|客服中心")
COLLECT = re.compile(r"领|拿|取")

# --- outage notices: what the owner asks about the cut ---------------------------------------------
UTILITY_WORDS = {"water": "水", "power": "电", "gas": "气"}
RESTORE = re.compile(r"(?:来|通|恢复|供|有)(?:水|电|气)|什么时候(?:好|恢复|结束|能用|可以用|通)|(?:几点|多久|多长时间|何时|啥时候|什么时候)"
                     r"(?:能|可以|才|会)?(?:好|恢复|结束|来|有|通|用)|停多久|停多长|要停|停到|到几点|多久|多长时间|持续|几天|几个小时|还要停")
WHY = re.compile(r"为什么|为啥|怎么回事|咋回事|怎么又|咋又|什么原因|啥原因|原因|干嘛|干什么停|怎么停|凭什么")
START = re.compile(r"(?:什么时候|啥时候|几点|哪天|几号|何时)(?:开始)?停|几点开始|什么时候开始|从几点")
AREA = re.compile(r"哪些|哪几|哪里停|范围|区域|我家(?:也|会|要)|我们(?:楼|栋|单元)(?:也|会|要)?|(?:\d+|几)(?:栋|号楼|单元)(?:也|会|要)?|影响|全小区|整个小区")
OUTAGE_WORDS = re.compile(r"停水|停电|停气|断水|断电|断气|没水|没电|没气|来水|来电|来气|供水|供电|供气|燃气|水|电|气|通知|维修|检修|施工")
REPAIR_CUES = re.compile(r"漏|坏|堵|爆|修一下|来修|报修|冒烟|跳闸")
"""A message about a fault in the home is a repair, even the day of an outage notice."""


@dataclass(frozen=True, slots=True)
class Notice:
    delivery: Delivery
    campaign: Campaign


class NoticeReplyFlow(Flow):
    name = "notice_reply"
    priority = 55
    """After SMS opt-out (60) and emergencies (90, 100); before ticket progress (50), whose "什么时候来"
    would otherwise take "什么时候来水", and before hand-over (40) and the certificate flow (20)."""

    async def intercept(self, ctx: Ctx) -> list[str] | None:
        if ctx.form is not None or not ctx.bound or ctx.entity("urgency") is not None:
            return None
        text = normalised(ctx)
        if not text or len(text) > MAX_LENGTH:
            return None
        ack = is_acknowledgement(ctx, text)
        certificate_asked, outage_asked = certificate_aspects(ctx, text), outage_aspects(ctx, text)
        if not (ack or certificate_asked or outage_asked):
            return None  # words no reply to a notice has: the normal dialogue answers, without a query
        notice = await last_notice(ctx)
        if notice is None:
            return None
        if ack:
            if notice.delivery.status == "acknowledged":
                return None  # said once; another "好的" is ordinary small talk
            return [await self.acknowledge(ctx, notice)]
        if notice.campaign.kind == "certificate_collection":
            if other_business(ctx, text, CERTIFICATE_TOPICS):
                return None
            return [await self.certificate_answer(ctx, notice, certificate_asked)] if certificate_asked else None
        if notice.campaign.kind == "outage":
            if other_business(ctx, text, OUTAGE_TOPICS) or REPAIR_CUES.search(text):
                return None
            return [outage_answer(ctx, notice, outage_asked)] if outage_asked else None
        return None

    async def acknowledge(self, ctx: Ctx, notice: Notice) -> str:
        await ctx.session.execute(
            sa.update(Delivery).where(Delivery.campaign_id == notice.campaign.id,
                                      Delivery.owner_id == notice.delivery.owner_id,
                                      Delivery.status.in_(("sent", "delivered")))
            .values(status="acknowledged", acknowledged_at=ctx.now, updated_at=ctx.now)
            .execution_options(synchronize_session=False))
        if notice.campaign.kind == "certificate_collection":
            d = await collection_details(ctx, notice)
            if d.collected:
                return "好的，感谢您的确认。您的证书已办理领取，如有疑问请随时留言。"
            return (f"好的，已记录您收到领证通知。请于{d.hours}到{d.place}领取，请携带{d.documents}"
                    "如需代领、邮寄或有其他问题，直接留言问我即可。")
        if notice.campaign.kind == "outage":
            tip = {"water": "请提前储水，停水期间关好家中水龙头", "power": "请提前做好准备，停电期间关闭家中电器开关",
                   "gas": "请提前做好准备，停气期间关闭家中燃气阀门"}.get(str((notice.campaign.params or {}).get("utility")),
                                                                       "请提前做好准备")
            return f"好的，感谢您的确认。{tip}；有疑问请随时留言。"
        return "好的，感谢您的确认，有需要随时留言。"

    async def certificate_answer(self, ctx: Ctx, notice: Notice, asked: list[str]) -> str:
        d = await collection_details(ctx, notice)
        if d.collected:
            return f"您{d.house}的证书已于{d.collected_at}办理领取（{d.collector}）。如有疑问，请回复“转人工”。"
        parts = []
        for aspect in asked:
            if aspect == "proxy":
                parts.append(f"可以代领：{d.proxy}")
            elif aspect == "mail":
                parts.append(d.mail)
            elif aspect == "documents":
                parts.append(f"领取时请携带：{d.documents}")
            elif aspect == "hours":
                parts.append(f"领取时间：{d.hours}")
            elif aspect == "place":
                parts.append(f"领取地点：{d.place}")
        if "hours" not in asked and "place" not in asked and "mail" not in asked:
            parts.append(f"领取时间和地点：{d.hours}，{d.place}")
        return f"关于您{d.house}的证书领取：" + "\n".join(parts)


CERTIFICATE_TOPICS = frozenset({"certificate"})
OUTAGE_TOPICS = frozenset({"plumbing", "electrical", "gas", "public_facility", "hvac"})
CERT_WORDS = re.compile(r"证|领|代领|委托|寄|邮")
MAIL_ASK = re.compile(r"(?:能|可以|可不可以|能不能|可否|支持|给我|帮我)[^，,。]{0,3}(?:寄|邮|快递|顺丰|ems)"
                      r"|(?:寄|邮寄|快递|顺丰)(?:过来|给我|到家|回家|吗|不|么|行不|可以)")
"""Asking for the certificate by post ("可以快递吗"), not about a parcel ("我的快递到了吗")."""
DESK_OPEN = re.compile(r"开门|营业|上班|下班|关门|休息|周末|周六|周日|星期[六天日]|礼拜[六天日]|节假日|放假"
                       r"|(?:能|可以|什么时候|啥时候|几点|哪天)(?:过?去|来)(?!修)")
"""Whether the counter is open, when to go: after a certificate notice, about collecting (not a door)."""


def other_business(ctx: Ctx, text: str, topics: frozenset[str]) -> bool:
    """The message is about something else (fees, parking, a repair in the home, a complaint): the
    normal dialogue takes it, whatever notice came last."""
    parse = ctx.parse
    if parse is None:
        return False
    if "certificate" in topics and (CERT_WORDS.search(text) or PROXY.search(text) or DOCUMENTS.search(text)
                                    or MAIL_ASK.search(text)
                                    or (DESK_OPEN.search(text) and not REPAIR_CUES.search(text))):
        # "要带购房合同吗": a contract is sales business to the topic model, a document here; "周六开门不",
        # "几点能去", "可以快递吗": the counter's hours and the post, not a door repair or a parcel
        return False
    if parse.topic is not None and parse.topic not in topics:
        return True
    if "certificate" in topics:
        if parse.entity("repair_category") is not None or parse.entity("complaint_category") is not None:
            return True
        return parse.intent in ("repair", "complaint", "human") and parse.confidence >= 0.6
    # After an outage notice "为什么又停水" reads as a complaint and still asks about the notice; a fault
    # in the home (REPAIR_CUES) and a request for a person go to the normal dialogue.
    return parse.intent == "human" and parse.confidence >= 0.6


def normalised(ctx: Ctx) -> str:
    parse = ctx.parse
    text = (parse.normalized if parse is not None and parse.normalized else ctx.text) or ""
    return text.strip().lower()


def is_acknowledgement(ctx: Ctx, text: str) -> bool:
    if QUESTION.search(text):
        return False
    if ACK.match(text) or AFFIRM.match(ctx.text) or THANKS_ONLY.match(ctx.text):
        return True
    parse = ctx.parse
    return parse is not None and parse.intent in ("affirm", "thanks") and parse.confidence >= 0.6 and len(text) <= 12


def certificate_aspects(ctx: Ctx, text: str) -> list[str]:
    """What a reply to a certificate notice asks: proxy, mail, documents, hours, place (in that order)."""
    topics = {e.value for e in (ctx.parse.entities_of("certificate_topic") if ctx.parse else [])}
    asked = []
    if "proxy" in topics or PROXY.search(text):
        asked.append("proxy")
    if "mail" in topics or MAIL_ASK.search(text) or (MAIL.search(text) and not re.search(r"快递[^，,。]{0,3}(?:到|在|取)", text)):
        asked.append("mail")
    if "documents" in topics or DOCUMENTS.search(text):
        asked.append("documents")
    question = bool(QUESTION.search(text)) or ctx.intent in ("inquiry", "certificate")
    if HOURS.search(text) or (ctx.entity("time") is not None and question):
        asked.append("hours")
    if PLACE.search(text):
        asked.append("place")
    if (not asked and "collection" in topics) or (not asked and question and COLLECT.search(text)):
        asked += ["hours", "place", "documents"]  # "怎么领" / "能领了吗": the whole of it
    return asked if asked and (question or "proxy" in asked or "mail" in asked or len(text) <= 12) else []


@dataclass(frozen=True, slots=True)
class Details:
    house: str
    place: str
    hours: str
    documents: str
    proxy: str
    mail: str
    collected: bool = False
    collected_at: str = ""
    collector: str = ""


DEFAULT_DOCUMENTS = "所有产权人的身份证原件和领证通知（或办证收件回执）。"
DEFAULT_PROXY = "请代领人携带业主签字的委托书、业主身份证原件和代领人本人身份证原件办理。"
DEFAULT_MAIL = "目前不提供邮寄，需到现场签收领取；本人不便时可委托他人代领。"


async def collection_details(ctx: Ctx, notice: Notice) -> Details:
    """The owner's collection details: their record's place and hours, then the campaign's, then the project's."""
    params: dict[str, Any] = dict(notice.campaign.params or {})
    record, house, project = None, None, None
    if notice.delivery.house_id is not None:
        house = await ctx.session.scalar(sa.select(House).where(House.id == notice.delivery.house_id)
                                         .options(joinedload(House.building)))
        record = await ctx.session.scalar(
            sa.select(CertificateRecord).where(CertificateRecord.house_id == notice.delivery.house_id))
    if notice.campaign.project_id is not None:
        project = await ctx.session.get(Project, notice.campaign.project_id)
    own = ((project.settings if project else None) or {}).get("certificate_collection") or {}
    label = house_text(house) if house is not None else ""

    def pick(*values: Any) -> str:
        return next((str(v).strip() for v in values if v not in (None, "") and str(v).strip()), "")

    mail = pick(params.get("mail"))
    details = Details(
        house=label,
        place=pick(record.collect_place if record else None, params.get("place"), own.get("place")) or "客服中心",
        hours=pick(record.collect_hours if record else None, params.get("hours"), own.get("hours")) or "工作日办公时间",
        documents=_sentence(pick(params.get("documents"), own.get("documents")) or DEFAULT_DOCUMENTS),
        proxy=_sentence(pick(params.get("proxy"), own.get("proxy")) or DEFAULT_PROXY),
        mail=("可以邮寄：" + _sentence(mail)) if mail and not mail.startswith(("不", "暂不", "无")) else
        (_sentence(mail) if mail else DEFAULT_MAIL),
    )
    if record is not None and record.status in ("collected", "mailed"):
        when = record.collected_at.astimezone(CHINA).strftime("%Y年%m月%d日") if record.collected_at else ""
        who = "邮寄" if record.status == "mailed" else (record.collector_name or "已领取")
        return Details(**{**_asdict(details), "collected": True, "collected_at": when, "collector": who})
    return details


def _asdict(d: Details) -> dict[str, Any]:
    return {f: getattr(d, f) for f in d.__dataclass_fields__}


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith(("。", "！", "？", ".")) else text + "。"



# --- outage --------------------------------------------------------------------------------------


def outage_aspects(ctx: Ctx, text: str) -> list[str]:
    """What a reply to an outage notice asks: restore, start, why, area (in that order)."""
    asked = []
    if RESTORE.search(text):
        asked.append("restore")
    if START.search(text):
        asked.append("start")
    if WHY.search(text):
        asked.append("why")
    if AREA.search(text):
        asked.append("area")
    if not asked and QUESTION.search(text) and OUTAGE_WORDS.search(text):
        asked = ["start", "restore", "area", "why"]
    return asked


def _when(value: Any) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=CHINA)


def _fmt(when: dt.datetime | None, raw: Any) -> str:
    if when is None:
        return str(raw or "另行通知")
    local = when.astimezone(CHINA)
    return f"{local.month}月{local.day}日{local:%H:%M}"


def outage_answer(ctx: Ctx, notice: Notice, asked: list[str]) -> str:
    p: dict[str, Any] = dict(notice.campaign.params or {})
    what = UTILITY_LABELS.get(str(p.get("utility") or ""), "水电")
    word = {"燃气": "气"}.get(what, what)
    start, end = _when(p.get("start")), _when(p.get("end"))
    area = str(p.get("area") or "相关区域")
    parts = []
    for aspect in asked:
        if aspect == "restore":
            if end is not None and end <= ctx.now:
                parts.append(f"按计划已于{_fmt(end, p.get('end'))}恢复供{word}。如您家仍没有{word}，请回复“报修”并说明情况，我们马上安排。")
            elif start is not None and ctx.now < start:  # asked before the cut: say it has not begun
                parts.append(f"目前还没有停{word}；本次停{word}从{_fmt(start, p.get('start'))}开始，"
                             f"预计{_fmt(end, p.get('end'))}恢复供{word}，如有提前或延后会另行通知。")
            else:
                parts.append(f"预计{_fmt(end, p.get('end'))}恢复供{word}，如有提前或延后会另行通知。")
        elif aspect == "start" and start is None:  # a sudden cut: it has started, only its end is known
            parts.append(f"目前已停{word}，预计{_fmt(end, p.get('end'))}恢复。")
        elif aspect == "start":
            parts.append(f"停{word}时间：{_fmt(start, p.get('start'))}至{_fmt(end, p.get('end'))}。")
        elif aspect == "why":
            parts.append(f"停{word}原因：{p.get('reason') or '设备检修'}。")
        elif aspect == "area":
            parts.append(f"影响范围：{area}。")
    return f"关于本次停{word}通知：" + "".join(parts) + "给您带来不便，敬请谅解。"


# --- what the bot last sent ------------------------------------------------------------------------


async def last_notice(ctx: Ctx) -> Notice | None:
    """The owner's latest delivery that reached them within the reply window, with its campaign."""
    owner_id = ctx.identity.owner_id
    days = float(ctx.desk.runtime.settings.campaign_reply_days)
    if owner_id is None or days <= 0:
        return None
    since = ctx.now - dt.timedelta(days=days)
    when = sa.func.coalesce(Delivery.sent_at, Delivery.created_at)
    row = (await ctx.session.execute(
        sa.select(Delivery, Campaign).join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(Delivery.owner_id == owner_id, Delivery.status.in_(REACHED), when >= since)
        .order_by(when.desc(), Delivery.id.desc()).limit(1)
    )).first()
    return Notice(row[0], row[1]) if row is not None else None
