"""WeChat Official Account (公众号) inbound channel: the server URL ``GET|POST /wechat/{account}``.

This module owns everything between WeChat's HTTP request and the engine:

* **Verification** (`接入指南`_): ``signature = sha1(sort(token, timestamp, nonce))``, compared in
  constant time (wechatpy's ``check_signature`` uses ``!=``), plus a timestamp window so a captured
  request cannot be replayed later. In safe mode (`消息加解密`_) the body's ``Encrypt`` is covered by
  ``msg_signature`` as well, and the decrypted payload must name our AppId.
* **Decoding**: plaintext, compatible (明文 + ``Encrypt`` side by side) and safe mode. Every XML document
  -- the raw body and, in safe mode, the decrypted payload -- is first checked with ``defusedxml`` with
  DTDs forbidden (WeChat never sends one), so no entity expansion or external entity reaches
  ``xmltodict``/wechatpy.
* **Parsing** (`接收普通消息`_, `接收事件推送`_) with wechatpy's message types into a frozen
  :class:`~channels.base.InboundMessage`, in :mod:`channels.wechat_parse`, from the element tree the
  defused parser built (WeChat's flat documents are not parsed again). Unknown message types become
  ``kind="unknown"``.
* **Answering**: the engine gets the message through :class:`~channels.base.MessageSink`; if its single
  reply is ready inside ``reply_budget`` (WeChat waits 5 s, then retries) it goes back as a passive
  reply (`被动回复用户消息`_), otherwise we answer ``success`` and call ``defer()`` so the engine sends
  the replies through the customer-service API (:mod:`channels.wechat_api`).
* **Replay and downgrade**: ``signature`` covers the token, timestamp and nonce but not a plaintext body,
  so each verified ``(timestamp, nonce)`` is remembered with a digest of its body for the signature window
  (in the shared store) and a second, different body under it is refused; WeChat's own retries repeat the
  pair with the identical body and pass. An account with an EncodingAESKey is in safe mode unless
  configured ``compatible``: plaintext bodies are refused, so a captured URL cannot carry a plaintext
  forgery. Only safe mode authenticates the message itself (``msg_signature`` covers ``Encrypt``).

Status codes: 404 unknown account; 403 anything we cannot verify (signature, stale timestamp, ciphertext
for another AppId or undecryptable, a replayed nonce with another body, plaintext to a safe-mode
account); 413 body over ``max_body_bytes``; 400 anything malformed (bad XML, DTD/entities, missing
fields, an openid or MsgId no WeChat message has, a non-finite coordinate); 503 when the engine could
not store the message (so WeChat retries; the engine de-duplicates the retry on ``msg_id``). Never 500:
every rejection is one ``yezhu.wechat`` warning with a reason, and the sink is never called for a
rejected request.

.. _接入指南: https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Access_Overview.html
.. _消息加解密: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Message_encryption_and_decryption_instructions.html
.. _接收普通消息: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html
.. _接收事件推送: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_event_pushes.html
.. _被动回复用户消息: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Passive_user_reply_message.html
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from xml.etree.ElementTree import Element

from aiohttp import web
from wechatpy.crypto import WeChatCrypto

from channels.base import (
    Accepted,
    Duplicate,
    InboundMessage,
    MessageSink,
    NonceStore,
    OutboundMessage,
)
from channels.wechat_parse import Rejected as _Rejected
from channels.wechat_parse import mask_openid, parse_inbound, text_of
from channels.wechat_parse import parse_safely as _parse_safely
from channels.wechat_parse import reject as _reject

log = logging.getLogger("yezhu.wechat")

DEFAULT_API_BASE = "https://api.weixin.qq.com"

#: WeChat's documented answer meaning "received, no passive reply; do not retry".
SUCCESS = "success"

EncodingMode = Literal["plaintext", "compatible", "safe"]
ENCODING_MODES: tuple[EncodingMode, ...] = ("plaintext", "compatible", "safe")

_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_MAX_ECHOSTR = 256
# Characters XML 1.0 cannot carry even inside CDATA (a reply containing one would be rejected by
# WeChat as malformed and the owner would see "该公众号暂时无法提供服务").
_XML_ILLEGAL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class WeChatAccountConfig:
    """One Official Account as configured in the WeChat back office (基本配置 → 服务器配置).

    ``name`` is the path segment of its server URL (``/wechat/{name}``); ``aes_key`` is the 43-character
    EncodingAESKey; ``api_base`` the API host (tests point it at a fake). ``mode`` is the back office's
    消息加解密方式: ``safe`` (安全模式, the default with an EncodingAESKey) accepts encrypted messages only,
    ``compatible`` (兼容模式, only when configured) accepts encrypted and plaintext ones, ``plaintext``
    (明文模式, the default without a key) plaintext ones only.
    """

    name: str
    token: str = field(repr=False)
    app_id: str
    app_secret: str = field(repr=False)
    aes_key: str | None = field(default=None, repr=False)
    api_base: str = DEFAULT_API_BASE
    mode: EncodingMode | None = None

    @property
    def encoding_mode(self) -> EncodingMode:
        """The configured mode, or the default for the key: ``safe`` with one, ``plaintext`` without."""
        return self.mode or ("safe" if self.aes_key else "plaintext")


def wechat_signature(*parts: str) -> str:
    """WeChat's signature: SHA-1 over the lexicographically sorted, concatenated ``parts``."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signature_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison (bytes, so a non-ASCII forgery cannot raise ``TypeError``)."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))


