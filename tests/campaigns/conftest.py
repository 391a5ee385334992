"""Campaign fixtures: a small project whose owners cover every audience and channel case, the app wired
to the local fake WeChat API and the fake SMS providers (Aliyun)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from actions.campaigns.context import today_china
from actions.stages import anniversary
from bot import security
from bot.demo import DEFAULT_WARRANTY
from bot.runtime import RUNTIME, Runtime
from bot.security import hash_password
from bot.store.models import (
    Building,
    CertificateRecord,
    House,
    Identity,
    Owner,
    OwnerHouse,
    OwnerTag,
    Project,
    StaffUser,
    SurveyTemplate,
)
from tests.conftest import WECHAT
from tests.fakes.sms_providers import FakeSmsProviders
from tests.fakes.wechat_server import FakeWeChatAPI
from tests.sms.conftest import fake_for, provider_settings, settle

__all__ = ["settle"]


@dataclass
class Seeded:
    project_id: int
    owners: dict[str, int]
    houses: dict[str, int]
    phones: dict[str, str]


# name: (house "building-unit-room", handover offset in days from today (None: none), openid, phone, extras)
OWNERS: dict[str, tuple[str, int | str | None, str | None, str, dict[str, Any]]] = {
    "甲": ("1-1-101", -200, "oCAMP_A", "13900000001", {"cert": "ready"}),
    "乙": ("1-1-102", -500, None, "13900000002", {"cert": "ready"}),
    "丙": ("1-1-103", 90, "oCAMP_C", "13900000003", {}),
    "丁": ("2-1-201", 120, None, "13900000004", {"cert": "ready", "opt_out": True}),
    "戊": ("2-1-202", -2000, None, "", {"cert": "processing"}),
    "己": ("1-1-101", -200, "oCAMP_F", "13900000006", {"relation": "family"}),
    "庚": ("2-2-301", "warranty", "oCAMP_G", "13900000007", {"tag": "VIP"}),
}


_X_HASH: dict[tuple[int, int, int], str] = {}


def x_hash() -> str:
    """A hash of the staff password "x", made once per hashing cost (the real argon2 cost is about half a
    second a hash on a small machine; the console tests' conftest makes it cheap)."""
    h = security._hasher
    key = (h.time_cost, h.memory_cost, h.parallelism)
    if key not in _X_HASH:
        _X_HASH[key] = hash_password("x")
    return _X_HASH[key]


async def seed(rt: Runtime) -> Seeded:
    today = today_china()
    async with rt.db.session() as s, s.begin():
        project = Project(code="camp", name="测试花园", settings={
            "warranty": DEFAULT_WARRANTY, "certificate_collection": {"place": "客服中心", "hours": "工作日9:00-17:00"}})
        s.add(project)
        await s.flush()
        buildings = {}
        for name in ("1", "2"):
            building = Building(project_id=project.id, name=name)
            s.add(building)
            await s.flush()
            buildings[name] = building.id
        houses: dict[str, int] = {}
        owners: dict[str, int] = {}
        for name, (label, offset, openid, phone, extra) in OWNERS.items():
            if label not in houses:
                b, unit, room = label.split("-")
                handover: dt.date | None
                if offset == "warranty":  # the electrical warranty (2 years) ends in 30 days
                    handover = anniversary(today + dt.timedelta(days=30), -2)
                else:
                    handover = today + dt.timedelta(days=int(offset)) if offset is not None else None
                house = House(building_id=buildings[b], unit=unit, room=room, handover_date=handover)
                s.add(house)
                await s.flush()
                houses[label] = house.id
                if extra.get("cert"):
                    s.add(CertificateRecord(house_id=house.id, status=extra["cert"]))
            owner = Owner(name=f"{name}先生", phone=phone, sms_opt_out=bool(extra.get("opt_out")))
            s.add(owner)
            await s.flush()
            owners[name] = owner.id
            s.add(OwnerHouse(owner_id=owner.id, house_id=houses[label], relation=extra.get("relation", "owner")))
            if openid:
                s.add(Identity(channel="wechat", account="default", external_id=openid, owner_id=owner.id,
                               subscribed=True))
            if extra.get("tag"):
                s.add(OwnerTag(owner_id=owner.id, tag=extra["tag"]))
        for username, role, phone in (("admin", "admin", "13700000000"), ("kefu", "agent", "13700000001"),
                                      ("zhuguan", "supervisor", "13700000002")):
            s.add(StaffUser(username=username, display_name=username, role=role, password_hash=x_hash(),
                            phone=phone))
        s.add(SurveyTemplate(code="periodic-2026", name="2026年度满意度调查", kind="periodic", items=[
            {"code": "overall", "text": "总体满意度", "area": "物业管理", "type": "score"}]))
    return Seeded(project.id, owners, houses, {n: o[3] for n, o in OWNERS.items()})


@pytest.fixture
async def fakes(aiohttp_server: Any) -> Any:
    """The fake WeChat API (knowing the test app) and the fake SMS providers, started."""
    from bot.settings import Settings

    sms = fake_for(Settings(_env_file=None))  # type: ignore[call-arg]
    server = await aiohttp_server(sms.app())
    async with FakeWeChatAPI({WECHAT["wechat_app_id"]: WECHAT["wechat_app_secret"]}) as wechat:
        yield wechat, sms, f"http://127.0.0.1:{server.port}"


def wired(wechat: FakeWeChatAPI, sms: FakeSmsProviders, endpoint: str, **extra: Any) -> dict[str, Any]:
    values = {**provider_settings("aliyun", endpoint, sms), "wechat_api_base": wechat.base_url,
              "sms_rate_limit": 1000.0, "sms_daily_cap": 100, "campaign_lease": 2.0}
    values.update(extra)
    return values


def runtime(client: TestClient[Any, Any]) -> Runtime:
    return client.app[RUNTIME]
