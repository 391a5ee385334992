"""The customer-service sender against FakeWeChatAPI: tokens, retries, error codes, shared cache."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from channels.base import OutboundMessage, OutputChannel, SendError
from channels.wechat import WeChatAccountConfig
from channels.wechat_api import OUT_OF_WINDOW_MESSAGE, WeChatSender, token_cache_key
from tests.fakes.wechat_server import DEMO_APP_ID, FakeWeChatAPI
from tests.wechat.conftest import MemoryTokenCache

KEY = token_cache_key(DEMO_APP_ID)


def account(api: FakeWeChatAPI, **overrides: Any) -> WeChatAccountConfig:
    values: dict[str, Any] = {
        "name": "default",
        "token": "t",
        "app_id": api.app_id,
        "app_secret": api.app_secret,
        "aes_key": None,
        "api_base": api.base_url,
    }
    values.update(overrides)
    return WeChatAccountConfig(**values)


@pytest.fixture
async def sender(fake_wechat_api: FakeWeChatAPI, cache: MemoryTokenCache) -> AsyncIterator[WeChatSender]:
    s = WeChatSender({"default": account(fake_wechat_api)}, cache, max_attempts=4, backoff_base=0.001)
    yield s
    await s.close()


def text(content: str) -> OutboundMessage:
    return OutboundMessage(content)


def test_implements_output_channel(sender: WeChatSender) -> None:
    channel: OutputChannel = sender
    assert channel.name == "wechat"


async def test_send_success(sender: WeChatSender, fake_wechat_api: FakeWeChatAPI) -> None:
    result = await sender.send("default", "oDEMO0001", text("您的房产证已可领取，请到客服中心办理。"))
    assert result.ok
    assert result.error_code is None
    sent = await fake_wechat_api.wait_for_messages(1, timeout=2)
    assert (sent[0].touser, sent[0].content, sent[0].app_id) == (
        "oDEMO0001",
        "您的房产证已可领取，请到客服中心办理。",
        DEMO_APP_ID,
    )


async def test_body_is_utf8_json_not_ascii_escaped(
    sender: WeChatSender, fake_wechat_api: FakeWeChatAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies: list[bytes] = []
    original = WeChatSender._call

    async def spy(self: WeChatSender, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        if "data" in kwargs:
            bodies.append(kwargs["data"])
        return await original(self, method, url, **kwargs)

    monkeypatch.setattr(WeChatSender, "_call", spy)
    await sender.send("default", "oDEMO0001", text("报修"))
    assert "报修".encode() in bodies[0]
    assert json.loads(bodies[0]) == {"touser": "oDEMO0001", "msgtype": "text", "text": {"content": "报修"}}


async def test_token_is_cached_and_reused(
    sender: WeChatSender, fake_wechat_api: FakeWeChatAPI, cache: MemoryTokenCache
) -> None:
    for i in range(5):
        assert (await sender.send("default", "oDEMO0001", text(f"#{i}"))).ok
    assert fake_wechat_api.tokens_issued == 1
    assert fake_wechat_api.token_requests == 1
    assert await cache.get(KEY) == fake_wechat_api.current_tokens[0]
    assert cache.ttls[KEY] == 7200 - 300


async def test_concurrent_sends_fetch_one_token(sender: WeChatSender, fake_wechat_api: FakeWeChatAPI) -> None:
    fake_wechat_api.token_delay = 0.05
    results = await asyncio.gather(*(sender.send("default", f"o{i}", text("hi")) for i in range(10)))
    assert all(r.ok for r in results)
    assert fake_wechat_api.token_requests == 1


async def test_expired_token_is_refreshed_and_the_send_retried(
    sender: WeChatSender, fake_wechat_api: FakeWeChatAPI, cache: MemoryTokenCache
) -> None:
    assert (await sender.send("default", "oDEMO0001", text("one"))).ok
    old = await cache.get(KEY)
    fake_wechat_api.expire_token()

    result = await sender.send("default", "oDEMO0001", text("two"))

    assert result.ok
    assert fake_wechat_api.tokens_issued == 2
    assert [m.content for m in fake_wechat_api.messages] == ["one", "two"]
    new = await cache.get(KEY)
    assert new and new != old


@pytest.mark.parametrize("errcode", [40001, 42001, 40014])
async def test_every_invalid_token_code_triggers_one_refresh(
    sender: WeChatSender, fake_wechat_api: FakeWeChatAPI, errcode: int
) -> None:
    await sender.access_token("default")
    fake_wechat_api.expire_token(errcode=errcode)
    assert (await sender.send("default", "o1", text("x"))).ok
    assert fake_wechat_api.tokens_issued == 2


async def test_a_token_refreshed_elsewhere_is_not_deleted(
    sender: WeChatSender, fake_wechat_api: FakeWeChatAPI, cache: MemoryTokenCache
) -> None:
    """40001 on an old token must not drop the newer one another process already stored."""
    stale = await sender.access_token("default")
    fake_wechat_api.expire_token()
    other = WeChatSender({"default": account(fake_wechat_api)}, MemoryTokenCache())
    fresh = await other.access_token("default")
    await other.close()
    await cache.set(KEY, stale, 60)
    # our cache holds the stale token; simulate the other process storing the fresh one right after
    # our send used the stale one
    original_delete = cache.delete

    async def delete(key: str, only_if: str | None = None) -> None:
        await cache.set(KEY, fresh, 60)  # the other process won the race
        await original_delete(key, only_if=only_if)

    cache.delete = delete  # type: ignore[method-assign]
    result = await sender.send("default", "o1", text("x"))
    assert result.ok
    assert await cache.get(KEY) == fresh
    assert fake_wechat_api.tokens_issued == 2  # ours once, the "other process" once: no third fetch


class StillbornTokens(FakeWeChatAPI):
    """Every token it issues is already invalid (as when another system keeps refreshing the AppId's)."""

    async def _token(self, request: Any) -> Any:
        response = await super()._token(request)
        self.expire_token()
        return response


async def test_token_refused_again_after_refresh_gives_up(cache: MemoryTokenCache) -> None:
    async with StillbornTokens() as api:
        sender = WeChatSender({"default": account(api)}, cache, backoff_base=0.001)
        result = await sender.send("default", "o1", text("x"))
        await sender.close()
    assert not result.ok
    assert result.error_code == 40001
    assert result.retryable
    assert api.token_requests == 2  # the first token, and exactly one refresh
    assert api.send_requests == 2


@pytest.mark.parametrize(
    ("errcode", "http_status"),
    [(-1, None), (45011, None), (45047, None), (None, 500), (None, 502), (None, 429)],
)
async def test_transient_failures_are_retried(
    sender: WeChatSender, fake_wechat_api: FakeWeChatAPI, errcode: int | None, http_status: int | None
) -> None:
    fake_wechat_api.fail_next_sends(2, errcode=errcode, http_status=http_status)
    result = await sender.send("default", "oDEMO0001", text("重试"))
    assert result.ok
    assert fake_wechat_api.send_requests == 3
    assert [m.content for m in fake_wechat_api.messages] == ["重试"]


async def test_persistent_failure_is_retryable_after_max_attempts(
    sender: WeChatSender, fake_wechat_api: FakeWeChatAPI
) -> None:
    fake_wechat_api.fail_next_sends(10, errcode=-1)
    result = await sender.send("default", "oDEMO0001", text("x"))
    assert not result.ok
    assert result.retryable
    assert result.error_code == -1
    assert fake_wechat_api.send_requests == 4


async def test_persistent_http_500(sender: WeChatSender, fake_wechat_api: FakeWeChatAPI) -> None:
    fake_wechat_api.fail_next_sends(10, http_status=500)
    result = await sender.send("default", "oDEMO0001", text("x"))
    assert (result.ok, result.retryable, result.error_code) == (False, True, "http_500")


async def test_out_of_window_is_final_and_not_retried(
    sender: WeChatSender, fake_wechat_api: FakeWeChatAPI
) -> None:
    fake_wechat_api.set_out_of_window("oDEMO0002")
    result = await sender.send("default", "oDEMO0002", text("回访"))
    assert not result.ok
    assert result.error_code == 45015
    assert result.error == OUT_OF_WINDOW_MESSAGE
    assert not result.retryable
    assert fake_wechat_api.send_requests == 1
    assert fake_wechat_api.messages == []


@pytest.mark.parametrize("errcode", [40003, 43004, 48001])
async def test_other_error_codes_are_final(
    sender: WeChatSender, fake_wechat_api: FakeWeChatAPI, errcode: int
) -> None:
    fake_wechat_api.fail_next_sends(1, errcode=errcode)
    result = await sender.send("default", "o1", text("x"))
    assert (result.ok, result.error_code, result.retryable) == (False, errcode, False)
    assert fake_wechat_api.send_requests == 1


async def test_daily_quota_is_retryable_later_but_not_now(
    sender: WeChatSender, fake_wechat_api: FakeWeChatAPI
) -> None:
    fake_wechat_api.fail_next_sends(1, errcode=45009)
    result = await sender.send("default", "o1", text("x"))
    assert (result.ok, result.error_code, result.retryable) == (False, 45009, True)
    assert fake_wechat_api.send_requests == 1


async def test_token_endpoint_busy_is_retried(sender: WeChatSender, fake_wechat_api: FakeWeChatAPI) -> None:
    fake_wechat_api.fail_next_token_requests(1, http_status=503)
    fake_wechat_api.fail_next_token_requests(1, errcode=-1)
    assert (await sender.send("default", "o1", text("x"))).ok
    assert fake_wechat_api.token_requests == 3


async def test_wrong_app_secret_is_final_and_does_not_leak(
    fake_wechat_api: FakeWeChatAPI, cache: MemoryTokenCache, caplog: pytest.LogCaptureFixture
) -> None:
    sender = WeChatSender(
        {"default": account(fake_wechat_api, app_secret="WRONG-SECRET")}, cache, backoff_base=0.001
    )
    with caplog.at_level(logging.DEBUG):
        result = await sender.send("default", "oDEMO0001", text("x"))
    await sender.close()
    assert (result.ok, result.error_code, result.retryable) == (False, 40125, False)
    assert fake_wechat_api.token_requests == 1
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("yezhu"))
    assert "WRONG-SECRET" not in ours
    assert "oDEMO0001" not in ours
    assert "oDEM***" in ours
    other = WeChatSender({"default": account(fake_wechat_api, app_secret="x")}, cache)
    with pytest.raises(SendError) as info:
        await other.access_token("default")
    await other.close()
    assert info.value.code == 40125