def cdata_safe(text: str) -> str:
    """``text`` made safe to drop between ``<![CDATA[`` and ``]]>`` (wechatpy does no escaping).

    ``]]>`` would end the section early, so it is split across two sections; characters XML 1.0 forbids
    are dropped; line ends are normalised to ``\\n`` (an XML parser does that anyway, so the reply
    parses back to exactly the string we return).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _XML_ILLEGAL_RE.sub("", text)
    return text.replace("]]>", "]]]]><![CDATA[>")


def text_reply_xml(*, source: str, target: str, content: str, create_time: int) -> str:
    """The XML of a passive text reply, exactly as wechatpy's ``TextReply(...).render()`` writes it
    (a test holds the two equal) at a fraction of its cost: values go into CDATA verbatim."""
    return (
        "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n"
        f"<Content><![CDATA[{content}]]></Content>\n"
        f"<FromUserName><![CDATA[{source}]]></FromUserName>\n"
        f"<ToUserName><![CDATA[{target}]]></ToUserName>\n"
        f"<CreateTime>{create_time}</CreateTime>\n</xml>"
    )


def _build_crypto(account: WeChatAccountConfig) -> WeChatCrypto | None:
    mode = account.encoding_mode
    if mode not in ENCODING_MODES:
        raise ValueError(f"WeChat account {account.name!r}: mode must be one of {', '.join(ENCODING_MODES)}")
    if mode != "plaintext" and not account.aes_key:
        raise ValueError(f"WeChat account {account.name!r}: {mode} mode needs an EncodingAESKey")
    if mode == "plaintext" and account.aes_key:
        # Contradictory: WeChat encrypts only in compatible/safe mode; say which one instead of guessing.
        raise ValueError(
            f"WeChat account {account.name!r}: an EncodingAESKey is configured but mode is plaintext; "
            "choose safe (encrypted only) or compatible (both), or remove the key"
        )
    if not account.aes_key:
        return None
    try:
        key = base64.b64decode(account.aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(account.aes_key) != 43 or len(key) != 32:
        # wechatpy only ``assert``s this; a wrong key must stop start-up, not every message.
        raise ValueError(f"WeChat account {account.name!r}: EncodingAESKey must be 43 base64 characters")
    return WeChatCrypto(account.token, account.aes_key, account.app_id)


def check_account(account: WeChatAccountConfig) -> None:
    """Raise ``ValueError`` (one line, naming the account) if ``account`` cannot work: its mode and key
    disagree, or the key is malformed. The channel checks this at start-up; the CLI calls it earlier."""
    _build_crypto(account)


class _LocalNonces:
    """A :class:`~channels.base.NonceStore` for one process (tests, scripts); the app passes the shared one."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, float]] = {}
        self._last_sweep = time.monotonic()

    async def set_if_absent(self, key: str, value: str, ttl: int) -> str | None:
        now = time.monotonic()
        if now - self._last_sweep > 60:
            self._seen = {k: item for k, item in self._seen.items() if item[1] > now}
            self._last_sweep = now
        item = self._seen.get(key)
        if item is not None and item[1] > now:
            return item[0]
        self._seen[key] = (value, now + ttl)
        return None


