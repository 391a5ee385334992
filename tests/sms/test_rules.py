"""The rules every SMS obeys (DOMAIN.md): opt-out and consent, quiet hours, daily caps, approved templates."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from actions import optout
from actions.notify import window_opens
from bot.events import EventBatch
from bot.jobs import sms as sms_jobs
from bot.store.models import Owner, SmsConsent, SmsMessage, utcnow
from tests.conftest import WECHAT, YezhuFactory, auth
from tests.console.conftest import login
from tests.fakes.sms_providers import FakeSmsProviders
from tests.fakes.wechat_client import WeChatOwner
from tests.fakes.wechat_server import FakeWeChatAPI
from tests.sms.conftest import provider_settings, runtime, settle
from tests.sms.test_channel import push, sms_of, uplink

CN = dt.timezone(dt.timedelta(hours=8))


@pytest.mark.parametrize("text", ["T", "t", "TD", "td。", "Ｔ", " r ", "R!", "N", "退订", "退订。", "拒收", "【退订】",
                                  "请帮我退订", "Td ", "退 订"])
def test_opt_out_words(text: str) -> None:
    assert optout.classify(text) == "opt_out"


@pytest.mark.parametrize("text", ["订阅", "恢复", "恢复订阅。", "重新订阅"])
def test_opt_in_words(text: str) -> None:
    assert optout.classify(text) == "opt_in"


@pytest.mark.parametrize("text", ["T栋漏水", "R是什么意思", "3栋2单元501", "退订的话物业费还要交吗", "不退订", "好的", "",
                                  "TD是什么", "NO"])
def test_other_text_is_not_an_opt_out(text: str) -> None:
    assert optout.classify(text) is None


def test_sending_window() -> None:
    at = lambda h, m=0: dt.datetime(2026, 12, 1, h, m, tzinfo=CN)  # noqa: E731
    assert window_opens(at(8), "08:00-21:00") is None
    assert window_opens(at(20, 59), "08:00-21:00") is None
    assert window_opens(at(21), "08:00-21:00") == dt.datetime(2026, 12, 2, 8, tzinfo=CN)
    assert window_opens(at(6, 30), "08:00-21:00") == dt.datetime(2026, 12, 1, 8, tzinfo=CN)
    assert window_opens(at(23), "22:00-06:00") is None  # a window across midnight
    assert window_opens(at(23, 59), "00:00-24:00") is None
    assert window_opens(at(12), "22:00-06:00") == dt.datetime(2026, 12, 1, 22, tzinfo=CN)


async def _notice(rt: Any, phone: str, kind: str = "notice", now: dt.datetime | None = None, **params: str) -> int:
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        row = await rt.notifier.sms(s, batch, phone=phone, kind=kind, now=now,
                                    params=params or {"project": "示范花园", "content": "明日9:00-12:00停水"})
    await batch.publish(rt.services.pubsub)
    await settle(rt)
    return row.id


async def _row(rt: Any, sms_id: int) -> SmsMessage:
    async with rt.db.session() as s:
        return await s.get_one(SmsMessage, sms_id)


async def test_opt_out_by_sms_is_honoured_at_once_and_acknowledged_once(
    yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str]
) -> None:
    provider, endpoint = fake
    client = await yezhu(**provider_settings("aliyun", endpoint, provider))
    rt = runtime(client)
    for word in ("T", "td。"):  # said twice: acknowledged once
        assert (await push(client, "aliyun", "inbound", uplink("aliyun", "13800000001", word))).status == 200
        await settle(rt)
    acks = [s for s in provider.sent if s.template == "SMS_460001019"]
    assert len(acks) == 1 and acks[0].phone == "13800000001"
    resp = await client.get("/api/v1/owners", params={"phone": "13800000001"}, headers=auth())
    [owner] = (await resp.json())["owners"]
    assert owner["sms_opt_out"] is True and owner["name"] == "张三"
    assert [(h["action"], h["source"], h["text"]) for h in owner["sms_consent_history"]] == [
        ("opt_out", "sms", "T"), ("opt_out", "sms", "td。")]
    await login(client, "kefu")  # the owner page shows the same to staff
    page = await (await client.get(f"/console/owners/{owner['id']}")).text()
    assert "已退订通知短信" in page and "“td。”" in page and "已送达" not in page
    # Notices stop; a verification code still goes.
    skipped = await _row(rt, await _notice(rt, "13800000001"))
    assert skipped.status == "skipped" and skipped.error_code == "opted_out"
    code = await _row(rt, await _notice(rt, "13800000001", kind="verification_code", code="123456"))
    assert code.status == "sent"
    # 订阅 opts back in, acknowledged; notices flow again.
    await push(client, "aliyun", "inbound", uplink("aliyun", "13800000001", "订阅"))
    await settle(rt)
    assert any(s.template == "SMS_460001020" for s in provider.sent)
    assert (await _row(rt, await _notice(rt, "13800000001"))).status == "sent"
    # The keywords never reached the bot: no conversation was opened for them.
    resp = await client.get("/api/v1/conversations", params={"channel": "sms", "sender": "13800000001"},
                            headers=auth())
    assert (await resp.json())["conversations"] == []


async def test_opting_out_in_wechat_stops_sms_notices(yezhu: YezhuFactory) -> None:
    async with FakeWeChatAPI({WECHAT["wechat_app_id"]: WECHAT["wechat_app_secret"]}) as api:
        client = await yezhu(wechat_api_base=api.base_url)
        rt = runtime(client)
        owner = WeChatOwner(client, token=WECHAT["wechat_token"], app_id=WECHAT["wechat_app_id"], openid="oDEMO0001")
        reply = await owner.send_text("退订短信")
        assert "退订" in reply
        async with rt.db.session() as s:
            zhang = (await s.execute(sa.select(Owner).where(Owner.phone == "13800000001"))).scalar_one()
            history = (await s.execute(sa.select(SmsConsent))).scalars().all()
        assert zhang.sms_opt_out is True
        assert [(h.action, h.source) for h in history] == [("opt_out", "wechat")]
        reply = await owner.send_text("恢复短信")
        assert "恢复" in reply
        async with rt.db.session() as s:
            assert (await s.get_one(Owner, zhang.id)).sms_opt_out is False


async def test_quiet_hours_defer_notices_but_not_codes(yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str]) -> None:
    provider, endpoint = fake
    client = await yezhu(**{**provider_settings("aliyun", endpoint, provider), "sms_window": "08:00-21:00"})
    rt = runtime(client)
    night = dt.datetime(2026, 12, 1, 22, 30, tzinfo=CN)
    notice = await _row(rt, await _notice(rt, "13800000002", now=night))
    assert notice.status == "deferred" and notice.not_before == dt.datetime(2026, 12, 2, 8, tzinfo=CN)
    code = await _row(rt, await _notice(rt, "13800000002", kind="verification_code", now=night, code="654321"))
    assert code.status == "sent"
    assert [s.template for s in provider.sent] == ["SMS_460001001"]
    # When the window opens the sweep sends it.
    async with rt.db.session() as s, s.begin():
        await s.execute(sa.update(SmsMessage).where(SmsMessage.id == notice.id).values(
            not_before=utcnow() - dt.timedelta(seconds=1)))
    await sms_jobs.sweep(rt)
    await settle(rt)
    assert (await _row(rt, notice.id)).status == "sent"


async def test_a_project_window_per_kind(yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str]) -> None:
    from bot.store.models import Project

    provider, endpoint = fake
    client = await yezhu(**provider_settings("aliyun", endpoint, provider))
    rt = runtime(client)
    async with rt.db.session() as s, s.begin():
        project = (await s.execute(sa.select(Project).where(Project.code == "demo"))).scalar_one()
        project.settings = {**project.settings, "sms_windows": {"outage": "09:00-18:00"}, "sms_sign": "示范花园物业"}
        project_id = project.id
    batch = EventBatch()
    evening = dt.datetime(2026, 12, 1, 19, tzinfo=CN)
    async with rt.db.session() as s, s.begin():
        outage = await rt.notifier.sms(s, batch, phone="13800000002", kind="outage", project_id=project_id, now=evening,
                                       params={"project": "示范花园", "reason": "管道检修", "area": "3栋",
                                               "time": "明日9点", "what": "水"})
    assert outage.status == "deferred" and outage.text.startswith("【示范花园物业】")


async def test_daily_cap_defers_not_drops(yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str]) -> None:
    provider, endpoint = fake
    client = await yezhu(**{**provider_settings("aliyun", endpoint, provider), "sms_daily_cap": 2})
    rt = runtime(client)
    ids = [await _notice(rt, "13800000002") for _ in range(3)]
    statuses = [(await _row(rt, i)).status for i in ids]
    assert statuses == ["sent", "sent", "deferred"]
    third = await _row(rt, ids[2])
    assert third.error_code == "daily_cap" and third.not_before is not None and third.attempts == 0
    assert len(provider.sent) == 2


async def test_kinds_without_an_approved_template_are_skipped(
    yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str]
) -> None:
    provider, endpoint = fake
    client = await yezhu(**provider_settings("tencent", endpoint, provider))
    rt = runtime(client)
    row = await _row(rt, await _notice(rt, "13800000002"))
    assert row.status == "skipped" and row.error_code == "no_template" and "模板" in (row.error or "")
    assert provider.sent == []
    code = await _row(rt, await _notice(rt, "13800000002", kind="verification_code", code="246810"))
    assert code.status == "sent" and provider.sent[0].params == ["246810"]


async def test_marketing_needs_consent(yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str]) -> None:
    provider, endpoint = fake
    client = await yezhu(**provider_settings("aliyun", endpoint, provider))
    rt = runtime(client)
    params = {"project": "示范花园", "month": "11月", "content": "主体结构封顶"}
    row = await _row(rt, await _notice(rt, "13800000003", kind="construction_progress", **params))
    assert row.status == "skipped" and row.error_code == "no_consent"
    async with rt.db.session() as s, s.begin():
        await s.execute(sa.update(Owner).where(Owner.phone == "13800000003").values(consent_marketing=True))
    row = await _row(rt, await _notice(rt, "13800000003", kind="construction_progress", **params))
    assert row.status == "sent" and row.text.endswith("拒收请回复R")


async def test_same_idempotency_key_records_once(yezhu: YezhuFactory) -> None:
    client = await yezhu(sms_window="00:00-24:00")
    rt = runtime(client)
    for _ in range(2):
        batch = EventBatch()
        async with rt.db.session() as s, s.begin():
            await rt.notifier.sms(s, batch, phone="13800000002", kind="notice", idempotency_key="campaign:7:owner:2",
                                  params={"project": "示范花园", "content": "通知"})
        await batch.publish(rt.services.pubsub)
    await settle(rt)
    rows = await sms_of(client, "13800000002")
    assert len(rows) == 1 and rows[0]["status"] == "sent" and rows[0]["provider"] == "dev"
