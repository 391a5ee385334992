"""The SMS providers' callback routes: ``POST /sms/{provider}/{key}/receipt`` and ``…/inbound``.

Neither Aliyun nor Tencent signs its pushes, so the URL carries a secret ``key``
(``YEZHU_SMS_CALLBACK_KEY``), compared in constant time, and an optional allowlist of the provider's
addresses narrows who may push. What each answer means to the provider:

- **200 with the provider's success body** (Aliyun ``{"code":0,"msg":"接收成功"}``, Tencent
  ``{"result":0,"errmsg":"OK"}``): every well-formed item is stored (a duplicate push stores nothing new).
  An item that is not what the provider sends is logged and skipped; the good ones around it are kept
  (answering an error would only make the provider push the same bad item again, 3 times).
- **404**: an unknown provider or a wrong key — nothing is stored and nothing tells a prober which.
- **403**: an address outside the allowlist. **400**: a body that is not the provider's JSON at all, or
  holds no usable item. **413**: a body over the size limit. Nothing is stored for any of these.

The route stores, answers, and only then is the push worked on (a job): Aliyun gives up after 700 ms.
Like every channel, this module never touches the database: it hands items to a :class:`PushSink`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiohttp import web

from channels.sms import PUSHES, PushFormat
from channels.sms.base import Answer, PushError, digest, push_items

log = logging.getLogger("yezhu.sms.webhook")

KINDS = ("receipt", "inbound")
MAX_BODY = 1024 * 1024
"""Bytes per push (Aliyun pushes batches of up to a few hundred reports)."""

class PushSink(Protocol):
    async def store(self, provider: str, kind: str, items: Sequence[tuple[str, dict[str, Any]]]) -> list[int]:
        """Store ``(dedup_key, item)`` pairs, ignoring keys already stored; return the new rows' ids."""
        ...

    async def work(self, ids: list[int]) -> None:
        """Start working on stored pushes (after the answer is decided)."""
        ...

def _answer(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, content_type=answer.content_type, charset="utf-8")

class SmsWebhook:
    def __init__(
        self, key: str, sink: PushSink, *, allowlist: str = "", max_body: int = MAX_BODY,
        on_rejected: Callable[[str, str], None] | None = None,
    ) -> None:
        self.key = key.encode()
        self.sink = sink
        self.max_body = max_body
        self.networks = [ipaddress.ip_network(a.strip(), strict=False) for a in allowlist.split(",") if a.strip()]
        self.on_rejected = on_rejected or (lambda provider, reason: None)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/sms/{provider}/{key}/{kind}", self.handle)]

    def _allowed(self, remote: str | None) -> bool:
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(remote or "")
        except ValueError:
            return False
        return any(address in net for net in self.networks)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        provider, kind = request.match_info["provider"], request.match_info["kind"]
        fmt = PUSHES.get(provider)
        key_ok = hmac.compare_digest(request.match_info["key"].encode(), self.key)
        if fmt is None or kind not in KINDS or not key_ok:
            self.on_rejected(provider if fmt else "unknown", "not_found")
            raise web.HTTPNotFound()
        if not self._allowed(request.remote):
            log.warning("SMS %s push from %s refused: not in the allowlist", provider, request.remote)
            self.on_rejected(provider, "forbidden")
            raise web.HTTPForbidden()
        if request.content_length is not None and request.content_length > self.max_body:
            self.on_rejected(provider, "too_large")
            raise web.HTTPRequestEntityTooLarge(max_size=self.max_body, actual_size=request.content_length)
        body = await request.content.read(self.max_body + 1)
        if len(body) > self.max_body:
            self.on_rejected(provider, "too_large")
            raise web.HTTPRequestEntityTooLarge(max_size=self.max_body, actual_size=len(body))
        try:
            items = self._items(fmt, kind, body)
        except PushError as exc:
            log.warning("SMS %s %s push refused: %s", provider, kind, exc)
            self.on_rejected(provider, "malformed")
            return _answer(fmt.refused)
        ids = await self.sink.store(provider, kind, items) if items else []
        if ids:
            await self.sink.work(ids)
        return _answer(fmt.ok)

    def _items(self, fmt: PushFormat, kind: str, body: bytes) -> list[tuple[str, dict[str, Any]]]:
        raw = push_items(body, allow_object=kind == "inbound" and fmt.uplink_object)
        parse = fmt.receipt if kind == "receipt" else fmt.uplink
        good: list[tuple[str, dict[str, Any]]] = []
        bad = 0
        for item in raw:
            try:
                parse(item)
            except (ValueError, TypeError, KeyError) as exc:
                bad += 1
                log.warning("SMS push item skipped (%s): %s", exc, json.dumps(item, ensure_ascii=False)[:200])
                continue
            good.append((f"{kind}:{digest(item)}", item))
        if raw and not good:
            raise PushError(f"none of the {bad} items is a {kind}")
        return good
