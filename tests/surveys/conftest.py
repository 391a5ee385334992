"""Callback-survey tests: the real app (WeChat webhook, console, SMS callbacks), the survey job called
directly at a daytime moment (the cron does not run in tests)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from actions import surveys
from bot import security
from bot.store.models import Owner, StaffUser, SurveyResponse, Ticket, utcnow
from tests.conftest import WECHAT, YezhuFactory
from tests.console.conftest import js, login
from tests.conversations.conftest import Chat
from tests.fakes.wechat_server import FakeWeChatAPI

CHINA = dt.timezone(dt.timedelta(hours=8))
NUMBER = re.compile(r"(?:BX|TS|HF)\d{8}-\d{4}")


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def daytime() -> dt.datetime:
    """A moment inside the sending window (Beijing 10:00 today or tomorrow), after every row's due time."""
    local = (utcnow() + dt.timedelta(minutes=1)).astimezone(CHINA)
    day = local.date() if local.hour < 10 else local.date() + dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, 10, 0, tzinfo=CHINA).astimezone(dt.UTC)


class Desk:
    """The staff side of a test: close tickets through the console's routes, run the survey job."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.csrf = ""

    @property
    def rt(self) -> Any:
        from bot.runtime import RUNTIME

        return self.client.app[RUNTIME]

    async def login(self, username: str = "admin") -> None:
        self.csrf = await login(self.client, username)

    async def post(self, path: str, **data: Any) -> Any:
        return await self.client.post(f"/console{path}", headers=js(self.csrf), json=data)

    async def close(self, number: str, *, engineer: str = "gongcheng",
                    verbs: tuple[str, ...] = ("dispatch", "complete", "close")) -> int:
        """dispatch → complete → close through the console (the ticket workflow's real path)."""
        async with self.rt.db.session() as s:
            ticket = (await s.execute(sa.select(Ticket).where(Ticket.number == number))).scalar_one()
            eng = (await s.execute(sa.select(StaffUser.id).where(StaffUser.username == engineer))).scalar_one()
        if not self.csrf:
            await self.login()
        for verb in verbs:
            data = {"assignee_id": eng} if verb == "dispatch" else {}
            resp = await self.post(f"/tickets/{ticket.id}/{verb}", **data)
            assert resp.status == 200, (verb, await resp.text())
        return ticket.id

    async def invite(self) -> dict[str, int]:
        return {"invited": await surveys.invite_due(self.rt, now=daytime())}

    async def responses(self, **where: Any) -> list[SurveyResponse]:
        async with self.rt.db.session() as s:
            q = sa.select(SurveyResponse).order_by(SurveyResponse.id)
            for key, value in where.items():
                q = q.where(getattr(SurveyResponse, key) == value)
            return list((await s.execute(q)).scalars())

    async def ticket(self, number: str) -> Ticket:
        async with self.rt.db.session() as s:
            return (await s.execute(sa.select(Ticket).where(Ticket.number == number))).scalar_one()

    async def owner_id(self, phone: str) -> int:
        async with self.rt.db.session() as s:
            return (await s.execute(sa.select(Owner.id).where(Owner.phone == phone))).scalar_one()


@pytest.fixture
async def client(yezhu: YezhuFactory) -> Any:
    async with FakeWeChatAPI({WECHAT["wechat_app_id"]: WECHAT["wechat_app_secret"]}) as api:
        client = await yezhu(wechat_api_base=api.base_url, survey_delay=0)
        client.wechat_api = api
        yield client


@pytest.fixture
def desk(client: Any) -> Desk:
    return Desk(client)


@pytest.fixture
def chat(client: Any) -> Any:
    def make(openid: str) -> Chat:
        owner = Chat(client, openid)
        owner.rt.engine.clock = daytime
        return owner

    return make


async def file_repair(owner: Chat, text: str = "卫生间漏水了", visit: str = "明天上午") -> str:
    reply = await owner(text)
    if "上门" in reply and "请确认" not in reply:
        reply = await owner(visit)
    assert "请确认报修信息" in reply, reply
    reply = await owner("确认")
    number = NUMBER.search(reply)
    assert number, reply
    return number.group()


async def invited(owner: Chat, desk: Desk) -> str:
    """Run the survey job; return the invitation the owner's chat received."""
    assert (await desk.invite())["invited"] >= 1
    conv = await owner.conversation()
    return str(conv["messages"][-1]["text"])


from tests.console.live import browser, live  # noqa: E402,F401 (fixtures of the browser test)
from tests.sms.conftest import fake  # noqa: E402,F401 (the local fake SMS providers)
