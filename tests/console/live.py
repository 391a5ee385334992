"""A real listening Yezhu (not the in-process test client) with WeChat's API faked, and Debian's Chromium.

Browser tests need a socket the browser can reach: the app runs on ``127.0.0.1:<free port>`` in the
test's event loop, the WeChat customer-service API is :class:`~tests.fakes.wechat_server.FakeWeChatAPI`
and owners are :class:`~tests.fakes.wechat_client.WeChatOwner` posting signed messages to our webhook.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from bot import conversation as verbs
from bot.app import create_app
from bot.events import EventBatch
from bot.runtime import RUNTIME, Runtime
from bot.store.models import (
    Building,
    Conversation,
    House,
    Identity,
    Owner,
    OwnerHouse,
    Ticket,
    TicketEvent,
    utcnow,
)
from tests.conftest import CI, WECHAT, make_settings
from tests.fakes.wechat_client import WeChatOwner
from tests.fakes.wechat_server import FakeWeChatAPI

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = os.environ.get("YEZHU_TEST_SCREENSHOTS")
"""Set to a folder (docs/screenshots) to save screenshots of the real pages while the tests run."""


def have_chromium() -> bool:
    return CHROMIUM.exists()


def shot_path(name: str) -> str:
    assert SCREENSHOTS
    Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
    return str(Path(SCREENSHOTS) / f"{name}.png")


@dataclass
class Live:
    client: TestClient[Any, Any]
    api: FakeWeChatAPI

    @property
    def base(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    @property
    def rt(self) -> Runtime:
        return self.client.app[RUNTIME]

    def owner(self, openid: str = "oDEMO0001") -> WeChatOwner:
        return WeChatOwner(self.client, token=WECHAT["wechat_token"], app_id=self.api.app_id, openid=openid)


@pytest.fixture
async def live(sqlite_demo_template: Path, tmp_path: Path) -> AsyncIterator[Live]:
    path = tmp_path / "live.db"
    shutil.copy(sqlite_demo_template, path)
    async with FakeWeChatAPI() as api:
        settings = make_settings(database_url=f"sqlite+aiosqlite:///{path}", wechat_app_id=api.app_id,
                                 wechat_app_secret=api.app_secret, wechat_api_base=api.base_url)
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
        await client.start_server()
        nlu = client.app[RUNTIME].nlu
        if nlu is not None:  # load the model now, not during the first owner's message
            await nlu.aparse("你好")
        try:
            yield Live(client, api)
        finally:
            await client.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not have_chromium():
        message = f"Debian's Chromium is not installed ({CHROMIUM}); run scripts/install-browser"
        if CI:
            pytest.fail(message + " — CI=true: the browser tests must run", pytrace=False)
        print(f"SKIP browser test: {message}")
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def new_page(browser: Any, live: Live, username: str, password: str) -> Any:
    """A fresh browser context logged in as ``username`` through the login form."""
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1366, "height": 860},
                                        timezone_id="Asia/Shanghai")
    page = await context.new_page()
    await page.goto(live.base + "/console/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r"/console/(\?|$|tickets)"))
    return page


async def screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        await page.screenshot(path=shot_path(name), full_page=False)


async def open_conversation(rt: Runtime, openid: str) -> Conversation:
    async with rt.db.session() as s:
        return (await s.execute(
            sa.select(Conversation).join(Identity, Identity.id == Conversation.identity_id)
            .where(Identity.external_id == openid, Conversation.mode != verbs.CLOSED)
            .order_by(Conversation.id.desc()).limit(1)
        )).scalar_one()


async def hand_over(rt: Runtime, conv_id: int, *, reason: str = "human", priority: int = 0) -> None:
    """Put a conversation in the queue the way the dialogue policy does (bot.conversation.hand_over)."""
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        conv = await s.get_one(Conversation, conv_id)
        verbs.hand_over(s, batch, conv, reason=reason, priority=priority)
    await batch.publish(rt.services.pubsub)


async def ask_for_a_person(live: Live, owner: WeChatOwner, text: str = "我要找人工客服") -> int:
    """The owner asks for a person (the dialogue policy hands over); returns the waiting conversation's id."""
    await owner.send_text(text)
    conv = await open_conversation(live.rt, owner.openid)
    assert conv.mode == verbs.WAITING, f"the conversation should wait for a person, not be {conv.mode}"
    return conv.id


async def make_ticket(rt: Runtime, *, owner_phone: str, conversation_id: int | None, kind: str = "repair",
                      priority: str = "normal", description: str = "卫生间地漏返水，楼下天花板有水渍",
                      category: str = "漏水", created: dt.datetime | None = None) -> Ticket:
    """A ticket as actions/tickets.py files it (status new, a 'created' event)."""
    async with rt.db.session() as s, s.begin():
        owner = (await s.execute(sa.select(Owner).where(Owner.phone == owner_phone))).scalar_one()
        house, building = (await s.execute(
            sa.select(House, Building).join(OwnerHouse, OwnerHouse.house_id == House.id)
            .join(Building, Building.id == House.building_id).where(OwnerHouse.owner_id == owner.id).limit(1)
        )).one()
        prefix = {"repair": "BX", "complaint": "TS", "inquiry": "ZX", "certificate": "BZ"}[kind]
        ticket = Ticket(
            number=f"{prefix}{utcnow():%Y%m%d}-{secrets.randbelow(9000) + 1000}", kind=kind, category=category,
            project_id=building.project_id, house_id=house.id, owner_id=owner.id, conversation_id=conversation_id,
            contact_phone=owner.phone, description=description, priority=priority, status="new",
            created_at=created or utcnow(),
        )
        s.add(ticket)
        await s.flush()
        s.add(TicketEvent(ticket_id=ticket.id, kind="created", actor="bot", data={"status": "new"}))
    return ticket
