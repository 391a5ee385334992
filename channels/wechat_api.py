"""WeChat Official Account outbound channel: customer-service (客服消息) and template messages (模板消息),
over aiohttp.

Owns the account's ``access_token`` and the ``message/custom/send`` and ``message/template/send`` calls:

* **Token** (`获取 Access token`_): fetched with ``grant_type=client_credential`` and kept in the shared
  :class:`~channels.base.TokenCache` under ``wechat:token:{app_id}`` for ``expires_in - 300`` seconds.
  Every process of every machine shares it, because each fetch invalidates the previous token after a
  few minutes: refreshes are serialised with ``cache.lock`` and double-checked (re-read after the lock).
  When WeChat calls a token invalid (40001, 40014, 42001) it is dropped only if the cache still holds that
  very token (``delete(only_if=...)``: another process may already have refreshed it), then refreshed once
  and the send retried.
* **Send** (`客服消息`_): ``{"touser", "msgtype": "text", "text": {"content"}}`` in UTF-8 JSON.
  Transient failures -- ``-1`` 系统繁忙, rate limits (45011, 45047), HTTP 5xx/429, timeouts, connection
  errors -- are retried with exponential backoff (tenacity) up to ``max_attempts``; if they persist the
  :class:`~channels.base.SendResult` says ``retryable=True`` so the job queue can try again later.
  45015 (outside the 48-hour window in which an owner last wrote to us) is final, as is any other error
  code (`全局返回码`_).
* **Template** (`模板消息`_): an :class:`~channels.base.OutboundMessage` of kind ``template`` carries
  ``data={"template_id", "fields": {name: value}, "url"?, "client_msg_id"?}`` and is sent as
  ``{"touser", "template_id", "data": {name: {"value"}}, "url", "client_msg_id"}``; it reaches a follower
  whatever the 48-hour window. ``client_msg_id`` makes WeChat send a repeated request once, so a retry
  after a lost answer does not reach the owner twice. 40037 (unknown template id) and 43004 (no longer
  follows the account) are final; the answer's ``msgid`` is the provider id.

Blocking clients (``requests``, wechatpy's ``WeChatClient``) are deliberately not used: this runs on the
event loop. Access tokens and app secrets never reach a log line or a ``SendResult``.

.. _获取 Access token: https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Get_access_token.html
.. _客服消息: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html
.. _模板消息: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Template_Message_Interface.html
.. _全局返回码: https://developers.weixin.qq.com/doc/offiaccount/Getting_Started/Global_Return_Code.html
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import quote
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential
from yarl import URL

from channels.base import OutboundMessage, SendError, SendResult, TokenCache
from channels.wechat import WeChatAccountConfig, mask_openid

log = logging.getLogger("yezhu.wechat.api")

#: access_token invalid / not the latest (40001), illegal (40014), expired (42001).
TOKEN_INVALID_CODES = frozenset({40001, 40014, 42001})
#: 系统繁忙 (-1), API minute quota (45011), too many customer-service messages (45047): worth another
#: try after a short wait.
RETRY_NOW_CODES = frozenset({-1, 45011, 45047})
#: Daily API quota reached (45009): backing off for seconds will not help, a later job might.
RETRY_LATER_CODES = frozenset({45009})
OUT_OF_WINDOW = 45015
OUT_OF_WINDOW_MESSAGE = "超出48小时客服消息窗口"

#: Refresh this long before WeChat's own expiry, so a token is never used in its last minutes.
TOKEN_EXPIRY_MARGIN = 300
#: Seconds a process reuses the token it read from the shared cache before reading it again.
TOKEN_MEMO_SECONDS = 10.0


def token_cache_key(app_id: str) -> str:
    """Where the access token of ``app_id`` lives in the shared :class:`TokenCache`."""
    return f"wechat:token:{app_id}"


class _RetryNow(SendError):
    """A failure that a retry after a short backoff may cure."""

    def __init__(self, message: str, *, code: int | str | None) -> None:
        super().__init__(message, code=code, retryable=True)


def _should_retry_now(exc: BaseException) -> bool:
    return isinstance(exc, _RetryNow | aiohttp.ClientError | TimeoutError)


SessionFactory = Callable[[], aiohttp.ClientSession]


class WeChatSender:
    """Sends text to an owner through the customer-service API; implements ``OutputChannel``.

    ``session_factory`` is either an open :class:`aiohttp.ClientSession` (borrowed: :meth:`close` leaves
    it open), a callable returning one, or ``None`` (a default session); the last two are created on
    first use and closed by :meth:`close`.
    """

    name = "wechat"

    def __init__(
        self,
        accounts: Mapping[str, WeChatAccountConfig],
        cache: TokenCache,
        session_factory: aiohttp.ClientSession | SessionFactory | None = None,
        *,
        max_attempts: int = 4,
        backoff_base: float = 0.2,
        backoff_max: float = 5.0,
        request_timeout: float = 10.0,
        lock_timeout: float = 30.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._accounts = dict(accounts)
        self._cache = cache
        self._session: aiohttp.ClientSession | None = None
        self._factory: SessionFactory | None = None
        self._owns_session = True
        if isinstance(session_factory, aiohttp.ClientSession):
            self._session, self._owns_session = session_factory, False
        else:
            self._factory = session_factory
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._lock_timeout = lock_timeout
        self._memo: dict[str, tuple[str, float]] = {}
        """app_id → (token, until): this process's copy of the shared cache's token, re-read after that."""

    # -- public API -----------------------------------------------------------------------------

    async def send(self, account: str, recipient: str, message: OutboundMessage, *, retry: bool = True) -> SendResult:
        """Send ``message`` (as text: rich kinds fall back to ``text``) to the openid ``recipient``.

        ``retry=False``: one attempt (an expired token is still refreshed once); a transient failure comes
        back ``retryable`` for the caller to schedule (a broadcast retries a recipient later rather than
        holding a send slot through back-off)."""
        config = self._accounts.get(account)
        if config is None:
            return SendResult(ok=False, error_code="unknown_account", error=f"no WeChat account {account!r}")
        if not (config.app_id and config.app_secret):
            # No AppID/AppSecret (the embedded demo): no access token can ever be had, so no retries and
            # no warning per message; `yezhu doctor` explains the setting.
            return SendResult(ok=False, error_code="not_configured",
                              error=f"WeChat account {account!r} has no AppID/AppSecret")
        if message.kind == "template":
            path = "/cgi-bin/message/template/send"
            body = _template_body(recipient, message.data)
            if body is None:
                return SendResult(ok=False, error_code="bad_template", error="template message without template_id")
        else:
            if not message.text.strip():
                return SendResult(ok=False, error_code="empty", error="empty message")
            path = "/cgi-bin/message/custom/send"
            body = {"touser": recipient, "msgtype": "text", "text": {"content": message.text}}
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        if not retry:
            try:
                return await self._send_once(config, path, payload)
            except SendError as exc:
                return SendResult(ok=False, error_code=exc.code, error=str(exc), retryable=exc.retryable)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return SendResult(ok=False, error_code="network", error=type(exc).__name__, retryable=True)
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._max_attempts),
                wait=wait_exponential(multiplier=self._backoff_base, max=self._backoff_max),
                retry=retry_if_exception(_should_retry_now),
                reraise=True,
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        log.info(
                            "wechat %s: retrying send to %s (attempt %d)",
                            account,
                            mask_openid(recipient),
                            attempt.retry_state.attempt_number,
                        )
                    return await self._send_once(config, path, payload)
        except SendError as exc:
            result = SendResult(ok=False, error_code=exc.code, error=str(exc), retryable=exc.retryable)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # str(exc) of a client error can contain the request URL, i.e. the access token.
            result = SendResult(ok=False, error_code="network", error=type(exc).__name__, retryable=True)
        except Exception as exc:
            log.exception("wechat %s: unexpected error sending to %s", account, mask_openid(recipient))
            result = SendResult(ok=False, error_code="internal", error=type(exc).__name__, retryable=True)
        else:  # pragma: no cover - AsyncRetrying either returns from the body or raises
            raise AssertionError("unreachable")
        # 45015 is routine (a broadcast reaches owners who have not written lately): not a warning.
        log.log(
            logging.INFO if result.error_code == OUT_OF_WINDOW else logging.WARNING,
            "wechat %s: send to %s failed: %s %s (retryable=%s)",
            account,
            mask_openid(recipient),
            result.error_code,
            result.error,
            result.retryable,
        )
        return result

    async def access_token(self, account: str, *, force: bool = False) -> str:
        """The account's current access token, fetched if the shared cache has none.

        ``force`` discards the cached token first (only if it is still the one we saw) and fetches a new
        one -- unless another process refreshed it meanwhile, whose token is then used. Raises
        :class:`~channels.base.SendError` when WeChat refuses.
        """
        config = self._accounts.get(account)
        if config is None:
            raise SendError(f"no WeChat account {account!r}", code="unknown_account")
        stale: str | None = None
        if force:
            self._memo.pop(config.app_id, None)
            stale = await self._cache.get(token_cache_key(config.app_id))
            if stale:
                await self._cache.delete(token_cache_key(config.app_id), only_if=stale)
        return await self._token(config, stale=stale)

    async def close(self) -> None:
        """Close the HTTP session if this sender created it."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        if self._owns_session:
            self._session = None

    # -- internals ------------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = self._factory() if self._factory is not None else aiohttp.ClientSession()
        return self._session

    async def _send_once(self, config: WeChatAccountConfig, path: str, payload: bytes) -> SendResult:
        key = token_cache_key(config.app_id)
        token = await self._token(config)
        base = f"{config.api_base.rstrip('/')}{path}?access_token="
        refreshed = False
        while True:
            data = await self._call(
                "POST",
                # Built once, not through ``params=`` (yarl's query encoding costs more than the rest of
                # a send); tokens are URL-safe but quoted all the same.
                URL(base + quote(token, safe=""), encoded=True),
                data=payload,
                headers={"Content-Type": "application/json; charset=utf-8"},
            )
            errcode = _errcode(data)
            if errcode == 0:
                msgid = data.get("msgid")
                return SendResult(ok=True, provider_id=str(msgid) if msgid is not None else None)
            errmsg = str(data.get("errmsg", ""))[:200]
            if errcode in TOKEN_INVALID_CODES and not refreshed:
                log.info("wechat %s: access token rejected (%s); refreshing", config.name, errcode)
                self._memo.pop(config.app_id, None)
                await self._cache.delete(key, only_if=token)
                token = await self._token(config, stale=token)
                refreshed = True
                continue
            if errcode in TOKEN_INVALID_CODES:
                # A freshly fetched token refused too: someone else keeps refreshing this AppId's token
                # (another system with the same AppSecret?). Nothing to do now; a later job may succeed.
                return SendResult(ok=False, error_code=errcode, error=errmsg, retryable=True)
            if errcode == OUT_OF_WINDOW:
                return SendResult(ok=False, error_code=errcode, error=OUT_OF_WINDOW_MESSAGE, retryable=False)
            if errcode in RETRY_NOW_CODES:
                raise _RetryNow(errmsg or "system busy", code=errcode)
            return SendResult(
                ok=False, error_code=errcode, error=errmsg, retryable=errcode in RETRY_LATER_CODES
            )

    async def _token(self, config: WeChatAccountConfig, *, stale: str | None = None) -> str:
        """The cached token (not ``stale``), or a new one fetched under the cross-process lock.

        The shared cache is read at most every ``TOKEN_MEMO_SECONDS`` per process (a broadcast sends
        hundreds a second: one Redis read each would be wasted, and under load a cold pool's connects time
        out); WeChat keeps a replaced token valid for five minutes, and a rejected one is never reused."""
        memo = self._memo.get(config.app_id)
        if memo is not None and memo[0] != stale and memo[1] > time.monotonic():
            return memo[0]
        key = token_cache_key(config.app_id)
        token = await self._cache.get(key)
        if token and token != stale:
            self._memo[config.app_id] = (token, time.monotonic() + TOKEN_MEMO_SECONDS)
            return token
        async with AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(
                    self._cache.lock(f"{key}:refresh", timeout=self._lock_timeout)
                )
            except Exception as exc:  # the cache's own "lock timeout" type is not ours to import
                raise _RetryNow(f"token refresh lock: {type(exc).__name__}", code="lock_timeout") from exc
            # Double-checked: whoever held the lock before us has probably just refreshed it.
            token = await self._cache.get(key)
            if token and token != stale:
                self._memo[config.app_id] = (token, time.monotonic() + TOKEN_MEMO_SECONDS)
                return token
            token, expires_in = await self._fetch_token(config)
            ttl = max(expires_in - TOKEN_EXPIRY_MARGIN, expires_in // 2, 1)
            await self._cache.set(key, token, ttl)
            self._memo[config.app_id] = (token, time.monotonic() + min(TOKEN_MEMO_SECONDS, ttl))
            log.info("wechat %s: fetched a new access token (valid %ss)", config.name, expires_in)
            return token

    async def _fetch_token(self, config: WeChatAccountConfig) -> tuple[str, int]:
        data = await self._call(
            "GET",
            f"{config.api_base.rstrip('/')}/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": config.app_id, "secret": config.app_secret},
        )
        errcode = _errcode(data)
        if errcode in RETRY_NOW_CODES:
            raise _RetryNow("token: system busy", code=errcode)
        if errcode != 0:
            # 40013 invalid AppID, 40125 invalid AppSecret, 40164 IP not whitelisted, ...: configuration.
            raise SendError(f"token: {str(data.get('errmsg', ''))[:200]}", code=errcode, retryable=False)
        token, expires_in = data.get("access_token"), data.get("expires_in", 7200)
        if not isinstance(token, str) or not token or not isinstance(expires_in, int):
            raise _RetryNow("token: malformed response", code="bad_response")
        return token, expires_in

    async def _call(self, method: str, url: str | URL, **kwargs: Any) -> dict[str, Any]:
        """One HTTP call; returns the JSON object or raises (``_RetryNow`` for 5xx/429/garbage)."""
        async with self._http().request(method, url, timeout=self._timeout, **kwargs) as response:
            body = await response.read()
            status = response.status
        if status >= 500 or status == 429:
            raise _RetryNow(f"HTTP {status}", code=f"http_{status}")
        if status != 200:
            raise SendError(f"HTTP {status}", code=f"http_{status}", retryable=False)
        try:
            # Not response.json(): WeChat answers some calls with Content-Type text/plain.
            data = json.loads(body)
        except ValueError:
            raise _RetryNow("response is not JSON", code="bad_response") from None
        if not isinstance(data, dict):
            raise _RetryNow("response is not a JSON object", code="bad_response")
        return data


def _template_body(recipient: str, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The template-send JSON from an ``OutboundMessage(kind="template").data`` (None: no template id)."""
    template_id = data.get("template_id")
    if not isinstance(template_id, str) or not template_id:
        return None
    fields = data.get("fields") or {}
    body: dict[str, Any] = {"touser": recipient, "template_id": template_id,
                            "data": {str(k): {"value": str(v)} for k, v in dict(fields).items()}}
    if data.get("url"):
        body["url"] = str(data["url"])
    if data.get("client_msg_id"):
        body["client_msg_id"] = str(data["client_msg_id"])[:64]
    return body


def _errcode(data: Mapping[str, Any]) -> int | str:
    code = data.get("errcode", 0)
    if isinstance(code, int):
        return code
    try:
        return int(str(code))
    except ValueError:
        return str(code)[:40]
