"""Staff alerts outside the console: the duty roster by project and weekday, SMS and the WeCom group robot,
and the repeat to the supervisor when nobody acknowledged an emergency, whether the bot opened the
urgent ticket in a chat or the desk logged it in the console."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from actions.alerts import escalate
from bot.store.models import StaffAlert, Ticket, utcnow
from tests.conftest import YezhuFactory, auth
from tests.console.conftest import js, login
from tests.fakes.sms_providers import FakeSmsProviders, FakeWeComRobot
from tests.sms.conftest import provider_settings, runtime, settle

WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@pytest.fixture
async def robot(aiohttp_server: Any) -> tuple[FakeWeComRobot, str]:
    fake = FakeWeComRobot()
    server = await aiohttp_server(fake.app())
    return fake, f"http://127.0.0.1:{server.port}/cgi-bin/webhook/send?key={fake.key}"


def config(tmp_path: Path, webhook: str, on_duty: str = "gongcheng") -> Path:
    path = tmp_path / "yezhu.yml"
    path.write_text(yaml.safe_dump({"duty": {"demo": {
        "weekdays": {d: [on_duty] for d in WEEK}, "supervisor": "zhuguan", "repeat_after_minutes": 10,
        "wecom_webhook": webhook,
    }}}, allow_unicode=True), encoding="utf-8")
    return path


async def emergency(client: Any, sender: str = "crm-9") -> None:
    resp = await client.post("/api/v1/messages", json={"sender": sender, "text": "8栋电梯困人了，里面有人出不来"},
                             headers=auth())
    assert "紧急" in (await resp.json())["replies"][0]["text"]


async def test_emergency_alerts_the_roster_by_sms_and_wecom_then_the_supervisor(
    yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str], robot: tuple[FakeWeComRobot, str], tmp_path: Path,
) -> None:
    provider, endpoint = fake
    bot, webhook = robot
    client = await yezhu(**provider_settings("aliyun", endpoint, provider), config=config(tmp_path, webhook))
    rt = runtime(client)
    await emergency(client)
    await settle(rt)
    [alert_sms] = [s for s in provider.sent if s.template == "SMS_460001002"]
    assert alert_sms.phone == "13900000013"  # 工程师老陈, on the roster every day
    assert "电梯" in alert_sms.params["summary"] and alert_sms.params["number"].startswith("BX")
    [message] = bot.messages
    content = message["markdown"]["content"]
    assert "电梯" in content and alert_sms.params["number"] in content and "/tickets/" in content

    # Nobody acknowledged: after 10 minutes the supervisor gets it too (once).
    later = utcnow() + dt.timedelta(minutes=11)
    assert await escalate(rt, now=utcnow()) == 0  # not yet
    assert await escalate(rt, now=later) == 1
    assert await escalate(rt, now=later + dt.timedelta(minutes=5)) == 0
    await settle(rt)
    boss = [s for s in provider.sent if s.template == "SMS_460001002" and s.phone == "13900000012"]
    assert len(boss) == 1 and "无人确认" in boss[0].params["summary"]
    assert len(bot.messages) == 2 and "再次提醒" in bot.messages[1]["markdown"]["content"]


async def test_an_acknowledged_emergency_is_not_repeated(
    yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str], robot: tuple[FakeWeComRobot, str], tmp_path: Path,
) -> None:
    provider, endpoint = fake
    _bot, webhook = robot
    client = await yezhu(**provider_settings("aliyun", endpoint, provider), config=config(tmp_path, webhook))
    rt = runtime(client)
    await emergency(client)
    await settle(rt)
    async with rt.db.session() as s, s.begin():
        ticket = (await s.execute(sa.select(Ticket))).scalar_one()
        ticket.status = "dispatched"
    assert await escalate(rt, now=utcnow() + dt.timedelta(minutes=30)) == 0
    async with rt.db.session() as s:
        alert = (await s.execute(sa.select(StaffAlert))).scalar_one()
    assert alert.acknowledged_at is not None and alert.escalated_at is None


async def test_roster_decides_who_is_on_duty(
    yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str], tmp_path: Path,
) -> None:
    provider, endpoint = fake
    client = await yezhu(**provider_settings("aliyun", endpoint, provider),
                         config=config(tmp_path, "", on_duty="zhuguan"))
    await emergency(client)
    await settle(runtime(client))
    assert [s.phone for s in provider.sent if s.template == "SMS_460001002"] == ["13900000012"]


async def test_a_refusing_robot_does_not_lose_the_sms(
    yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str], robot: tuple[FakeWeComRobot, str], tmp_path: Path,
) -> None:
    provider, endpoint = fake
    bot, webhook = robot
    client = await yezhu(**provider_settings("aliyun", endpoint, provider),
                         config=config(tmp_path, webhook.replace(bot.key, "wrong")))
    await emergency(client)
    await settle(runtime(client))
    assert bot.messages == [] and any(s.phone == "13900000013" for s in provider.sent)


async def test_an_overdue_emergency_ticket_alerts_the_duty_once(
    yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str], tmp_path: Path,
) -> None:
    from actions.alerts import overdue

    provider, endpoint = fake
    client = await yezhu(**provider_settings("aliyun", endpoint, provider), config=config(tmp_path, ""))
    rt = runtime(client)
    await emergency(client)
    await settle(rt)
    first = len(provider.sent)
    async with rt.db.session() as s:
        ticket = (await s.execute(sa.select(Ticket))).scalar_one()
    assert ticket.due_at is not None
    assert await overdue(rt, now=ticket.due_at - dt.timedelta(minutes=1)) == 0
    late = ticket.due_at + dt.timedelta(minutes=30)
    assert await overdue(rt, now=late) == 1
    assert await overdue(rt, now=late + dt.timedelta(minutes=5)) == 0  # once per ticket
    await settle(rt)
    [sms] = provider.sent[first:]
    assert sms.phone == "13900000013" and "超时30分钟" in sms.params["summary"]


# --- the desk logs a phoned-in emergency: the same paging as a chat -------------------------------


def _params(sms: Any) -> dict[str, str]:
    assert isinstance(sms.params, dict)  # Aliyun's single send: one parameter set
    return sms.params


async def _desk_ticket(client: Any, csrf: str, **fields: str) -> dict[str, Any]:
    found = await (await client.get("/console/api/owners", params={"q": "0001"}, headers=js(csrf))).json()
    zhang = next(o for o in found["owners"] if o["name"] == "张三")
    resp = await client.post("/console/tickets", headers={"Accept": "application/json"}, data={
        "_csrf": csrf, "origin": "phone", "kind": "repair", "owner_id": zhang["id"],
        "house_id": zhang["houses"][0]["id"], **fields})
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_an_urgent_repair_logged_by_the_desk_pages_the_duty_then_the_supervisor(
    yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str], robot: tuple[FakeWeComRobot, str], tmp_path: Path,
) -> None:
    provider, endpoint = fake
    bot, webhook = robot
    client = await yezhu(**provider_settings("aliyun", endpoint, provider), config=config(tmp_path, webhook))
    rt = runtime(client)
    csrf = await login(client, "kefu")
    # An ordinary repair phoned in pages nobody.
    await _desk_ticket(client, csrf, category="door_window", priority="normal", description="入户门锁有点卡，不急")
    await settle(rt)
    assert [s for s in provider.sent if s.template == "SMS_460001002"] == [] and bot.messages == []

    # 张三 phones: gas leak at home. The agent logs it as urgent: the engineer on duty is paged at once.
    ticket = await _desk_ticket(client, csrf, category="gas", priority="urgent",
                                description="业主来电：厨房燃气泄漏，闻到很浓的煤气味")
    await settle(rt)
    [page] = [s for s in provider.sent if s.template == "SMS_460001002"]
    assert page.phone == "13900000013"  # 工程师老陈, on the roster every day, as for a chat
    assert page.params == {"summary": "燃气泄漏", "location": "3栋2单元501", "number": ticket["number"]}
    [message] = bot.messages
    content = message["markdown"]["content"]
    assert "燃气泄漏" in content and ticket["number"] in content and f"/tickets/{ticket['ticket_id']}" in content

    # Nobody took it: ten minutes later the supervisor is paged too, once.
    later = utcnow() + dt.timedelta(minutes=11)
    assert await escalate(rt, now=later) == 1
    assert await escalate(rt, now=later + dt.timedelta(minutes=5)) == 0
    await settle(rt)
    [boss] = [s for s in provider.sent if s.template == "SMS_460001002" and s.phone == "13900000012"]
    assert _params(boss) == {"summary": "无人确认：燃气泄漏", "location": "3栋2单元501", "number": ticket["number"]}
    assert len(bot.messages) == 2 and "再次提醒" in bot.messages[1]["markdown"]["content"]


async def test_a_desk_ticket_made_urgent_later_pages_the_duty_once(
    yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str], tmp_path: Path,
) -> None:
    provider, endpoint = fake
    client = await yezhu(**provider_settings("aliyun", endpoint, provider), config=config(tmp_path, ""))
    rt = runtime(client)
    csrf = await login(client, "kefu")
    ticket = await _desk_ticket(client, csrf, category="plumbing", priority="normal", description="卫生间漏水")
    await settle(rt)
    assert [s for s in provider.sent if s.template == "SMS_460001002"] == []
    # The owner calls back: water is everywhere now. The agent raises it to urgent, twice by mistake.
    for _ in range(2):
        resp = await client.post(f"/console/tickets/{ticket['ticket_id']}/edit", headers=js(csrf),
                                 data={"priority": "normal"})
        resp = await client.post(f"/console/tickets/{ticket['ticket_id']}/edit", headers=js(csrf),
                                 data={"priority": "urgent", "description": "卫生间水管爆了，满地是水"})
        assert resp.status == 200, await resp.text()
    await settle(rt)
    [page] = [s for s in provider.sent if s.template == "SMS_460001002"]
    assert page.phone == "13900000013"
    assert _params(page) == {"summary": "漏水/水浸", "location": "3栋2单元501", "number": ticket["number"]}
