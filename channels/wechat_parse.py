"""Parsing WeChat's XML (`接收普通消息`_, `接收事件推送`_) into an :class:`~channels.base.InboundMessage`.

Every document is first checked with ``defusedxml`` with DTDs forbidden (WeChat never sends one), so no
entity expansion or external entity reaches ``xmltodict``/wechatpy. The fields are read as plain strings
from xmltodict's dict of the document — for WeChat's flat documents built straight from that checked
element tree (:func:`flat_fields`: the same dict, without parsing the XML twice more) — and the type is
wechatpy's (its message class for a message type, ``parse_message`` for an event). Anything WeChat would never send -- an openid
or MsgId that is too long or not printable ASCII (it would not fit the engine's id columns), a
``CreateTime`` beyond ten digits, a non-finite coordinate -- is a :class:`Rejected` 400, never an error
further on. Unknown message types become ``kind="unknown"``. The webhook itself is :mod:`channels.wechat`.

.. _接收普通消息: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html
.. _接收事件推送: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_event_pushes.html
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import re
from collections.abc import Mapping
from typing import Any, NoReturn
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
import xmltodict
from defusedxml import DefusedXmlException
from wechatpy import parse_message
from wechatpy.events import BaseEvent
from wechatpy.messages import (
    MESSAGE_TYPES,
    ImageMessage,
    LinkMessage,
    LocationMessage,
    ShortVideoMessage,
    TextMessage,
    UnknownMessage,
    VideoMessage,
    VoiceMessage,
)

from channels.base import InboundMessage, MessageKind

log = logging.getLogger("yezhu.wechat")

_CREATE_TIME_RE = re.compile(r"[0-9]{1,10}")  # Unix seconds: ten digits last until the year 2286
# What an openid and a MsgId may look like: WeChat's openids are 28 URL-safe base64 characters and MsgIds
# 64-bit numbers; anything longer or outside printable ASCII is not from WeChat (and would not fit the
# 100-character id columns the engine stores it in: PostgreSQL refuses it, and WeChat retried forever).
MAX_SENDER = 64
MAX_MSG_ID = 64
_ID_RE = re.compile(r"[\x21-\x7e]+")


class Rejected(Exception):
    """A request we refuse: ``status`` goes to WeChat, ``reason`` to the log and the metrics hook."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.detail = detail


def reject(status: int, reason: str, detail: str = "") -> NoReturn:
    raise Rejected(status, reason, detail)


def mask_openid(openid: str | None) -> str:
    """An openid as it may appear in a log line: the first 4 characters and ``***``."""
    if not openid:
        return "-"
    return f"{openid[:4]}***"


def parse_safely(document: bytes, what: str) -> Element:
    """Parse ``document`` with DTDs, entities and external references forbidden (→ 400)."""
    try:
        root: Element = SafeET.fromstring(document, forbid_dtd=True)
    except DefusedXmlException as exc:
        reject(400, "forbidden_xml", f"{what}: {type(exc).__name__}")
    except (ParseError, ValueError) as exc:
        reject(400, "malformed_xml", f"{what}: {exc}")
    if root.tag != "xml":
        reject(400, "malformed_xml", f"{what}: root element <{root.tag[:40]}>")
    return root


