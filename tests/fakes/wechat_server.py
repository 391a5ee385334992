"""A local stand-in for WeChat's API host (``api.weixin.qq.com``) for tests and demos.

Speaks the three calls Yezhu makes, with WeChat's documented error codes:

* ``GET /cgi-bin/token?grant_type=client_credential&appid=…&secret=…`` → ``{"access_token", "expires_in"}``
  (40002 bad grant_type, 41002/41004 missing appid/secret, 40013 unknown AppID, 40125 wrong secret).
  https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Get_access_token.html
* ``POST /cgi-bin/message/custom/send?access_token=…`` with ``{"touser", "msgtype": "text", "text":
  {"content"}}`` → ``{"errcode": 0, "errmsg": "ok"}`` (41001 missing token, 40001 invalid token,
  47001 bad JSON, 40003 bad openid, 40008 bad msgtype, 44004 empty content, 45015 out of the 48-hour
  window, -1 system busy).
  https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html
* ``POST /cgi-bin/message/template/send?access_token=…`` with ``{"touser", "template_id", "data":
  {field: {"value"}}, "url"?, "client_msg_id"?}`` → ``{"errcode": 0, "errmsg": "ok", "msgid"}`` (40037
  unknown template id, 43004 the owner no longer follows the account, 47001 bad data; a repeated
  ``client_msg_id`` is sent once).
  https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Template_Message_Interface.html

Usage::

    async with FakeWeChatAPI() as api:             # or the ``fake_wechat_api`` fixture below
        config = WeChatAccountConfig(..., app_id=api.app_id, app_secret=api.app_secret,
                                     api_base=api.base_url)
        ...
        api.expire_token()                         # the next send with the old token gets 40001
        api.fail_next_sends(2, errcode=-1)         # or http_status=500
        api.set_out_of_window("oDEMO0002")         # 45015 for that recipient
        sent = await api.wait_for_messages(1, timeout=5)
        assert sent[0].touser == "oDEMO0001" and sent[0].content == "..."

Other tests import it with ``from tests.fakes.wechat_server import FakeWeChatAPI, fake_wechat_api``
(re-export the fixture from a ``conftest.py`` to use it by name).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

DEMO_APP_ID = "wxDEMO00000000001"
DEMO_APP_SECRET = "demo-app-secret-0000000000000001"


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One customer-service message the fake accepted."""

    app_id: str
    touser: str
    content: str
    msgtype: str = "text"
    body: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(slots=True)
class SentTemplate:
    """One template message the fake accepted: its template, the field values and the msgid answered."""

    app_id: str
    touser: str
    template_id: str
    values: dict[str, str]
    msgid: int
    client_msg_id: str | None
    body: dict[str, Any]


@dataclass(slots=True)
class _Failure:
    errcode: int | None
    http_status: int | None


