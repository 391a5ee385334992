"""SMS as a channel through the real app, on both databases: verification codes by the configured provider,
receipts and uplinks pushed exactly as the providers push them, an SMS conversation end to end."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import re
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from bot.store.models import Conversation, Identity, Message, SmsCallback, SmsMessage, utcnow
from tests.conftest import YezhuFactory, auth
from tests.fakes.sms_providers import FakeSmsProviders
from tests.sms.conftest import KEY, provider_settings, runtime, settle

SEQ = itertools.count(9_000_000)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> dict[str, str]:
    return {} if request.param == "sqlite" else {"database_url": request.getfixturevalue("pg_url")}


def uplink(provider: str, phone: str, text: str) -> Any:
    if provider == "aliyun":
        return [{"phone_number": phone, "send_time": "2026-12-01 10:00:00", "content": text, "sign_name": "物业客服",
                 "dest_code": "", "sequence_id": next(SEQ)}]
    return {"extend": "", "mobile": phone, "nationcode": "86", "sign": "物业客服", "text": text,
            "time": 1764554400 + next(SEQ)}


async def push(client: TestClient[Any, Any], provider: str, kind: str, body: Any, key: str = KEY) -> Any:
    raw = json.dumps(body, ensure_ascii=False).encode()
    return await client.post(f"/sms/{provider}/{key}/{kind}", data=io.BytesIO(raw),
                             headers={"Content-Type": "application/json", "Content-Length": str(len(raw))})


async def sms_of(client: TestClient[Any, Any], phone: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/sms", params={"phone": phone}, headers=auth())
    assert resp.status == 200
    return list((await resp.json())["sms"])


@pytest.mark.parametrize("name", ["aliyun", "tencent"])
async def test_binding_code_goes_through_the_provider_and_its_receipt_lands(
    name: str, yezhu: YezhuFactory, database: dict[str, str], fake: tuple[FakeSmsProviders, str]
) -> None:
    provider, endpoint = fake
    client = await yezhu(**database, **provider_settings(name, endpoint, provider))
    rt = runtime(client)
    say = lambda text: client.post("/api/v1/messages", json={"sender": "crm-7", "text": text}, headers=auth())  # noqa: E731
    await say("我的房产证办好了吗")
    reply = (await (await say("13800000003")).json())["replies"][0]["text"]
    assert "验证码" in reply
    await settle(rt)
    sent = [s for s in provider.sent if s.phone == "13800000003"]
    assert len(sent) == 1
    code = sent[0].params["code"] if name == "aliyun" else sent[0].params[0]
    [row] = await sms_of(client, "13800000003")
    assert row["kind"] == "verification_code" and row["status"] == "sent" and row["provider"] == name
    assert row["text"] == f"【物业客服】您的验证码为{code}，10分钟内有效。如非本人操作请忽略。" and row["segments"] == 1
    assert code not in json.dumps(row["params"]) or row["params"]["code"] == code  # stored as sent

    receipts = provider.receipts_aliyun() if name == "aliyun" else provider.receipts_tencent()
    for _ in range(2):  # the provider may push the same receipt twice
        resp = await push(client, name, "receipt", receipts)
        assert resp.status == 200
        assert await resp.json() == ({"code": 0, "msg": "接收成功"} if name == "aliyun" else {"result": 0, "errmsg": "OK"})
    await settle(rt)
    [row] = await sms_of(client, "13800000003")
    assert row["status"] == "delivered" and row["delivered_at"]
    async with rt.db.session() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(SmsCallback)) == 1

    bound = (await (await say(code)).json())["replies"][0]["text"]
    assert "验证成功" in bound or "王五" in bound or "12栋" in bound


async def test_callback_refusals_store_nothing(yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str]) -> None:
    provider, endpoint = fake
    client = await yezhu(**provider_settings("aliyun", endpoint, provider))
    rt = runtime(client)
    good = {"phone_number": "13800000001", "send_time": "2026-12-01 10:00:00", "report_time": "2026-12-01 10:00:05",
            "success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1",
            "biz_id": "900000000000000001^0", "out_id": "x"}
    assert (await push(client, "aliyun", "receipt", [good], key="wrong-key")).status == 404
    assert (await push(client, "yunpian", "receipt", [good])).status == 404
    assert (await push(client, "aliyun", "status", [good])).status == 404
    resp = await client.post(f"/sms/aliyun/{KEY}/receipt", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await push(client, "aliyun", "receipt", {"not": "an array"})).status == 400
    assert (await push(client, "aliyun", "receipt", [{"biz_id": 1}, "junk"])).status == 400
    big = [dict(good, biz_id=f"{i:018d}^0", err_msg="长" * 200) for i in range(2000)]
    assert (await push(client, "aliyun", "receipt", big)).status == 413
    async with rt.db.session() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(SmsCallback)) == 0
    # One bad item among good ones: the good ones are kept, and the provider is told all is well.
    resp = await push(client, "aliyun", "receipt", [good, {"phone_number": "1"}, dict(good, biz_id="2^0")])
    assert resp.status == 200 and (await resp.json())["code"] == 0
    async with rt.db.session() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(SmsCallback)) == 2


async def test_allowlist_refuses_other_addresses(yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str]) -> None:
    provider, endpoint = fake
    client = await yezhu(**provider_settings("aliyun", endpoint, provider), sms_callback_allowlist="10.0.0.0/8")
    resp = await push(client, "aliyun", "inbound", uplink("aliyun", "13800000001", "你好"))
    assert resp.status == 403
    async with runtime(client).db.session() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(SmsCallback)) == 0


async def test_sms_conversation_end_to_end(
    yezhu: YezhuFactory, database: dict[str, str], fake: tuple[FakeSmsProviders, str]
) -> None:
    """Uplink → the same engine and policy as WeChat → the reply template → the receipt."""
    provider, endpoint = fake
    client = await yezhu(**database, **provider_settings("aliyun", endpoint, provider))
    rt = runtime(client)
    body = uplink("aliyun", "13800000001", "物业费怎么交")
    for _ in range(2):  # pushed twice (Aliyun retries): one message, one reply
        resp = await push(client, "aliyun", "inbound", body)
        assert resp.status == 200
        await settle(rt)
    replies = [s for s in provider.sent if s.phone == "13800000001"]
    assert len(replies) == 1 and replies[0].template == "SMS_460001018"
    assert "物业费" in replies[0].params["content"]
    resp = await client.get("/api/v1/conversations", params={"channel": "sms", "sender": "13800000001"},
                            headers=auth())
    [conv] = (await resp.json())["conversations"]
    assert [m["direction"] for m in conv["messages"]] == ["in", "out"]
    assert conv["messages"][0]["text"] == "物业费怎么交"
    # The sender's phone identifies the owner directly (张三).
    async with rt.db.session() as s:
        c = await s.get_one(Conversation, conv["id"])
        assert c.owner_id is not None
    await push(client, "aliyun", "receipt", provider.receipts_aliyun())
    await settle(rt)
    rows = await sms_of(client, "13800000001")
    assert [(r["direction"], r["kind"], r["status"]) for r in rows] == [("out", "reply", "delivered"),
                                                                         ("in", "inbound", "received")]
    assert rows[0]["text"].startswith("【物业客服】") and rows[0]["segments"] >= 1
    async with rt.db.session() as s:
        out = (await s.execute(sa.select(Message).where(Message.conversation_id == conv["id"],
                                                        Message.direction == "out"))).scalar_one()
        assert out.delivery == "sent"


async def test_without_an_approved_reply_template_staff_take_over(
    yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str]
) -> None:
    """Tencent approves only verification codes for real estate: the SMS conversation goes to staff."""
    provider, endpoint = fake
    client = await yezhu(**provider_settings("tencent", endpoint, provider))
    rt = runtime(client)
    resp = await push(client, "tencent", "inbound", uplink("tencent", "13800000002", "楼道灯坏了好几天了"))
    assert resp.status == 200 and await resp.json() == {"result": 0, "errmsg": "OK"}
    await settle(rt)
    assert provider.sent == []
    async with rt.db.session() as s:
        ident = (await s.execute(sa.select(Identity).where(Identity.channel == "sms"))).scalar_one()
        conv = (await s.execute(sa.select(Conversation).where(Conversation.identity_id == ident.id))).scalar_one()
        held = (await s.execute(sa.select(Message).where(Message.conversation_id == conv.id,
                                                         Message.direction == "out"))).scalar_one()
    assert conv.mode == "waiting"  # in the staff queue
    assert held.delivery == "failed" and "模板" in (held.delivery_error or "")  # staff see what was not sent


async def test_a_timed_out_send_is_unknown_then_resolved_not_resent(
    yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str]
) -> None:
    from bot.jobs import sms as sms_jobs

    provider, endpoint = fake
    client = await yezhu(**provider_settings("aliyun", endpoint, provider))
    rt = runtime(client)
    provider.delay = 1.5  # longer than the 1 s timeout: Aliyun got it, we never heard back
    await push(client, "aliyun", "inbound", uplink("aliyun", "13800000001", "物业费怎么交"))
    await settle(rt)
    [out] = [r for r in await sms_of(client, "13800000001") if r["direction"] == "out"]
    assert out["status"] == "unknown" and out["attempts"] == 1
    provider.delay = 0
    async with rt.db.session() as s, s.begin():
        await s.execute(sa.update(SmsMessage).where(SmsMessage.id == out["id"]).values(
            updated_at=utcnow() - dt.timedelta(minutes=10)))
    counts = await sms_jobs.sweep(rt)
    assert counts["resolved"] == 1
    [out] = [r for r in await sms_of(client, "13800000001") if r["direction"] == "out"]
    assert out["status"] == "delivered" and out["attempts"] == 1
    assert len([s for s in provider.sent if s.phone == "13800000001"]) == 1  # never sent twice


async def test_a_refused_send_is_failed_with_the_provider_code(
    yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str]
) -> None:
    provider, endpoint = fake
    provider.refuse["13800000001"] = "isv.OUT_OF_SERVICE"
    client = await yezhu(**provider_settings("aliyun", endpoint, provider))
    await push(client, "aliyun", "inbound", uplink("aliyun", "13800000001", "物业费怎么交"))
    await settle(runtime(client))
    [out] = [r for r in await sms_of(client, "13800000001") if r["direction"] == "out"]
    assert out["status"] == "failed" and out["error_code"] == "isv.OUT_OF_SERVICE"


async def test_sms_api_checks_its_input(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    assert (await client.get("/api/v1/sms", params={"phone": "13800000001"})).status == 401
    assert (await client.get("/api/v1/sms", params={"phone": "abc"}, headers=auth())).status == 400
    assert (await client.get("/api/v1/sms", headers=auth())).status == 400
    resp = await client.get("/api/v1/sms", params={"phone": "+86 138 0000 0001"}, headers=auth())
    assert resp.status == 200 and (await resp.json())["phone"] == "13800000001"
    assert re.fullmatch(r"\d{11}", (await resp.json())["phone"])


async def test_a_push_whose_work_fails_is_kept_and_worked_on_later(
    yezhu: YezhuFactory, fake: tuple[FakeSmsProviders, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledged to the provider means kept: a failure after the answer leaves the push pending."""
    from bot.jobs import sms as sms_jobs

    provider, endpoint = fake
    client = await yezhu(**provider_settings("aliyun", endpoint, provider))
    rt = runtime(client)
    accept = rt.engine.accept

    async def down(msg: Any) -> Any:
        raise ConnectionError("database away")

    monkeypatch.setattr(rt.engine, "accept", down)
    resp = await push(client, "aliyun", "inbound", uplink("aliyun", "13800000001", "物业费怎么交"))
    assert resp.status == 200  # stored before the answer; the work fails afterwards
    await settle(rt)
    async with rt.db.session() as s:
        pending = (await s.execute(sa.select(SmsCallback))).scalar_one()
    assert pending.processed_at is None
    monkeypatch.setattr(rt.engine, "accept", accept)
    await sms_jobs.sweep(rt)
    await settle(rt)
    assert [s.template for s in provider.sent if s.phone == "13800000001"] == ["SMS_460001018"]
    async with rt.db.session() as s:
        done = (await s.execute(sa.select(SmsCallback))).scalar_one()
    assert done.processed_at is not None and done.result == "accepted"
