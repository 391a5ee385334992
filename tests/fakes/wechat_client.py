"""Plays WeChat's server calling our ``/wechat/{account}`` URL on behalf of one owner (业主).

Builds requests exactly as WeChat does -- the XML of its documentation samples, the query string
(``signature``, ``timestamp``, ``nonce``, ``openid``; plus ``encrypt_type=aes`` and ``msg_signature`` in
compatible and safe mode), the body encrypted with wechatpy's crypto -- and reads our answers back the
way WeChat would (``success``, or a passive reply, decrypted and its ``MsgSignature`` checked).

    owner = WeChatOwner(client, token="t", app_id="wx…", aes_key=None, openid="oDEMO0001")
    reply = await owner.send_text("卫生间漏水")       # the passive reply's text, or None for "success"
    response = await owner.post(xml, mode="safe")     # the raw WeChatResponse (any status)

``client`` is pytest-aiohttp's ``aiohttp_client(app)`` (an ``aiohttp.test_utils.TestClient``) or any
object with the same ``get``/``post`` taking a path.

Docs: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html
https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_event_pushes.html
https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Message_encryption_and_decryption_instructions.html
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from wechatpy.crypto import PrpCrypto, WeChatCrypto

Mode = Literal["plain", "compat", "safe"]
MODES: tuple[Mode, ...] = ("plain", "compat", "safe")

# WeChat MsgIds are 64-bit and unique; start somewhere unlikely to repeat between test runs.
_msg_ids = itertools.count(time.time_ns() // 1000)


def cdata(value: object) -> str:
    """``value`` as a CDATA section (``]]>`` split across two sections, as a careful sender does)."""
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def sign(*parts: str) -> str:
    """WeChat's SHA-1 signature over the sorted, concatenated parts."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class WeChatResponse:
    """What our server answered."""

    status: int
    body: str
    content_type: str

    @property
    def is_success(self) -> bool:
        """``200 success`` (or an empty 200): received, no passive reply."""
        return self.status == 200 and self.body.strip() in ("success", "")


class WeChatReplyError(Exception):
    """Our server answered something WeChat would not accept (a non-200, a bad signature, …)."""

    def __init__(self, message: str, response: WeChatResponse) -> None:
        super().__init__(f"{message}: HTTP {response.status} {response.body[:200]!r}")
        self.response = response


