"""Courtesy wrappers: greetings before and thanks after the business of a message.

This module owns the rule that "你好，我家漏水了，谢谢" is a repair, not a greeting: the opening greeting
and the closing thanks are cut off before the classifier sees the text, as long as something is left.
A message that is only courtesy ("你好", "好的谢谢") is left whole and classified as greet/thanks.
Training applies the same cut, so the model sees what it will see at run time.
Works on normalised text (lower case, ASCII punctuation).
"""

from __future__ import annotations

import re

__all__ = ["strip_courtesy"]

_SEP = r"[\s,.!?~;:]*"
_GREETING = re.compile(
    r"^(?:(?:你好|您好|你们好|大家好|在吗|在不在|在么|有人在吗|有人吗|哈喽|哈罗|嗨|hi|hello|hey|喂+|早上好|上午好|"
    r"中午好|下午好|晚上好|早安|早晨|打扰了|打扰一下|不好意思打扰了|不好意思|(?:物业|管家|客服|师傅|小助手)(?:你好|您好)"
    r")(?:物业|管家|客服|师傅)?[啊呀哈]?" + _SEP + r")+"
)
_THANKS_TAIL = re.compile(
    r"(?:" + _SEP + r"(?:非常感谢|十分感谢|感谢|谢谢你们|谢谢您|谢谢你|谢谢|多谢|谢了|谢啦|辛苦了|辛苦你们了|麻烦你们了|"
    r"麻烦你了|麻烦了|唔该晒|唔该|多谢晒|thanks|thank you|thx)(?:啊|哈|啦|了|哦|!)*)+" + _SEP + r"$"
)
_THANKS_HEAD = re.compile(r"^(?:好的|ok|嗯)?" + _SEP + r"(?:谢谢|多谢|感谢|thanks|唔该)(?:你|您)?" + r"[\s,.!?~;:]+")
# What must remain for the cut to count: a few Chinese characters or a Latin word, and not just an
# acknowledgement ("好的谢谢" is thanks, not affirm).
_SUBSTANCE = re.compile(r"[\u4e00-\u9fff]{2,}|[a-z]{3,}")
_ACK_ONLY = re.compile(
    r"^(?:(?:好的?|好吧|好滴|ok|okay|收到|知道了|明白了?|懂了|行|可以|没事了?|没问题|那|那就|就这样)[\s,.!~]*)+$"
)


def strip_courtesy(text: str) -> str:
    """``text`` without an opening greeting or closing thanks, if business remains; else ``text``."""
    core = _GREETING.sub("", text, count=1)
    core = _THANKS_TAIL.sub("", core, count=1)
    core = _THANKS_HEAD.sub("", core, count=1)
    core = core.strip(" ,.;:~")
    if core and core != text and _SUBSTANCE.search(core) and not _ACK_ONLY.match(core):
        return core
    return text
