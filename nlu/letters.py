"""Long letters and headlines: the formulae that carry no intent, and where the demand is.

This module owns the rule that a letter to a government message board or a 12345 hotline record is
decided on its substance, not on its politeness: salutations and formulae (尊敬的领导/书记/市长, 您好,
感谢您在百忙之中抽空阅读, 此致敬礼, 望回复, 谢谢) are cut before classification, as
:mod:`nlu.courtesy` cuts 你好 and 谢谢 from short messages. It also finds the *demand* — in a letter the
request usually comes last (恳请…, 希望…, 要求…, 请问…) — which the interpreter weighs together with
the whole text. Headlines (河北某小区逾期交房 至今未动工) are complete messages and pass unchanged.

Works on normalised text (Simplified, ASCII punctuation, lower case). Training applies the same cut.
"""

from __future__ import annotations

import re

__all__ = ["LONG_TEXT", "demand_part", "strip_formulae"]

# Texts at least this long (after the cut) with two or more sentences are read as letters.
LONG_TEXT = 40
# Formulae are cut only from texts at least this long; shorter ones are chat messages.
_MIN_LETTER = 16

_P = r"[\s,.!?:;~]*"
_ROLE = r"(?:领导|书记|市长|区长|县长|局长|主任|同志|工作人员|负责人|相关部门|有关部门|政府|网友|管家|物业|客服)(?:们)?(?:同志)?"
_ADDRESSEE = (
    r"(?:(?:尊敬的|敬爱的|亲爱的)(?:各位|各级)?[\u4e00-\u9fff]{0,10}?" + _ROLE + r"(?:你好|您好|你们好|好)?"
    r"|(?:各位|各级)?[\u4e00-\u9fff]{0,6}?" + _ROLE + r"(?:你好|您好|你们好|好))"
)
_OPENERS = re.compile(
    r"^(?:" + _P + r"(?:" + _ADDRESSEE + r"|你好|您好|你们好|大家好|打扰了|冒昧打扰|冒昧来信|"
    r"(?:非常|十分)?感谢(?:您|你们|领导)?(?:在)?百忙之中(?:抽空|抽出时间)?(?:查看|阅读|看|处理|关注)?(?:我的|此|这封|本)?"
    r"(?:留言|来信|信|信件|反映)?|"
    r"(?:我是|本人是|我们是)[^,.!?]{0,30}?(?:业主|居民|住户|购房者|购房户|市民)(?:之一)?|"
    r"(?:现|今|特|特此|想|我想|我要)?(?:向|给)(?:您|你们|领导|政府|各位)(?:反映|反应|咨询|举报|投诉)(?:一下|一个|一件)?"
    r"(?:情况|问题|事情|事)?(?:如下)?)" + _P + r")+"
)
_CLOSERS = re.compile(
    r"(?:" + _P + r"(?:此致|敬礼|此致敬礼|祝(?:您|领导|各位)?(?:工作顺利|身体健康|万事如意|生活愉快)[^,.!?]{0,10}|"
    r"(?:盼|望|期待|希望|恳请|请)(?:领导|政府|相关部门|有关部门)?(?:尽快|早日|及时)?(?:给予|予以)?(?:回复|答复|回信|回音)|"
    r"(?:谢谢|感谢|多谢|非常感谢|十分感谢|万分感谢|感激不尽|不胜感激)(?:您|你们|领导|政府|各位)?(?:的)?(?:关注|帮助|支持|"
    r"理解|处理|回复)?|辛苦了|麻烦了|拜托了|急盼回复|盼复|望复|静候佳音|期待回复|在线等|急)(?:啊|了|!)*)+" + _P + r"$"
)
_SENTENCE = re.compile(r"[^.!?;\n]+[.!?;\n]*")
# What must remain after the cut: six Chinese characters (a regex, so a long letter is not walked in Python).
_SUBSTANCE = re.compile(r"(?:[^\u4e00-\u9fff]*[\u4e00-\u9fff]){6}")
_DEMAND = re.compile(
    r"恳请|恳求|请求|希望|要求|请问|请|望|盼|能否|能不能|可否|是否|何时|什么时候|为什么|为何|怎么办|如何|督促|责令|"
    r"给个说法|讨个说法|解决|处理|维修|尽快|\?"
)


# Words that open a demand or a question inside a sentence (…,请问业主个人办理需要提交哪些材料?).
_DEMAND_START = re.compile(r"恳请|恳求|请求|希望|要求|请问|想问|想咨询|想了解|能否|可否|为什么|为何|何时")


def strip_formulae(text: str) -> str:
    """The message without opening salutations/self-introductions and closing formulae, when
    something substantial remains; otherwise the text unchanged."""
    if len(text) < _MIN_LETTER:
        return text  # short messages: nlu.courtesy handles 你好/谢谢
    cut = _OPENERS.sub("", text, count=1)
    cut = _CLOSERS.sub("", cut, count=1)
    if _SUBSTANCE.match(cut):
        return cut
    return text


def demand_part(text: str) -> str | None:
    """For a letter (long, several sentences): its last sentence(s) that state a demand or ask a
    question; ``None`` for short texts and headlines."""
    if len(text) < LONG_TEXT:
        return None
    sentences = [s.strip() for s in _SENTENCE.findall(text) if s.strip()]
    if len(sentences) < 2:
        # One long sentence (commas only): the demand is what follows its last demand marker.
        last = None
        for m in _DEMAND_START.finditer(text):
            last = m
        if last is None or last.start() < len(text) // 3:
            return None
        return text[last.start():]
    tail = sentences[-3:]
    with_demand = [s for s in tail if _DEMAND.search(s)]
    picked = with_demand[-2:] if with_demand else tail[-1:]
    demand = "".join(picked)
    return demand if len(demand) < len(text) else None
