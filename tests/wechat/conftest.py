"""Fixtures for the WeChat channel tests: an in-memory engine stand-in, a frozen clock, the channel
mounted on a real aiohttp app, owners posting through it, and an in-memory token cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from channels.base import Accepted, Duplicate, InboundMessage, OutboundMessage
from channels.wechat import WeChatAccountConfig, WeChatChannel
from tests.fakes.wechat_client import Mode, WeChatOwner
from tests.fakes.wechat_server import FakeWeChatAPI, fake_wechat_api  # noqa: F401 (fixture)

TOKEN = "yezhu-wechat-token"
APP_ID = "wx0123456789abcdef"
APP_SECRET = "app-secret-for-tests"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
NOW = 1_700_000_000.0
OPENID = "oDEMO0001"

ACCOUNTS = {
    "default": WeChatAccountConfig(
        name="default",
        token=TOKEN,
        app_id=APP_ID,
        app_secret=APP_SECRET,
        aes_key=AES_KEY,
        api_base="http://127.0.0.1:9",
        mode="compatible",  # accepts all three kinds of request, so one account serves every mode's tests
    ),
    "safe": WeChatAccountConfig(
        name="safe",
        token=TOKEN,
        app_id=APP_ID,
        app_secret=APP_SECRET,
        aes_key=AES_KEY,
        api_base="http://127.0.0.1:9",
    ),
    "plain": WeChatAccountConfig(
        name="plain",
        token="plain-token",
        app_id="wxplain000000000",
        app_secret="s",
        aes_key=None,
        api_base="http://127.0.0.1:9",
    ),
}


class FrozenClock:
    """A settable Unix clock."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeSink:
    """Stands in for the engine: records what it was given and answers as told.

    ``behaviour``: ``accept`` (replies after ``delay`` seconds), ``duplicate``, ``raise`` (accept fails),
    ``fail_replies`` (accepted, but producing the replies raises).
    """

    replies: list[OutboundMessage] = field(default_factory=lambda: [OutboundMessage("收到")])
    delay: float = 0.0
    behaviour: Literal["accept", "duplicate", "raise", "fail_replies"] = "accept"
    messages: list[InboundMessage] = field(default_factory=list)
    deferred: int = 0
    tasks: list[asyncio.Task[list[OutboundMessage]]] = field(default_factory=list)

    async def accept(self, message: InboundMessage) -> Accepted | Duplicate:
        self.messages.append(message)
        if self.behaviour == "raise":
            raise RuntimeError("database is down")
        if self.behaviour == "duplicate":
            return Duplicate()
        task = asyncio.ensure_future(self._produce())
        self.tasks.append(task)
        return Accepted(replies=asyncio.shield(task), defer=self._defer)

    async def _produce(self) -> list[OutboundMessage]:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.behaviour == "fail_replies":
            raise RuntimeError("policy crashed")
        return list(self.replies)

    def _defer(self) -> None:
        self.deferred += 1

    @property
    def last(self) -> InboundMessage:
        assert self.messages, "the sink was never called"
        return self.messages[-1]


class MemoryTokenCache:
    """The ``TokenCache`` protocol in memory; ``lock`` is an asyncio lock per key (one process)."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[str, float]] = {}
        self.ttls: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.lock_entries = 0

    async def get(self, key: str) -> str | None:
        item = self.data.get(key)
        if item is None or item[1] <= time.monotonic():
            return None
        return item[0]

    async def set(self, key: str, value: str, ttl: int) -> None:
        self.data[key] = (value, time.monotonic() + ttl)
        self.ttls[key] = ttl

    async def delete(self, key: str, only_if: str | None = None) -> None:
        if only_if is None or await self.get(key) == only_if:
            self.data.pop(key, None)

    @asynccontextmanager
    async def lock(self, key: str, timeout: float) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with asyncio.timeout(timeout):
            await lock.acquire()
        self.lock_entries += 1
        try:
            yield
        finally:
            lock.release()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def sink() -> AsyncIterator[FakeSink]:
    s = FakeSink()
    yield s
    for task in s.tasks:  # let the "engine" finish: nothing may be left pending at loop close
        if not task.done():
            task.cancel()
    await asyncio.gather(*s.tasks, return_exceptions=True)


ChannelFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def make_client(aiohttp_client: Any, sink: FakeSink, clock: FrozenClock) -> ChannelFactory:
    """``client = await make_client(**channel_kwargs)``: the channel on a real aiohttp app."""

    async def make(**kwargs: Any) -> TestClient[Any, Any]:
        kwargs.setdefault("clock", clock)
        channel = WeChatChannel(kwargs.pop("accounts", ACCOUNTS), kwargs.pop("sink", sink), **kwargs)
        app = web.Application()
        app.add_routes(channel.routes())
        client: TestClient[Any, Any] = await aiohttp_client(app)
        return client

    return make


@pytest.fixture
async def client(make_client: ChannelFactory) -> TestClient[Any, Any]:
    return await make_client(reply_budget=1.0)


def owner_for(client: Any, mode: Mode, clock: FrozenClock, **kw: Any) -> WeChatOwner:
    """An owner of the ``default`` account (EncodingAESKey and compatible mode, so every mode works)."""
    return WeChatOwner(
        client,
        token=TOKEN,
        app_id=APP_ID,
        aes_key=AES_KEY,
        openid=OPENID,
        account="default",
        mode=mode,
        clock=clock,
        **kw,
    )


@pytest.fixture(params=["plain", "compat", "safe"])
def mode(request: pytest.FixtureRequest) -> Mode:
    mode: Mode = request.param
    return mode


@pytest.fixture
def owner(client: TestClient[Any, Any], mode: Mode, clock: FrozenClock) -> WeChatOwner:
    return owner_for(client, mode, clock)


@pytest.fixture
def cache() -> MemoryTokenCache:
    return MemoryTokenCache()


__all__ = ["FakeWeChatAPI"]