@dataclass(slots=True)
class _Account:
    config: WeChatAccountConfig
    crypto: WeChatCrypto | None


class WeChatChannel:
    """The WeChat OA webhook for any number of accounts, each served at ``/wechat/{name}``.

    ``on_rejected(account, reason)`` is called once for every request not handed to the engine (for
    metrics); ``clock`` gives Unix time (tests freeze it); ``nonces`` remembers the ``(timestamp, nonce)``
    pairs of verified requests for the signature window (pass the shared store when several processes
    serve the URL; the default remembers them in this process only). See the module docstring.
    """

    name = "wechat"

    def __init__(
        self,
        accounts: Mapping[str, WeChatAccountConfig],
        sink: MessageSink,
        *,
        reply_budget: float = 3.0,
        signature_window: int = 300,
        max_body_bytes: int = 65536,
        max_inflight: int = 256,
        clock: Callable[[], float] = time.time,
        on_rejected: Callable[[str, str], None] | None = None,
        nonces: NonceStore | None = None,
        nonce_timeout: float = 1.0,
    ) -> None:
        self._accounts = {key: _Account(cfg, _build_crypto(cfg)) for key, cfg in accounts.items()}
        self._nonces: NonceStore = nonces if nonces is not None else _LocalNonces()
        self._nonce_timeout = nonce_timeout
        self._nonce_failures = 0  # replay checks skipped because the store failed, since the last log line
        self._nonce_logged = 0.0
        self._sink = sink
        self._reply_budget = reply_budget
        self._signature_window = signature_window
        self._max_body_bytes = max_body_bytes
        self._max_inflight = max_inflight
        self._inflight = 0
        self._shed = 0  # requests refused for overload since the last log line
        self._shed_logged = 0.0
        self._clock = clock
        self._on_rejected = on_rejected
        # Tasks we created around a bare-coroutine ``replies``: kept referenced until done, so a
        # deferred reply is not garbage-collected mid-flight (the loop holds tasks weakly).
        self._background: set[asyncio.Task[Any]] = set()

    def routes(self) -> list[web.RouteDef]:
        """``GET`` (server URL verification) and ``POST`` (messages) on ``/wechat/{account}``."""
        return [
            web.get("/wechat/{account}", self._handle_get),
            web.post("/wechat/{account}", self._handle_post),
        ]

    # -- handlers -------------------------------------------------------------------------------

    async def _handle_get(self, request: web.Request) -> web.StreamResponse:
        """Server URL verification (`接入指南`): echo ``echostr`` when the signature checks out.

        https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Access_Overview.html —
        for an Official Account ``echostr`` is plain text in every mode, so no decryption here.
        """
        account_name = request.match_info["account"]
        try:
            account = self._account(account_name)
            query = request.query
            timestamp, nonce = self._check_freshness(query)
            if not signature_matches(
                wechat_signature(account.config.token, timestamp, nonce), query.get("signature")
            ):
                _reject(403, "bad_signature", "GET signature")
            echostr = query.get("echostr")
            if echostr is None or len(echostr) > _MAX_ECHOSTR:
                _reject(400, "bad_echostr")
        except _Rejected as rejected:
            return self._rejection(request, account_name, rejected)
        log.info("wechat server URL verified for account %s", account_name)
        return web.Response(text=echostr, headers={"X-Content-Type-Options": "nosniff"})

    async def _handle_post(self, request: web.Request) -> web.StreamResponse:
        """One message or event pushed by WeChat (unless this process already has too many)."""
        if self._inflight >= self._max_inflight:
            return self._overloaded(request)
        self._inflight += 1
        try:
            return await self._handle_message(request)
        finally:
            self._inflight -= 1

    def _overloaded(self, request: web.Request) -> web.Response:
        """Load shedding: 503 before reading the body, so WeChat retries in 5 s (and its retry is
        de-duplicated). Nothing was stored, so nothing acknowledged is lost; one log line a second."""
        account = request.match_info["account"]
        self._shed += 1
        now = time.monotonic()
        if now - self._shed_logged >= 1.0:
            log.warning(
                "wechat: overloaded (%d requests in progress): answered 503 to %d request(s) so WeChat retries",
                self._inflight,
                self._shed,
            )
            self._shed, self._shed_logged = 0, now
        self._notify_rejected(account if account in self._accounts else "-", "overloaded")
        return web.Response(status=503, text="busy, retry later", headers={"Retry-After": "5"})

    async def _handle_message(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._reply_budget
        account_name = request.match_info["account"]
        try:
            account = self._account(account_name)
            encrypted, xml_text, root = await self._verify_and_decode(request, account)
            message = self._parse(account.config, xml_text, root)
        except _Rejected as rejected:
            return self._rejection(request, account_name, rejected)
        except Exception:
            # A bug of ours on a hostile input must still be a 4xx, never a 500.
            log.exception("wechat %s: unexpected error while parsing a request", account_name)
            return self._rejection(request, account_name, _Rejected(400, "unparseable"))
        return await self._deliver(account, message, encrypted, deadline)

    # -- verification and decoding --------------------------------------------------------------

    def _account(self, name: str) -> _Account:
        account = self._accounts.get(name)
        if account is None:
            _reject(404, "unknown_account", name[:40])
        return account

    def _check_freshness(self, query: Mapping[str, str]) -> tuple[str, str]:
        timestamp = query.get("timestamp", "")
        nonce = query.get("nonce", "")
        if not _TIMESTAMP_RE.fullmatch(timestamp) or not nonce:
            _reject(403, "missing_signature_params")
        skew = abs(self._clock() - int(timestamp))
        if skew > self._signature_window:
            _reject(403, "stale_timestamp", f"skew {skew:.0f}s")
        return timestamp, nonce

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self._max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            _reject(413, "body_too_large", f"Content-Length {request.content_length}")
        body = bytearray()
        # Count what actually arrives: Content-Length may be absent (chunked) or lie.
        async for chunk in request.content.iter_chunked(16384):
            body += chunk
            if len(body) > limit:
                _reject(413, "body_too_large", f"more than {limit} bytes read")
        return bytes(body)

    async def _verify_and_decode(self, request: web.Request, account: _Account) -> tuple[bool, str, Element]:
        """Return ``(encrypted, xml_text, root)`` of a verified request (``root``: the message document
        as parsed by the defused parser), or raise :class:`_Rejected`."""
        query = request.query
        token = account.config.token
        encrypt_type = query.get("encrypt_type", "raw").lower()
        if encrypt_type not in ("raw", "aes"):
            _reject(400, "bad_encrypt_type", encrypt_type[:20])
        if encrypt_type == "raw" and account.config.encoding_mode == "safe":
            # Downgrade: in safe mode WeChat always encrypts, and ``signature`` does not cover the body, so
            # a plaintext body under a captured URL would be a forgery. Compatible mode, configured
            # explicitly, accepts both while an account moves between modes.
            _reject(403, "plaintext_refused", "account is in safe mode: only encrypted messages are accepted")
        timestamp, nonce = self._check_freshness(query)
        signature = query.get("signature")
        # Plaintext mode is authenticated by ``signature`` alone; in compatible/safe mode WeChat sends it
        # too, next to ``msg_signature``, and we check both.
        if (encrypt_type == "raw" or signature is not None) and not signature_matches(
            wechat_signature(token, timestamp, nonce), signature
        ):
            _reject(403, "bad_signature")

        body = await self._read_body(request)
        root = _parse_safely(body, "body")
        if encrypt_type == "raw":
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                _reject(400, "malformed_xml", "body is not UTF-8")
            await self._check_replay(account.config.name, timestamp, nonce, body)
            return False, text, root

        if account.crypto is None:
            _reject(403, "no_aes_key", "encrypted message but no EncodingAESKey configured")
        encrypt = root.findtext("Encrypt")
        if not encrypt:
            _reject(400, "malformed_xml", "no <Encrypt> in an encrypted message")
        msg_signature = query.get("msg_signature")
        if not signature_matches(wechat_signature(token, timestamp, nonce, encrypt), msg_signature):
            _reject(403, "bad_msg_signature")
        try:
            # Signature already checked in constant time above; wechatpy re-checks it, then decrypts
            # and raises if the trailing AppId is not ours. Garbage (bad base64, bad padding, a bogus
            # length field, invalid UTF-8) fails somewhere in there too: all of it is unverifiable.
            xml_text: str = account.crypto.decrypt_message(
                {"Encrypt": encrypt}, msg_signature, timestamp, nonce
            )
        except Exception as exc:
            _reject(403, "decrypt_failed", type(exc).__name__)
        root = _parse_safely(xml_text.encode("utf-8"), "decrypted payload")
        await self._check_replay(account.config.name, timestamp, nonce, body)
        return True, xml_text, root

    async def _check_replay(self, account: str, timestamp: str, nonce: str, body: bytes) -> None:
        """Refuse a verified ``(timestamp, nonce)`` pair seen before with a different body.

        WeChat's signature covers the token, timestamp and nonce but not a plaintext body, so a captured
        URL would otherwise carry any body for the whole window. WeChat's own retries repeat the pair with
        the identical body: they pass, and the engine de-duplicates them on MsgId (DESIGN.md hot path step
        1). The pair is remembered, with a digest of the body, while its timestamp is inside the window.
        If the store cannot answer quickly the check is skipped (logged): the engine decides what an
        outage means for the message itself, and a replay then still needs a request captured in the window.
        """
        key = "wechat:nonce:" + hashlib.sha256(f"{account}\n{timestamp}\n{nonce}".encode()).hexdigest()
        digest = hashlib.sha256(body).hexdigest()
        ttl = max(1, int(int(timestamp) + self._signature_window - self._clock()) + 5)  # +5: clock slack
        try:
            async with asyncio.timeout(self._nonce_timeout):
                seen = await self._nonces.set_if_absent(key, digest, ttl)
        except Exception as exc:
            self._nonce_failures += 1
            now = time.monotonic()
            if now - self._nonce_logged >= 10.0:
                log.warning(
                    "wechat %s: replay check skipped for %d request(s): nonce store unavailable (%s)",
                    account,
                    self._nonce_failures,
                    type(exc).__name__,
                )
                self._nonce_failures, self._nonce_logged = 0, now
            return
        if seen is not None and not hmac.compare_digest(seen.encode(), digest.encode()):
            _reject(403, "replayed_nonce", "timestamp and nonce already used with another body")

    # -- parsing --------------------------------------------------------------------------------

    def _parse(self, account: WeChatAccountConfig, xml_text: str, root: Element) -> InboundMessage:
        """The message in a verified, decrypted document (:mod:`channels.wechat_parse`)."""
        return parse_inbound(self.name, account.name, xml_text, root)

    # -- handing over and answering ---------------------------------------------------------------

    async def _deliver(
        self,
        account: _Account,
        message: InboundMessage,
        encrypted: bool,
        deadline: float,
    ) -> web.StreamResponse:
        name = account.config.name
        try:
            result = await self._sink.accept(message)
        except Exception:
            # The message was not stored. Answering ``success`` would lose it; a 503 makes WeChat retry
            # (up to three times), and the retry is de-duplicated on msg_id if it did get stored.
            log.warning(
                "wechat %s: engine failed to accept a %s message from %s; answering 503 so WeChat retries",
                name,
                message.kind,
                mask_openid(message.sender),
                exc_info=True,
            )
            self._notify_rejected(name, "sink_error")
            return web.Response(status=503, text="retry later")

        if isinstance(result, Duplicate):
            return _success()
        if not isinstance(result, Accepted):  # a sink bug; the message is stored, do not make WeChat retry
            log.error("wechat %s: sink returned %r", name, type(result).__name__)
            return _success()

        replies = await self._replies_within(result, deadline, name)
        if replies is None:
            result.defer()
            return _success()
        replies = [reply for reply in replies if reply.text.strip()]
        if not replies:
            return _success()
        if len(replies) > 1:
            # Only one passive reply is possible; rather than split the answer between two paths (and
            # risk the order), let the engine send all of them through the customer-service API.
            result.defer()
            return _success()
        try:
            body = self._render_reply(account, message, replies[0], encrypted)
        except Exception:
            # The message is stored and answered; only the passive path failed: let the engine send it.
            log.exception("wechat %s: could not render a passive reply; deferring", name)
            result.defer()
            return _success()
        return web.Response(body=body.encode("utf-8"), content_type="application/xml", charset="utf-8")

    async def _replies_within(
        self, result: Accepted, deadline: float, account_name: str
    ) -> list[OutboundMessage] | None:
        """The engine's replies if ready before ``deadline``, else ``None`` (never cancelling them).

        ``asyncio.wait`` never cancels what it waits on -- neither on timeout nor when this handler is
        itself cancelled -- so the engine's work is shielded without ``asyncio.shield`` (whose extra
        outer future would log "exception was never retrieved" when the engine fails after we left).
        """
        future = asyncio.ensure_future(result.replies)
        if future is not result.replies:
            self._background.add(future)
            future.add_done_callback(self._background_done)
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        done, _ = await asyncio.wait({future}, timeout=remaining)
        if not done:
            return None
        if future.cancelled():
            log.warning("wechat %s: the engine cancelled its replies", account_name)
            return None
        exc = future.exception()
        if exc is not None:
            log.warning("wechat %s: the engine failed to produce replies: %r", account_name, exc)
            return None
        return list(future.result())

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("wechat: deferred replies failed: %r", task.exception())

    def _render_reply(
        self, account: _Account, message: InboundMessage, reply: OutboundMessage, encrypted: bool
    ) -> str:
        """A passive text reply (:func:`text_reply_xml`) and (in safe/compatible mode) encrypted.

        Rich replies fall back to their text (``OutboundMessage``). Field values go into CDATA
        verbatim, so every value goes through :func:`cdata_safe` first.
        """
        now = str(int(self._clock()))
        xml = text_reply_xml(
            source=cdata_safe(text_of(message.raw, "ToUserName")),
            target=cdata_safe(message.sender),
            content=cdata_safe(reply.text),
            create_time=int(now),
        )
        if encrypted and account.crypto is not None:
            # Our own nonce: the request's nonce would be copied into CDATA unescaped by wechatpy.
            xml = account.crypto.encrypt_message(xml, secrets.token_hex(8), now)
        return xml

    # -- rejections -----------------------------------------------------------------------------

    def _rejection(self, request: web.Request, account: str, rejected: _Rejected) -> web.Response:
        log.warning(
            "wechat %s: rejected %s from %s (openid %s): %s %s %s",
            account[:40],
            request.method,
            request.remote,
            mask_openid(request.query.get("openid")),
            rejected.status,
            rejected.reason,
            rejected.detail,
        )
        # An unknown account is attacker-chosen text: keep it out of metric labels.
        self._notify_rejected(account if rejected.reason != "unknown_account" else "-", rejected.reason)
        return web.Response(status=rejected.status, text=rejected.reason)

    def _notify_rejected(self, account: str, reason: str) -> None:
        if self._on_rejected is None:
            return
        try:
            self._on_rejected(account, reason)
        except Exception:
            log.exception("wechat: on_rejected hook failed")


def _success() -> web.Response:
    return web.Response(text=SUCCESS, content_type="text/plain")