class FakeWeChatAPI:
    """WeChat's token and customer-service-send API on ``127.0.0.1`` (a random free port).

    ``apps`` maps AppID → AppSecret (default: one demo app, :attr:`app_id`/:attr:`app_secret`).
    ``token_delay``/``send_delay`` slow the endpoints down (to make races observable). Counters and
    :attr:`messages` may be read at any time; :meth:`reset` clears them.
    """

    def __init__(
        self,
        apps: Mapping[str, str] | None = None,
        *,
        expires_in: int = 7200,
        token_delay: float = 0.0,
        send_delay: float = 0.0,
    ) -> None:
        self.apps: dict[str, str] = dict(apps or {DEMO_APP_ID: DEMO_APP_SECRET})
        self.expires_in = expires_in
        self.token_delay = token_delay
        self.send_delay = send_delay
        #: every customer-service message accepted (errcode 0), in order
        self.messages: list[SentMessage] = []
        #: every template message accepted (errcode 0), in order (a repeated client_msg_id once)
        self.template_messages: list[SentTemplate] = []
        #: template ids the account has added (others: 40037 invalid template_id); None: any id
        self.template_ids: set[str] | None = None
        #: openids that no longer follow the account (43004: require subscribe)
        self.unsubscribed: set[str] = set()
        self._client_msg_ids: dict[tuple[str, str], int] = {}
        self._msgids = itertools.count(2_000_000_001)
        #: successful token grants
        self.tokens_issued = 0
        #: every call to /cgi-bin/token, successful or not
        self.token_requests = 0
        #: every call to /cgi-bin/message/custom/send, successful or not
        self.send_requests = 0
        self._valid: dict[str, str] = {}  # token -> app_id
        self._revoked: dict[str, int] = {}  # token -> errcode to answer with
        self._out_of_window: set[str] = set()
        self._send_failures: list[_Failure] = []
        self._token_failures: list[_Failure] = []
        self._serial = itertools.count(1)
        self._changed: asyncio.Condition | None = None
        self._server: TestServer | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> FakeWeChatAPI:
        """Start listening; returns ``self``."""
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._custom_send)
        app.router.add_post("/cgi-bin/message/template/send", self._template_send)
        self._changed = asyncio.Condition()
        self._server = TestServer(app, host="127.0.0.1", port=0)
        await self._server.start_server()
        return self

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def __aenter__(self) -> FakeWeChatAPI:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """What to put in ``WeChatAccountConfig.api_base`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("FakeWeChatAPI is not started")
        return str(self._server.make_url("")).rstrip("/")

    @property
    def app_id(self) -> str:
        """The first (by default the only) AppID."""
        return next(iter(self.apps))

    @property
    def app_secret(self) -> str:
        return self.apps[self.app_id]

    # -- knobs ----------------------------------------------------------------------------------

    @property
    def current_tokens(self) -> list[str]:
        """Tokens that would be accepted right now."""
        return list(self._valid)

    def expire_token(self, app_id: str | None = None, *, errcode: int = 40001) -> None:
        """Invalidate every current token (of ``app_id``, default all apps): using one answers ``errcode``
        (40001 invalid credential, or 42001 access_token expired)."""
        for token, owner in list(self._valid.items()):
            if app_id is None or owner == app_id:
                del self._valid[token]
                self._revoked[token] = errcode

    def fail_next_sends(self, n: int, *, errcode: int | None = -1, http_status: int | None = None) -> None:
        """Make the next ``n`` sends fail: with HTTP ``http_status`` if given, else with ``errcode``."""
        self._send_failures.extend(_Failure(errcode, http_status) for _ in range(n))

    def fail_next_token_requests(
        self, n: int, *, errcode: int | None = -1, http_status: int | None = None
    ) -> None:
        """Make the next ``n`` token requests fail (HTTP ``http_status`` if given, else ``errcode``)."""
        self._token_failures.extend(_Failure(errcode, http_status) for _ in range(n))

    def set_out_of_window(self, openid: str, out: bool = True) -> None:
        """Sends to ``openid`` answer 45015 (the owner has not written to us in the last 48 hours)."""
        if out:
            self._out_of_window.add(openid)
        else:
            self._out_of_window.discard(openid)

    def reset(self) -> None:
        """Forget messages, counters, failures and tokens (the apps stay)."""
        self.messages.clear()
        self.template_messages.clear()
        self._client_msg_ids.clear()
        self.tokens_issued = self.token_requests = self.send_requests = 0
        self._valid.clear()
        self._revoked.clear()
        self._out_of_window.clear()
        self._send_failures.clear()
        self._token_failures.clear()

    async def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[SentMessage]:
        """Wait until at least ``n`` messages were accepted; returns them all. Raises ``TimeoutError``
        listing what did arrive."""
        if self._changed is None:
            raise RuntimeError("FakeWeChatAPI is not started")
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(self.messages) >= n)
        except TimeoutError:
            raise TimeoutError(
                f"expected {n} WeChat messages within {timeout}s, got {len(self.messages)}: {self.messages!r}"
            ) from None
        return list(self.messages)

    # -- endpoints ------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if self._token_failures:
            failure = self._token_failures.pop(0)
            if failure.http_status is not None:
                return web.Response(status=failure.http_status, text="fake failure")
            return _error(failure.errcode if failure.errcode is not None else -1)
        query = request.query
        if query.get("grant_type") != "client_credential":
            return _error(40002)
        app_id, secret = query.get("appid"), query.get("secret")
        if not app_id:
            return _error(41002)
        if not secret:
            return _error(41004)
        if app_id not in self.apps:
            return _error(40013)
        if not secrets.compare_digest(self.apps[app_id].encode(), secret.encode()):
            return _error(40125)
        token = f"FAKE-{next(self._serial)}-{secrets.token_urlsafe(24)}"
        self._valid[token] = app_id
        self.tokens_issued += 1
        return _json({"access_token": token, "expires_in": self.expires_in})

    async def _authorised_body(self, request: web.Request) -> web.Response | tuple[str, dict[str, Any]]:
        """What every send API checks first, in WeChat's order: the access token (41001 missing, 40001
        invalid, a revoked token's code), a scripted failure, then a JSON object body (47001)."""
        token = request.query.get("access_token")
        if not token:
            return _error(41001)
        if token in self._revoked:
            return _error(self._revoked[token])
        app_id = self._valid.get(token)
        if app_id is None:
            return _error(40001)
        if self._send_failures:
            failure = self._send_failures.pop(0)
            if failure.http_status is not None:
                return web.Response(status=failure.http_status, text="fake failure")
            return _error(failure.errcode if failure.errcode is not None else -1)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(47001)
        if not isinstance(body, dict):
            return _error(47001)
        return app_id, body

    async def _custom_send(self, request: web.Request) -> web.Response:
        self.send_requests += 1
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        checked = await self._authorised_body(request)
        if isinstance(checked, web.Response):
            return checked
        app_id, body = checked
        touser = body.get("touser")
        if not isinstance(touser, str) or not touser:
            return _error(40003)
        if body.get("msgtype") != "text":
            return _error(40008)
        text = body.get("text")
        content = text.get("content") if isinstance(text, dict) else None
        if not isinstance(content, str) or not content:
            return _error(44004)
        if touser in self._out_of_window:
            return _error(45015)
        self.messages.append(SentMessage(app_id=app_id, touser=touser, content=content, body=body))
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()
        return _json({"errcode": 0, "errmsg": "ok"})

    async def _template_send(self, request: web.Request) -> web.Response:
        """``POST /cgi-bin/message/template/send`` as documented (模板消息接口): ``touser``,
        ``template_id``, ``data`` ``{field: {"value": …}}``, optional ``url`` and ``client_msg_id``;
        answers ``{"errcode":0,"errmsg":"ok","msgid":…}``. The same ``client_msg_id`` for the same
        owner is sent once (WeChat's de-duplication); the answer repeats the first msgid."""
        self.send_requests += 1
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        checked = await self._authorised_body(request)
        if isinstance(checked, web.Response):
            return checked
        app_id, body = checked
        touser, template_id, data = body.get("touser"), body.get("template_id"), body.get("data")
        if not isinstance(touser, str) or not touser:
            return _error(40003)
        if not isinstance(template_id, str) or not template_id or (
                self.template_ids is not None and template_id not in self.template_ids):
            return _error(40037)
        if not isinstance(data, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("value"), str) for v in data.values()):
            return _error(47001)
        if touser in self.unsubscribed:
            return _error(43004)
        client_msg_id = body.get("client_msg_id")
        if isinstance(client_msg_id, str) and (touser, client_msg_id) in self._client_msg_ids:
            return _json({"errcode": 0, "errmsg": "ok", "msgid": self._client_msg_ids[(touser, client_msg_id)]})
        msgid = next(self._msgids)
        if isinstance(client_msg_id, str):
            self._client_msg_ids[(touser, client_msg_id)] = msgid
        self.template_messages.append(SentTemplate(
            app_id=app_id, touser=touser, template_id=template_id, values={k: v["value"] for k, v in data.items()},
            msgid=msgid, client_msg_id=client_msg_id if isinstance(client_msg_id, str) else None, body=body))
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()
        return _json({"errcode": 0, "errmsg": "ok", "msgid": msgid})


_ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40008: "invalid message type",
    40013: "invalid appid",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    40037: "invalid template_id",
    42001: "access_token expired",
    43004: "require subscribe",
    44004: "empty content",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    47001: "data format error",
}


def _json(data: Mapping[str, Any]) -> web.Response:
    # WeChat labels its JSON answers text/plain on some endpoints; clients must not rely on the type.
    return web.Response(text=json.dumps(data, ensure_ascii=False), content_type="text/plain")


def _error(errcode: int) -> web.Response:
    return _json({"errcode": errcode, "errmsg": _ERRMSG.get(errcode, "error")})


@pytest_asyncio.fixture
async def fake_wechat_api() -> AsyncIterator[FakeWeChatAPI]:
    """A started :class:`FakeWeChatAPI` with the demo app (``DEMO_APP_ID``/``DEMO_APP_SECRET``)."""
    async with FakeWeChatAPI() as api:
        yield api