async def test_connection_errors_are_retried_then_retryable(cache: MemoryTokenCache) -> None:
    # nothing listens on port 9 (discard) on the loopback interface
    config = WeChatAccountConfig(
        name="default", token="t", app_id="wx1", app_secret="s", aes_key=None, api_base="http://127.0.0.1:9"
    )
    sender = WeChatSender({"default": config}, cache, max_attempts=2, backoff_base=0.001)
    result = await sender.send("default", "o1", text("x"))
    await sender.close()
    assert (result.ok, result.retryable, result.error_code) == (False, True, "network")
    assert result.error and "127.0.0.1" not in result.error


async def test_timeouts_are_retried(fake_wechat_api: FakeWeChatAPI, cache: MemoryTokenCache) -> None:
    sender = WeChatSender(
        {"default": account(fake_wechat_api)}, cache, max_attempts=2, backoff_base=0.001, request_timeout=0.05
    )
    await sender.access_token("default")
    fake_wechat_api.send_delay = 0.2
    result = await sender.send("default", "o1", text("x"))
    assert (result.ok, result.retryable) == (False, True)
    assert fake_wechat_api.send_requests == 2
    fake_wechat_api.send_delay = 0
    assert (await sender.send("default", "o1", text("x"))).ok
    await sender.close()