class WeChatOwner:
    """One owner's WeChat, talking to our OA account ``account`` through WeChat's servers.

    ``mode`` defaults to ``"safe"`` when ``aes_key`` is given, else ``"plain"``; ``oa_id`` is the
    account's original id (gh_…) WeChat puts in ``ToUserName``; ``clock`` gives the Unix time used for
    ``timestamp`` and ``CreateTime``.
    """

    def __init__(
        self,
        client: Any,
        *,
        token: str,
        app_id: str,
        aes_key: str | None = None,
        openid: str = "oDEMO0001",
        account: str = "default",
        mode: Mode | None = None,
        oa_id: str = "gh_0123456789ab",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.token = token
        self.app_id = app_id
        self.aes_key = aes_key
        self.openid = openid
        self.account = account
        self.mode: Mode = mode or ("safe" if aes_key else "plain")
        self.oa_id = oa_id
        self.clock = clock
        if self.mode != "plain" and not aes_key:
            raise ValueError(f"{self.mode} mode needs an EncodingAESKey")

    @property
    def path(self) -> str:
        return f"/wechat/{self.account}"

    # -- XML as WeChat writes it ------------------------------------------------------------------

    def _envelope(
        self,
        msg_type: str,
        body: str,
        *,
        create_time: int | None = None,
        msg_id: int | Literal[False] | None = None,
    ) -> str:
        create_time = int(self.clock()) if create_time is None else create_time
        lines = [
            "<xml>",
            f"  <ToUserName>{cdata(self.oa_id)}</ToUserName>",
            f"  <FromUserName>{cdata(self.openid)}</FromUserName>",
            f"  <CreateTime>{create_time}</CreateTime>",
            f"  <MsgType>{cdata(msg_type)}</MsgType>",
            body,
        ]
        if msg_id is not False:
            lines.append(f"  <MsgId>{next(_msg_ids) if msg_id is None else msg_id}</MsgId>")
        lines.append("</xml>")
        return "\n".join(line for line in lines if line)

    def text_xml(self, text: str, **kw: Any) -> str:
        return self._envelope("text", f"  <Content>{cdata(text)}</Content>", **kw)

    def voice_xml(
        self, media_id: str = "media_id", fmt: str = "amr", recognition: str | None = None, **kw: Any
    ) -> str:
        body = f"  <MediaId>{cdata(media_id)}</MediaId>\n  <Format>{cdata(fmt)}</Format>"
        if recognition is not None:
            body += f"\n  <Recognition>{cdata(recognition)}</Recognition>"
        return self._envelope("voice", body, **kw)

    def image_xml(
        self, pic_url: str = "http://mmbiz.qpic.cn/demo.jpg", media_id: str = "media_id", **kw: Any
    ) -> str:
        return self._envelope(
            "image", f"  <PicUrl>{cdata(pic_url)}</PicUrl>\n  <MediaId>{cdata(media_id)}</MediaId>", **kw
        )

    def location_xml(self, lat: float, lng: float, label: str = "", scale: int = 15, **kw: Any) -> str:
        body = (
            f"  <Location_X>{lat}</Location_X>\n  <Location_Y>{lng}</Location_Y>\n"
            f"  <Scale>{scale}</Scale>\n  <Label>{cdata(label)}</Label>"
        )
        return self._envelope("location", body, **kw)

    def link_xml(self, title: str, description: str, url: str, **kw: Any) -> str:
        body = (
            f"  <Title>{cdata(title)}</Title>\n  <Description>{cdata(description)}</Description>\n"
            f"  <Url>{cdata(url)}</Url>"
        )
        return self._envelope("link", body, **kw)

    def event_xml(
        self,
        event: str,
        *,
        event_key: str | None = None,
        ticket: str | None = None,
        extra: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> str:
        """An event push; ``event`` as WeChat spells it (``subscribe``, ``CLICK``, ``SCAN``, …)."""
        body = f"  <Event>{cdata(event)}</Event>"
        if event_key is not None:
            body += f"\n  <EventKey>{cdata(event_key)}</EventKey>"
        if ticket is not None:
            body += f"\n  <Ticket>{cdata(ticket)}</Ticket>"
        for name, value in (extra or {}).items():
            body += f"\n  <{name}>{value}</{name}>"
        return self._envelope("event", body, msg_id=False, **kw)

    # -- HTTP -----------------------------------------------------------------------------------

    def signed_request(
        self,
        xml: str | bytes,
        *,
        mode: Mode | None = None,
        timestamp: str | None = None,
        nonce: str | None = None,
        encrypt_app_id: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """``(query, body)`` of the POST WeChat would make for ``xml`` in ``mode``."""
        mode = mode or self.mode
        timestamp = timestamp or str(int(self.clock()))
        nonce = nonce or str(secrets.randbelow(10**10))
        raw = xml.encode("utf-8") if isinstance(xml, str) else xml
        query = {
            "signature": sign(self.token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": self.openid,
        }
        if mode == "plain":
            return query, raw
        if not self.aes_key:
            raise ValueError(f"{mode} mode needs an EncodingAESKey")
        encrypt = self.encrypt(raw, app_id=encrypt_app_id)
        query["encrypt_type"] = "aes"
        query["msg_signature"] = sign(self.token, timestamp, nonce, encrypt)
        if mode == "safe":
            body = (
                f"<xml>\n    <ToUserName>{cdata(self.oa_id)}</ToUserName>\n"
                f"    <Encrypt>{cdata(encrypt)}</Encrypt>\n</xml>"
            ).encode()
        else:  # compatible mode: the plaintext fields and the ciphertext side by side
            text = raw.decode("utf-8")
            head, sep, _ = text.rpartition("</xml>")
            if not sep:
                raise ValueError("compatible mode needs an <xml> document")
            body = f"{head}  <Encrypt>{cdata(encrypt)}</Encrypt>\n</xml>".encode()
        return query, body

    def encrypt(self, plaintext: str | bytes, *, app_id: str | None = None) -> str:
        """``Encrypt`` of ``plaintext`` for ``app_id`` (default ours), with wechatpy's PrpCrypto."""
        if not self.aes_key:
            raise ValueError("no EncodingAESKey")
        crypto = WeChatCrypto(self.token, self.aes_key, self.app_id)
        encrypted: bytes = PrpCrypto(crypto.key).encrypt(plaintext, app_id or self.app_id)
        return encrypted.decode("ascii")

    async def post(
        self,
        xml: str | bytes,
        *,
        mode: Mode | None = None,
        timestamp: str | None = None,
        nonce: str | None = None,
        encrypt_app_id: str | None = None,
        query: Mapping[str, str | None] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> WeChatResponse:
        """POST ``xml`` as WeChat would. ``query`` overrides parameters (``None`` removes one), ``body``
        replaces the (signed) body -- both for forging requests in tests."""
        params, signed_body = self.signed_request(
            xml, mode=mode, timestamp=timestamp, nonce=nonce, encrypt_app_id=encrypt_app_id
        )
        for key, value in (query or {}).items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        async with self.client.post(
            self.path,
            params=params,
            data=signed_body if body is None else body,
            headers={"Content-Type": "text/xml", **(headers or {})},
        ) as response:
            return WeChatResponse(response.status, await response.text(), response.content_type)

    async def verify_url(
        self,
        echostr: str = "4345523094418473491",
        *,
        timestamp: str | None = None,
        signature: str | None = None,
    ) -> WeChatResponse:
        """The GET WeChat makes when the server URL is saved in the back office."""
        timestamp = timestamp or str(int(self.clock()))
        nonce = str(secrets.randbelow(10**10))
        params = {
            "signature": signature or sign(self.token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": echostr,
        }
        async with self.client.get(self.path, params=params) as response:
            return WeChatResponse(response.status, await response.text(), response.content_type)

    # -- reading our answers --------------------------------------------------------------------

    def reply_fields(self, response: WeChatResponse, *, mode: Mode | None = None) -> dict[str, str] | None:
        """The passive reply's top-level fields, or ``None`` for ``success``.

        In compatible and safe mode the reply must be encrypted with a valid ``MsgSignature`` (checked
        in constant time); raises :class:`WeChatReplyError` for anything WeChat would refuse.
        """
        mode = mode or self.mode
        if response.status != 200:
            raise WeChatReplyError("not a 200", response)
        if response.is_success:
            return None
        fields = _flat_fields(response, response.body)
        if mode == "plain":
            if "Encrypt" in fields:
                raise WeChatReplyError("encrypted reply in plaintext mode", response)
            return fields
        try:
            encrypt, signature = fields["Encrypt"], fields["MsgSignature"]
            timestamp, nonce = fields["TimeStamp"], fields["Nonce"]
        except KeyError:
            raise WeChatReplyError("reply is not encrypted", response) from None
        expected = sign(self.token, timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise WeChatReplyError("bad MsgSignature on the reply", response)
        assert self.aes_key is not None
        plaintext = WeChatCrypto(self.token, self.aes_key, self.app_id).decrypt_message(
            {"Encrypt": encrypt}, signature, timestamp, nonce
        )
        return _flat_fields(response, plaintext)

    async def send(self, xml: str, *, mode: Mode | None = None) -> dict[str, str] | None:
        """Post ``xml``; the passive reply's fields or ``None`` (``success``)."""
        response = await self.post(xml, mode=mode)
        return self.reply_fields(response, mode=mode)

    async def send_text(self, text: str, *, mode: Mode | None = None) -> str | None:
        """The owner types ``text``; returns the bot's passive reply text, or ``None`` (``success``)."""
        return _text_of_reply(await self.send(self.text_xml(text), mode=mode))

    async def send_voice(
        self, recognition: str | None, *, media_id: str = "media_id", mode: Mode | None = None
    ) -> str | None:
        return _text_of_reply(await self.send(self.voice_xml(media_id, recognition=recognition), mode=mode))

    async def send_image(
        self,
        pic_url: str = "http://mmbiz.qpic.cn/demo.jpg",
        media_id: str = "media_id",
        *,
        mode: Mode | None = None,
    ) -> str | None:
        return _text_of_reply(await self.send(self.image_xml(pic_url, media_id), mode=mode))

    async def send_location(
        self, lat: float, lng: float, label: str = "", *, mode: Mode | None = None
    ) -> str | None:
        return _text_of_reply(await self.send(self.location_xml(lat, lng, label), mode=mode))

    async def send_link(
        self, title: str, description: str, url: str, *, mode: Mode | None = None
    ) -> str | None:
        return _text_of_reply(await self.send(self.link_xml(title, description, url), mode=mode))

    async def subscribe(self, scene: str | None = None, *, mode: Mode | None = None) -> str | None:
        """关注 (from a parametric QR code with ``scene``: ``EventKey=qrscene_{scene}`` + ``Ticket``)."""
        if scene is None:
            xml = self.event_xml("subscribe")
        else:
            xml = self.event_xml("subscribe", event_key=f"qrscene_{scene}", ticket="TICKET")
        return _text_of_reply(await self.send(xml, mode=mode))

    async def unsubscribe(self, *, mode: Mode | None = None) -> str | None:
        return _text_of_reply(await self.send(self.event_xml("unsubscribe"), mode=mode))

    async def click(self, key: str, *, mode: Mode | None = None) -> str | None:
        """Taps a CLICK menu button with ``key``."""
        return _text_of_reply(await self.send(self.event_xml("CLICK", event_key=key), mode=mode))


def _flat_fields(response: WeChatResponse, xml: str) -> dict[str, str]:
    try:
        root: Element = SafeET.fromstring(xml.encode("utf-8"), forbid_dtd=True)
    except Exception as exc:
        raise WeChatReplyError(f"reply is not valid XML ({exc})", response) from None
    if root.tag != "xml":
        raise WeChatReplyError("reply root is not <xml>", response)
    return {child.tag: child.text or "" for child in root}


def _text_of_reply(fields: Mapping[str, str] | None) -> str | None:
    if fields is None:
        return None
    if fields.get("MsgType") != "text":
        raise ValueError(f"not a text reply: {dict(fields)!r}")
    return fields.get("Content", "")
