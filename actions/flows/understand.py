"""Turn-level cues read before a message is taken as a slot value (issue 10, "Deliver 2").

Owners write short, colloquial, unpunctuated messages and change their minds. Inside a form every
message is checked, in this order, for: cancel (actions/flows/base.py ``CANCEL``), confirm, deny, a
correction of a slot already filled, a question, a new emergency, a request for a person, and the
progress of tickets already open. These patterns are the desk's vocabulary for those cues; the NLU's
intent is used beside them, never instead of them, because a two-character "好的" has no context.
"""

from __future__ import annotations

import re

from actions.flows.context import Ctx

_END = r"[的了吧啊呀哈嘛呢哦喔噢。！!,，.~～\s]*"
AFFIRM = re.compile(
    r"^(?:嗯+|恩+|en|好+|好的|好滴|好嘞|好吧|行|行的|可以|可以的|没问题|对|对的|对对|是|是的|确认|确定|提交|没错|正确|ok|OK|Ok|"
    r"yes|就这样|就这么办|就这样吧|可以了|没毛病|准确|无误|确认无误|同意|麻烦了|麻烦你了|辛苦了)"
    rf"{_END}(?:(?:谢谢|谢了|多谢|感谢|麻烦了|麻烦你们了|麻烦您了|辛苦了|尽快|快点|提交吧|报吧){_END})*$"
)
THANKS_ONLY = re.compile(rf"^(?:谢谢|谢了|多谢|感谢|thx|thanks){_END}(?:你|您|你们|啦)?{_END}$")
DENY = re.compile(
    rf"^(?:不对|不是|不行|错了|有错|不准确|不正确|no|No|不){_END}$|^(?:不对|错了|搞错了|写错了|说错了|不是这样)"
)
CORRECTION = re.compile(
    r"不对|不是|错了|搞错|写错|说错|改成|改为|改到|改一下|换成|换到|更正|应该是|其实是|准确说|我是说|我说的是|还是"
    r"|是.{1,12}不是|不是.{1,12}是"
)
HUMAN = re.compile(r"人工|真人|转人工|找客服|客服电话|找人|找个人|找你们领导|找经理|找主管|打电话给我|来个人")
PROGRESS = re.compile(
    r"(?:我的|我那个|我家的|我家那个|我报的|我们的)(?:报修|工单|投诉|单子|维修单|维修|修理单)(?!一下|个)"
    r"|(?:报修|工单|单子|维修单)(?:.{0,3})(?:有人管|有人理|管没|处理没|呢$)"
    r"|我的(?:报修|工单|投诉|单子)|(?:报修|工单|投诉|单子|维修)(?:的)?(?:进度|进展|结果|状态|情况)|进度|进展"
    r"|(?:修|弄|处理|搞|解决|办)好(?:了)?(?:没|吗|没有|了吗|了没)|(?:修|处理|解决)了(?:吗|没|没有)"
    r"|(?:怎么|咋)(?:样|么样)了|到哪(?:一步|了)|(?:有|派)(?:没有)?人(?:来|过来|上门)?(?:了)?(?:吗|没)"
    r"|什么时候(?:来|上门|过来|派人|能修|修)|啥时候(?:来|上门|过来|修)|还没(?:人)?(?:来|上门|联系)|还没(?:修|弄|处理|解决|搞)"
    r"|催(?:一下|一催|办|促)?|查(?:一下|询|查)?(?:我的)?(?:报修|工单|投诉|进度)|上次(?:报|说|反映)的"
)
STILL_BROKEN = re.compile(r"(?:还|又|仍然|依然|还是)(?:没|没有|不|在)(?:修好|好|解决|弄好|行)?|又坏了|又漏|又堵|又不|没修好|没弄好|修了又")
CERTIFICATE_WORDS = re.compile(r"房产证|不动产|产权证|房本|办证|领证|证书|大产证|小产证|的证|证办|证下来|证好了|证出来|本子")
CONSTRUCTION = re.compile(r"工程进度|施工|交房|交付|建设|封顶|盖到|装修进度|房子盖")
"""Buyers asking how the building is coming along: not a ticket's progress."""


def is_affirm(ctx: Ctx) -> bool:
    text = ctx.text
    if AFFIRM.match(text):
        return True
    parse = ctx.parse
    return parse is not None and parse.intent == "affirm" and len(text) <= 8 and not DENY.search(text)


def is_deny(ctx: Ctx) -> bool:
    text = ctx.text
    if DENY.search(text) and len(text) <= 6:
        return True
    parse = ctx.parse
    return parse is not None and parse.intent == "deny" and len(text) <= 6


def is_correction(text: str) -> bool:
    return bool(CORRECTION.search(text))


def asks_for_person(ctx: Ctx) -> bool:
    text = ctx.text
    if HUMAN.search(text) and len(text) <= 20:
        return True
    parse = ctx.parse
    return parse is not None and parse.intent == "human" and parse.confidence >= 0.6


def asks_progress(ctx: Ctx) -> bool:
    """"我的报修" / "修好没有" / "上次报的漏水修好没" / "进度查一下" / "怎么还没人来"…"""
    text = ctx.text
    topic = getattr(ctx.parse, "topic", None)
    if topic == "progress" and ctx.intent in ("repair", "complaint", "other", "inquiry"):
        return True
    if not PROGRESS.search(text) or CERTIFICATE_WORDS.search(text) or CONSTRUCTION.search(text):
        return False
    # "什么时候来" inside a new report ("卫生间漏水了 什么时候来修") is a new repair, not progress.
    if ctx.entity("urgency") is not None:
        return False
    return not (ctx.entity("repair_category") is not None and not re.search(
        r"(?:我的|我那个|我家的|我家那个|我报的)(?:报修|工单|单子|投诉|维修)|上次|之前|前几天|昨天|报的|报过|修好|进度|催|还没"
        r"|有人管|管没|处理没", text))


def rewrite_correction(description: str, text: str) -> str | None:
    """Apply "是卧室的墙 不是客厅" / "不是客厅是卧室" / "客厅改成卧室" to ``description``, or None."""
    clean = re.sub(r"^(?:不对|错了|搞错了|说错了|写错了)[，,。\s]*", "", text).strip()
    patterns = (
        r"(?:是|在)(?P<new>[^，,。\s]{1,10}?)(?:的[^，,。\s]{0,4})?[，,。\s]*(?:不是|而不是)(?P<old>[^，,。\s]{1,10})",
        r"不是(?P<old>[^，,。\s]{1,10}?)[，,。\s]*(?:而)?是(?P<new>[^，,。\s]{1,10})",
        r"(?P<old>[^，,。\s]{1,10}?)(?:改成|改为|换成)(?P<new>[^，,。\s]{1,10})",
    )
    for pattern in patterns:
        m = re.search(pattern, clean)
        if not m:
            continue
        old, new = m.group("old").rstrip("的"), m.group("new").rstrip("的")
        for candidate in (old, old[:2]):
            if candidate and candidate in description:
                return description.replace(candidate, new[:len(new)] if len(new) <= 6 else new, 1)
    return None