async def test_two_senders_sharing_a_cache_fetch_one_token(
    fake_wechat_api: FakeWeChatAPI, cache: MemoryTokenCache
) -> None:
    """Two processes (two senders, two HTTP sessions) on one shared cache: one token fetch, not two."""
    fake_wechat_api.token_delay = 0.1
    a = WeChatSender({"default": account(fake_wechat_api)}, cache)
    b = WeChatSender({"default": account(fake_wechat_api)}, cache)
    results = await asyncio.gather(
        a.send("default", "o1", text("a")),
        b.send("default", "o2", text("b")),
        a.access_token("default"),
        b.access_token("default"),
    )
    await a.close()
    await b.close()
    assert results[0].ok and results[1].ok
    assert results[2] == results[3]
    assert fake_wechat_api.token_requests == 1
    assert fake_wechat_api.tokens_issued == 1


async def test_two_senders_after_expiry_refresh_once(
    fake_wechat_api: FakeWeChatAPI, cache: MemoryTokenCache
) -> None:
    a = WeChatSender({"default": account(fake_wechat_api)}, cache)
    b = WeChatSender({"default": account(fake_wechat_api)}, cache)
    await a.access_token("default")
    fake_wechat_api.expire_token()
    fake_wechat_api.token_delay = 0.05
    results = await asyncio.gather(*(s.send("default", f"o{i}", text("x")) for i, s in enumerate([a, b] * 3)))
    await a.close()
    await b.close()
    assert all(r.ok for r in results)
    assert fake_wechat_api.tokens_issued == 2