def text_of(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    return value if isinstance(value, str) else ""


def _float_of(fields: Mapping[str, Any], name: str) -> float:
    try:
        value = float(text_of(fields, name))
    except ValueError:
        reject(400, "malformed_message", f"{name} is not a number")
    if not math.isfinite(value):  # "nan", "inf", "1e999": JSON cannot carry them (PostgreSQL refuses NaN)
        reject(400, "malformed_message", f"{name} is not a finite number")
    return value


def flat_fields(xml_text: str, root: Element) -> dict[str, Any] | None:
    """``xmltodict.parse(xml_text)["xml"]`` read off ``root``, the same document already parsed, when
    the document is as flat as WeChat's: ``<xml>`` holding only elements without attributes, children
    or repeated names. ``None`` for anything else (the caller then asks xmltodict itself).

    Both parsers are expat, so the text of an element is the same string; xmltodict strips it and makes
    an empty one ``None``. Anything whose dict or text could differ is left to xmltodict: a declaration
    (ElementTree honours its encoding, xmltodict reads the text as UTF-8), namespace declarations
    (attributes to xmltodict only), comments and processing instructions.
    """
    if "<?" in xml_text or "<!--" in xml_text or "xmlns" in xml_text or root.attrib or not len(root):
        return None
    fields: dict[str, Any] = {}
    loose = [root.text or ""]  # the root's own character data: xmltodict would keep it as "#text"
    for child in root:
        tag = child.tag
        if child.attrib or len(child) or tag in fields or not isinstance(tag, str):
            return None
        fields[tag] = (child.text or "").strip() or None
        loose.append(child.tail or "")
    return None if "".join(loose).strip() else fields


def parse_inbound(channel: str, account: str, xml_text: str, root: Element | None = None) -> InboundMessage:
    """Map one (already defused) WeChat XML document of ``account`` onto an :class:`InboundMessage`;
    ``root``: the document as :func:`parse_safely` parsed it, if at hand (saves parsing it again)."""
    # ``raw`` keeps exactly what WeChat sent: wechatpy's parser rewrites Event/EventKey in place
    # for ``qrscene_`` subscriptions, so it gets its own parse.
    fields = flat_fields(xml_text, root) if root is not None else None
    if fields is None:
        fields = xmltodict.parse(xml_text).get("xml")
    if not isinstance(fields, dict):
        reject(400, "malformed_message", "empty <xml>")
    sender = text_of(fields, "FromUserName")
    create_time = text_of(fields, "CreateTime")
    msg_type = text_of(fields, "MsgType").lower()
    if not sender or not msg_type or not _CREATE_TIME_RE.fullmatch(create_time):
        reject(400, "malformed_message", "FromUserName, CreateTime or MsgType missing")
    if len(sender) > MAX_SENDER or not _ID_RE.fullmatch(sender):
        reject(400, "malformed_message", f"FromUserName is not an openid ({len(sender)} characters)")
    if msg_type == "event" or msg_type.startswith("device_"):
        wx_type = type(parse_message(xml_text))  # wechatpy's event types (it may raise on a bad Event)
    else:
        wx_type = MESSAGE_TYPES.get(msg_type, UnknownMessage)  # what parse_message would construct

    kind: MessageKind = "unknown"
    text = ""
    media: dict[str, Any] = {}
    event: str | None = None
    msg_id = text_of(fields, "MsgId")

    # wechatpy's classes pick the type; values are read from ``fields`` as plain strings (a typed
    # accessor hands back a dict if someone nests elements where WeChat sends text).
    if issubclass(wx_type, TextMessage):
        kind, text = "text", text_of(fields, "Content")
    elif issubclass(wx_type, VoiceMessage):
        # Recognition is WeChat's own speech-to-text (语音识别), present when the account enabled it.
        kind, text = "voice", text_of(fields, "Recognition")
        media = {"media_id": text_of(fields, "MediaId"), "format": text_of(fields, "Format")}
    elif issubclass(wx_type, ImageMessage):
        kind = "image"
        media = {"pic_url": text_of(fields, "PicUrl"), "media_id": text_of(fields, "MediaId")}
    elif issubclass(wx_type, LocationMessage):
        kind, text = "location", text_of(fields, "Label")
        media = {
            "lat": _float_of(fields, "Location_X"),  # Location_X is the latitude (纬度)
            "lng": _float_of(fields, "Location_Y"),
            "scale": _float_of(fields, "Scale") if fields.get("Scale") else None,
            "label": text,
        }
    elif issubclass(wx_type, LinkMessage):
        kind = "link"
        title, description = text_of(fields, "Title"), text_of(fields, "Description")
        text = "\n".join(part for part in (title, description) if part)
        media = {"url": text_of(fields, "Url")}
    elif issubclass(wx_type, VideoMessage | ShortVideoMessage):
        kind = "video"
        media = {
            "media_id": text_of(fields, "MediaId"),
            "thumb_media_id": text_of(fields, "ThumbMediaId"),
            "type": msg_type,
        }
    elif msg_type == "event" and text_of(fields, "Event"):
        kind = "event"
        event = text_of(fields, "Event").lower()
        text, media = _event_details(event, fields)
        msg_id = ""  # events carry no MsgId; see below
    if msg_id and (len(msg_id) > MAX_MSG_ID or not _ID_RE.fullmatch(msg_id)):
        reject(400, "malformed_message", f"MsgId is not a message id ({len(msg_id)} characters)")
    if not msg_id:
        # Events (and the odd message without MsgId): WeChat's docs say to de-duplicate them on
        # FromUserName + CreateTime; the event name keeps two events of the same second apart.
        msg_id = f"{sender}:{create_time}:{event or msg_type}"
        if len(msg_id) > MAX_MSG_ID:  # an odd event or type name: a digest keeps the id short and unique
            msg_id = "h:" + hashlib.sha256(msg_id.encode()).hexdigest()[:48]
    if kind == "unknown" and not issubclass(wx_type, BaseEvent):
        log.info(
            "wechat %s: unknown message type %r from %s", account, msg_type[:40], mask_openid(sender)
        )

    return InboundMessage(
        channel=channel,
        account=account,
        sender=sender,
        msg_id=msg_id,
        kind=kind,
        text=text,
        media=media,
        event=event,
        received_at=dt.datetime.fromtimestamp(int(create_time), dt.UTC),
        raw=fields,
    )

def _event_details(event: str, fields: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(text, media)`` of an event (`接收事件推送`_; `自定义菜单事件`_).

    https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_event_pushes.html
    https://developers.weixin.qq.com/doc/offiaccount/Custom_Menus/Custom_Menu_Push_Events.html
    """
    media: dict[str, Any] = {}
    event_key = text_of(fields, "EventKey")
    if event_key:
        media["event_key"] = event_key
    if ticket := text_of(fields, "Ticket"):
        media["ticket"] = ticket
    text = ""
    if event == "subscribe" and event_key.startswith("qrscene_"):
        media["scene"] = event_key[len("qrscene_") :]  # 扫描带参数二维码关注
    elif event == "scan":
        media["scene"] = event_key
    elif event == "click":
        text = event_key
    elif event == "view":
        media["url"] = event_key
        if menu_id := text_of(fields, "MenuId"):
            media["menu_id"] = menu_id
    elif event == "templatesendjobfinish":
        # 模板消息发送结果: MsgID is the template send's msgid, Status ``success`` | ``failed:user block`` |
        # ``failed: system failed`` (模板消息接口, 事件推送).
        media["msg_id"] = text_of(fields, "MsgID") or text_of(fields, "MsgId")
        media["status"] = text_of(fields, "Status")
    elif event == "location":
        media.update(
            lat=_float_of(fields, "Latitude"),
            lng=_float_of(fields, "Longitude"),
            precision=_float_of(fields, "Precision") if fields.get("Precision") else None,
        )
    return text, media
