"""The exactly-once proof: a real sending process is killed (SIGKILL) in the middle of a campaign of 200
owners and the campaign is sent again; the fake WeChat API and the fake SMS provider then hold exactly one
message per owner. On SQLite the process is ``yezhu campaign send`` itself (the embedded mode delivers from
it); on PostgreSQL + Redis it is the ``yezhu worker`` the command handed the campaign to, and a second
worker takes over."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp.test_utils import TestServer

from actions import campaigns
from bot.runtime import Runtime
from bot.security import hash_password
from bot.store.models import Building, Delivery, House, Identity, Owner, OwnerHouse, Project, StaffUser
from tests.conftest import WECHAT, make_settings
from tests.fakes.wechat_server import FakeWeChatAPI
from tests.sms.conftest import fake_for

OWNERS = 200


async def seed_many(rt: Runtime) -> None:
    """200 owners, one house each; the even ones follow the Official Account, the odd ones have SMS only."""
    async with rt.db.session() as s, s.begin():
        project = Project(code="big", name="大花园", settings={"campaign_approval_threshold": 1000})
        s.add(project)
        await s.flush()
        building = Building(project_id=project.id, name="1")
        s.add(building)
        await s.flush()
        await s.execute(sa.insert(House), [{"building_id": building.id, "unit": "1", "room": str(100 + i)}
                                           for i in range(OWNERS)])
        await s.execute(sa.insert(Owner), [{"name": f"业主{i}", "phone": f"1380000{i:04d}"} for i in range(OWNERS)])
        houses = (await s.execute(sa.select(House.id).order_by(House.id))).scalars().all()
        owners = (await s.execute(sa.select(Owner.id).order_by(Owner.id))).scalars().all()
        await s.execute(sa.insert(OwnerHouse), [{"owner_id": o, "house_id": h} for o, h in zip(owners, houses)])
        await s.execute(sa.insert(Identity), [
            {"channel": "wechat", "account": "default", "external_id": f"oBIG{i:04d}", "owner_id": o, "subscribed": True}
            for i, o in enumerate(owners) if i % 2 == 0])
        s.add(StaffUser(username="admin", display_name="管理员", role="admin", password_hash=hash_password("x")))


async def spawn(args: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:  # the child keeps its own descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", *args, env=env, cwd=log.parent,
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT)


async def until(predicate: Any, timeout: float, what: str) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def kill_and_resume(db_url: str, tmp_path: Path, redis_url: str | None = None) -> None:
    settings = make_settings(database_url=db_url)
    sms = fake_for(settings)
    sms.delay = 0.01
    sms_server = TestServer(sms.app(), host="127.0.0.1", port=0)
    await sms_server.start_server()
    async with FakeWeChatAPI({WECHAT["wechat_app_id"]: WECHAT["wechat_app_secret"]}, send_delay=0.01) as wechat:
        rt = Runtime(settings, nlu=None)
        await seed_many(rt)
        campaign = (await campaigns.create(rt, kind="notice", project="big", params={"content": "明日上午停水检修"})
                    ).campaign
        assert campaign.status == "draft"
        env = {k: v for k, v in os.environ.items() if not k.startswith("YEZHU_")}
        env.update({
            "YEZHU_DATABASE_URL": db_url, "YEZHU_WECHAT_APP_ID": WECHAT["wechat_app_id"],
            "YEZHU_WECHAT_APP_SECRET": WECHAT["wechat_app_secret"], "YEZHU_WECHAT_TOKEN": WECHAT["wechat_token"],
            "YEZHU_WECHAT_API_BASE": wechat.base_url, "YEZHU_SMS_PROVIDER": "aliyun",
            "YEZHU_SMS_ENDPOINT": f"http://127.0.0.1:{sms_server.port}",
            "YEZHU_ALIYUN_ACCESS_KEY_ID": sms.access_key_id, "YEZHU_ALIYUN_ACCESS_KEY_SECRET": sms.access_key_secret,
            "YEZHU_SMS_WINDOW": "00:00-24:00", "YEZHU_SMS_RATE_LIMIT": "1000", "YEZHU_CAMPAIGN_LEASE": "1",
            "YEZHU_CAMPAIGN_BATCH": "20", "YEZHU_CAMPAIGN_CONCURRENCY": "8", "YEZHU_SCHEDULER": "false",
            "YEZHU_JOB_REDELIVERY_SECONDS": "1", "YEZHU_LOG_LEVEL": "WARNING",
        })
        if redis_url:
            env["YEZHU_REDIS_URL"] = redis_url
        log = tmp_path / "send.log"
        sent = lambda: len(wechat.template_messages) + len(sms.sent)  # noqa: E731
        try:
            if redis_url is None:
                victim = await spawn(["campaign", "send", str(campaign.id), "--yes", "--quiet"], env, log)
                follower = None
            else:
                victim = await spawn(["worker"], env, log)
                follower = await spawn(["campaign", "send", str(campaign.id), "--yes", "--quiet"], env, log)
            await until(lambda: sent() >= 60, 60, "a third of the campaign")
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            at_kill = sent()
            assert at_kill < OWNERS, "the campaign finished before it could be interrupted"
            if redis_url is None:
                again = await spawn(["campaign", "send", str(campaign.id), "--yes", "--quiet"], env, log)
            else:  # a second worker claims the dead worker's job; the command was following all along
                again = await spawn(["worker"], env, log)
                assert follower is not None
                assert await asyncio.wait_for(follower.wait(), 90) == 0, log.read_text()
            if redis_url is None:
                assert await asyncio.wait_for(again.wait(), 90) == 0, log.read_text()
        finally:
            for p in (victim, locals().get("follower"), locals().get("again")):
                if p is not None and p.returncode is None:
                    p.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(p.wait(), 15)
            await sms_server.close()

        # Every owner got exactly one message: 100 template messages, 100 SMS, nobody twice.
        per_openid = collections.Counter(m.touser for m in wechat.template_messages)
        per_phone = collections.Counter(x.phone for x in sms.sent)
        assert len(per_openid) == OWNERS // 2 and set(per_openid.values()) == {1}, per_openid.most_common(3)
        assert len(per_phone) == OWNERS // 2 and set(per_phone.values()) == {1}, per_phone.most_common(3)
        async with rt.db.session() as s:
            statuses = dict((await s.execute(sa.select(Delivery.status, sa.func.count()).where(
                Delivery.campaign_id == campaign.id).group_by(Delivery.status))).all())
        assert statuses == {"sent": OWNERS}
        assert (await campaigns.status(rt, campaign.id))["status"] == "done"
        await rt.db.close()


async def test_killed_send_resumes_exactly_once_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    await kill_and_resume(sqlite_url, tmp_path)


async def test_killed_worker_resumes_exactly_once_on_postgres_and_redis(pg_url: str, redis_url: str,
                                                                       tmp_path: Path) -> None:
    await kill_and_resume(pg_url, tmp_path, redis_url)