async def test_force_refresh(sender: WeChatSender, fake_wechat_api: FakeWeChatAPI) -> None:
    first = await sender.access_token("default")
    assert await sender.access_token("default") == first
    second = await sender.access_token("default", force=True)
    assert second != first
    assert fake_wechat_api.tokens_issued == 2


async def test_unknown_account_and_empty_message(
    sender: WeChatSender, fake_wechat_api: FakeWeChatAPI
) -> None:
    result = await sender.send("nosuch", "o1", text("x"))
    assert (result.ok, result.error_code, result.retryable) == (False, "unknown_account", False)
    result = await sender.send("default", "o1", text("  "))
    assert (result.ok, result.retryable) == (False, False)
    assert fake_wechat_api.send_requests == 0
    with pytest.raises(SendError):
        await sender.access_token("nosuch")


async def test_rich_message_is_sent_as_text(sender: WeChatSender, fake_wechat_api: FakeWeChatAPI) -> None:
    assert (await sender.send("default", "o1", OutboundMessage("通知全文", kind="news", data={"x": 1}))).ok
    assert fake_wechat_api.messages[0].content == "通知全文"


async def test_borrowed_session_is_left_open(fake_wechat_api: FakeWeChatAPI, cache: MemoryTokenCache) -> None:
    async with aiohttp.ClientSession() as session:
        sender = WeChatSender({"default": account(fake_wechat_api)}, cache, session)
        assert (await sender.send("default", "o1", text("x"))).ok
        await sender.close()
        assert not session.closed


async def test_session_factory_is_used_and_closed(
    fake_wechat_api: FakeWeChatAPI, cache: MemoryTokenCache
) -> None:
    made: list[aiohttp.ClientSession] = []

    def factory() -> aiohttp.ClientSession:
        made.append(aiohttp.ClientSession())
        return made[-1]

    sender = WeChatSender({"default": account(fake_wechat_api)}, cache, factory)
    assert (await sender.send("default", "o1", text("x"))).ok
    await sender.close()
    assert len(made) == 1 and made[0].closed


async def test_fake_server_rejects_what_wechat_rejects(fake_wechat_api: FakeWeChatAPI) -> None:
    base = fake_wechat_api.base_url
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, **kw: Any) -> dict[str, Any]:
            async with http.request(method, base + path, **kw) as r:
                data: dict[str, Any] = json.loads(await r.text())
                return data

        assert (await call("GET", "/cgi-bin/token", params={"grant_type": "x"}))["errcode"] == 40002
        assert (
            await call(
                "GET",
                "/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": "wxno", "secret": "s"},
            )
        )["errcode"] == 40013
        good = await call(
            "GET",
            "/cgi-bin/token",
            params={
                "grant_type": "client_credential",
                "appid": fake_wechat_api.app_id,
                "secret": fake_wechat_api.app_secret,
            },
        )
        token = good["access_token"]
        assert good["expires_in"] == 7200
        send = "/cgi-bin/message/custom/send"
        assert (await call("POST", send, data=b"{}"))["errcode"] == 41001
        assert (await call("POST", send, params={"access_token": "nope"}, data=b"{}"))["errcode"] == 40001
        assert (await call("POST", send, params={"access_token": token}, data=b"{"))["errcode"] == 47001
        assert (
            await call(
                "POST", send, params={"access_token": token}, json={"touser": "o1", "msgtype": "image"}
            )
        )["errcode"] == 40008
        assert (
            await call(
                "POST",
                send,
                params={"access_token": token},
                json={"touser": "o1", "msgtype": "text", "text": {"content": ""}},
            )
        )["errcode"] == 44004
    with pytest.raises(TimeoutError, match="expected 1 WeChat messages"):
        await fake_wechat_api.wait_for_messages(1, timeout=0.05)
    fake_wechat_api.reset()
    assert fake_wechat_api.token_requests == 0
