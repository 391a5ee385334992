"""Multi-turn conversations through the real WeChat webhook (signed XML), the real NLU and policy."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from bot.runtime import RUNTIME, Runtime
from bot.store.models import SmsMessage
from tests.conftest import WECHAT, YezhuFactory, auth
from tests.fakes.wechat_client import WeChatOwner
from tests.fakes.wechat_server import FakeWeChatAPI


class Chat:
    """One owner's WeChat in a test: ``await chat("卫生间漏水")`` returns the bot's reply text."""

    def __init__(self, client: Any, openid: str) -> None:
        self.client = client
        self.openid = openid
        self.wechat = WeChatOwner(client, token=WECHAT["wechat_token"], app_id=WECHAT["wechat_app_id"], openid=openid)
        self.replies: list[str] = []

    @property
    def rt(self) -> Runtime:
        return self.client.app[RUNTIME]

    async def __call__(self, text: str) -> str:
        reply = await self.wechat.send_text(text)
        assert reply, f"no passive reply to {text!r}"
        self.replies.append(reply)
        return reply

    async def tickets(self, **params: str) -> list[dict[str, Any]]:
        resp = await self.client.get("/api/v1/tickets", params=params, headers=auth())
        return (await resp.json())["tickets"]

    async def conversation(self) -> dict[str, Any]:
        resp = await self.client.get("/api/v1/conversations", params={"channel": "wechat", "sender": self.openid},
                                     headers=auth())
        return (await resp.json())["conversations"][-1]

    async def last_sms(self, phone: str) -> str:
        async with self.rt.db.session() as s:
            return (await s.execute(
                sa.select(SmsMessage.text).where(SmsMessage.phone == phone).order_by(SmsMessage.id.desc()).limit(1)
            )).scalar_one()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> dict[str, str]:
    """Every flow on both databases: the engine writes most turns with dialect-specific statements."""
    return {} if request.param == "sqlite" else {"database_url": request.getfixturevalue("pg_url")}


@pytest.fixture
async def client(yezhu: YezhuFactory, database: dict[str, str]) -> Any:
    async with FakeWeChatAPI({WECHAT["wechat_app_id"]: WECHAT["wechat_app_secret"]}) as api:
        # WeChat waits 5 s; 4.5 s (as the stories have) rather than 3 s keeps a turn on a loaded machine, with
        # the other test worker busy too, a passive reply, which is what these tests read.
        yield await yezhu(wechat_api_base=api.base_url, reply_budget=4.5, **database)


@pytest.fixture
def chat(client: Any) -> Any:
    def make(openid: str) -> Chat:
        return Chat(client, openid)

    return make
