"""Fixtures for the SMS channel: the local fake providers and the app wired to them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.runtime import RUNTIME, Runtime
from bot.settings import Settings
from tests.fakes.sms_providers import FakeSmsProviders

KEY = "cb-key-0123456789"


def fake_for(settings: Settings) -> FakeSmsProviders:
    """A fake knowing the demo catalogue's approved codes (per provider) and their parameters."""
    templates: dict[str, list[str]] = {}
    for t in settings.sms_templates.values():
        for code in (t.aliyun, t.tencent):
            if code:
                templates[code] = list(t.params)
    return FakeSmsProviders(templates=templates)


@pytest.fixture
async def fake(aiohttp_server: Any) -> tuple[FakeSmsProviders, str]:
    provider = fake_for(Settings(_env_file=None))  # type: ignore[call-arg]
    server = await aiohttp_server(provider.app())
    return provider, f"http://127.0.0.1:{server.port}"


def provider_settings(name: str, endpoint: str, fake: FakeSmsProviders) -> dict[str, Any]:
    common: dict[str, Any] = {"sms_provider": name, "sms_endpoint": endpoint, "sms_callback_key": KEY,
                              "sms_timeout": 1.0, "sms_window": "00:00-24:00", "scheduler": False}
    if name == "aliyun":
        common.update(aliyun_access_key_id=fake.access_key_id, aliyun_access_key_secret=fake.access_key_secret)
    elif name == "tencent":
        common.update(tencent_secret_id=fake.secret_id, tencent_secret_key=fake.secret_key,
                      tencent_sms_app_id=fake.sdk_app_id)
    return common


async def settle(rt: Runtime, rounds: int = 6) -> None:
    """Let turns, after-commit work and in-process jobs finish (they start one another)."""
    for _ in range(rounds):
        await rt.engine.drain()
        await rt.jobs.broker.wait_all()  # type: ignore[attr-defined]
        await asyncio.sleep(0.02)


SmsApp = Callable[..., Awaitable[TestClient[Any, Any]]]


def runtime(client: TestClient[Any, Any]) -> Runtime:
    return client.app[RUNTIME]
