"""Replies in context (actions/flows/notice_reply.py): what a short reply to a notice asks, over the
whole class of phrasings (the real NLU parses each line), and the acknowledgement recorded on the
delivery through the real app (JSON channel, SQLite)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from actions.flows.notice_reply import (
    CERTIFICATE_TOPICS,
    OUTAGE_TOPICS,
    REPAIR_CUES,
    certificate_aspects,
    is_acknowledgement,
    other_business,
    outage_aspects,
)
from bot.runtime import RUNTIME
from bot.store.models import Campaign, CertificateRecord, Delivery, Identity, Owner
from nlu.pipeline import Interpreter, load_interpreter
from tests.conftest import auth

CHINA = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2026, 12, 2, 10, 0, tzinfo=CHINA)


@pytest.fixture(scope="module")
def nlu() -> Interpreter:
    return load_interpreter()


def ctx_for(nlu: Interpreter, text: str) -> tuple[Any, str]:
    parse = nlu.parse(text, NOW)
    ctx = SimpleNamespace(text=text, parse=parse, intent=parse.intent, entity=parse.entity, now=NOW)
    return ctx, (parse.normalized or text).strip().lower()


def cert_asks(nlu: Interpreter, text: str) -> list[str]:
    ctx, norm = ctx_for(nlu, text)
    if is_acknowledgement(ctx, norm) or other_business(ctx, norm, CERTIFICATE_TOPICS):
        return []
    return certificate_aspects(ctx, norm)


@pytest.mark.parametrize(("text", "aspect"), [
    ("可以代领吗", "proxy"), ("能让家里人帮我领吗", "proxy"), ("我本人去不了怎么办", "proxy"),
    ("委托别人拿可以不", "proxy"), ("我老婆去拿行不行", "proxy"), ("叫我儿子去取可以吗", "proxy"),
    ("能寄吗", "mail"), ("可以快递给我吗", "mail"), ("能邮寄到上海吗", "mail"), ("不想跑一趟 寄过来行吗", "mail"),
    ("要带什么", "documents"), ("需要准备什么材料", "documents"), ("要带购房合同吗", "documents"),
    ("身份证复印件可以吗", "documents"),
    ("几点能去", "hours"), ("周末能领吗", "hours"), ("中午去可以吗", "hours"), ("明天下午过去行吗", "hours"),
    ("什么时候可以去拿", "hours"), ("星期六上班吗", "hours"),
    ("在哪里领", "place"), ("办公室在哪", "place"), ("地址是哪里", "place"), ("去哪拿啊", "place"),
    ("怎么领", "hours"),
    # hurried owners, no punctuation: the counter's hours and the post, not a door repair or a parcel
    ("周六开门不", "hours"), ("周末上班吗", "hours"), ("明天能去不", "hours"), ("可以快递吗", "mail"),
    ("要带啥", "documents"),
])
def test_questions_about_collecting_in_any_wording(nlu: Interpreter, text: str, aspect: str) -> None:
    assert aspect in cert_asks(nlu, text), text


@pytest.mark.parametrize("text", ["物业费怎么交", "停车费多少钱一个月", "电梯坏了什么时候来修", "楼上太吵了", "你好",
                                  "卫生间漏水了", "帮我转人工", "我的快递到了吗", "周六能来修门吗"])
def test_other_business_after_a_certificate_notice_is_not_a_reply(nlu: Interpreter, text: str) -> None:
    assert cert_asks(nlu, text) == [], text


@pytest.mark.parametrize("text", ["收到", "收到了", "好的知道了", "好的 知道了 谢谢", "OK", "ok谢谢", "嗯嗯 收到",
                                  "知道啦 谢谢你们", "好的 明白", "谢谢", "好滴", "已收到，谢谢！", "收到，辛苦了",
                                  "收到拉", "知道勒 谢谢", "好嘞收到咯"])
def test_acknowledgements_in_any_wording(nlu: Interpreter, text: str) -> None:
    ctx, norm = ctx_for(nlu, text)
    assert is_acknowledgement(ctx, norm), text


@pytest.mark.parametrize("text", ["收到了吗", "好的 那可以代领吗", "知道了 几点能去", "不要"])
def test_questions_are_not_acknowledgements(nlu: Interpreter, text: str) -> None:
    ctx, norm = ctx_for(nlu, text)
    assert not is_acknowledgement(ctx, norm), text


def outage_asks(nlu: Interpreter, text: str) -> list[str]:
    ctx, norm = ctx_for(nlu, text)
    if other_business(ctx, norm, OUTAGE_TOPICS) or REPAIR_CUES.search(norm):
        return []
    return outage_aspects(ctx, norm)


@pytest.mark.parametrize(("text", "aspect"), [
    ("什么时候来水", "restore"), ("几点能来电", "restore"), ("水什么时候恢复", "restore"), ("还要停多久", "restore"),
    ("停到几点", "restore"), ("啥时候有水啊", "restore"), ("什么时候通电", "restore"),
    ("为啥停水", "why"), ("怎么又停电了", "why"), ("停水是什么原因", "why"),
    ("哪些楼停水", "area"), ("我们5栋也停吗", "area"), ("几点开始停", "start"), ("明天几点停水", "start"),
])
def test_questions_about_an_outage_in_any_wording(nlu: Interpreter, text: str, aspect: str) -> None:
    assert aspect in outage_asks(nlu, text), text


@pytest.mark.parametrize("text", ["家里水管爆了", "厨房漏水了", "物业费怎么交", "你好"])
def test_other_business_after_an_outage_notice_is_not_a_reply(nlu: Interpreter, text: str) -> None:
    assert outage_asks(nlu, text) == [], text


async def test_an_acknowledgement_is_recorded_on_the_delivery_once(yezhu: Any) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]

    async def say(text: str) -> str:
        resp = await client.post("/api/v1/messages", json={"sender": "crm-zs", "text": text}, headers=auth())
        assert resp.status == 200, await resp.text()
        return "\n".join(r["text"] if isinstance(r, dict) else r for r in (await resp.json())["replies"])

    await say("你好")
    async with rt.db.session() as s, s.begin():
        owner = (await s.execute(sa.select(Owner).where(Owner.phone == "13800000001"))).scalar_one()
        identity = (await s.execute(sa.select(Identity).where(Identity.external_id == "crm-zs"))).scalar_one()
        identity.owner_id = owner.id
        record = (await s.execute(sa.select(CertificateRecord).where(CertificateRecord.batch == "2026-第3批"))
                  ).scalar_one()
        campaign = Campaign(name="领证通知", kind="certificate_collection", text="您的证书已可领取", status="done",
                            params={"place": "售楼处", "hours": "每天", "proxy": "代领须带委托书和双方身份证"},
                            channels=["wechat", "sms"])
        s.add(campaign)
        await s.flush()
        sent = dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)
        for channel, status in (("wechat", "delivered"), ("sms", "sent")):
            s.add(Delivery(campaign_id=campaign.id, owner_id=owner.id, house_id=record.house_id, channel=channel,
                           recipient="x", idempotency_key=f"t:{channel}", status=status, sent_at=sent))
    reply = await say("收到了 谢谢")
    assert "已记录您收到领证通知" in reply and "客服中心（1栋大堂）" in reply and "售楼处" not in reply
    async with rt.db.session() as s:
        rows = (await s.execute(sa.select(Delivery).order_by(Delivery.id))).scalars().all()
    assert [d.status for d in rows] == ["acknowledged", "acknowledged"] and all(d.acknowledged_at for d in rows)
    assert "已记录" not in await say("好的")  # said once: the second "好的" is ordinary small talk
    assert "委托书和双方身份证" in await say("能让朋友帮我拿吗")


def test_a_sudden_cut_says_it_has_started_and_when_it_is_back() -> None:
    from actions.flows.notice_reply import Notice, outage_answer

    campaign = Campaign(kind="outage", urgent=True, params={"utility": "water", "area": "3栋", "reason": "水管爆裂",
                                                            "end": "2026-12-02T18:00"})
    notice = Notice(Delivery(), campaign)
    answer = outage_answer(SimpleNamespace(now=NOW), notice, ["start", "restore"])
    assert "目前已停水，预计12月2日18:00恢复" in answer and "另行通知至" not in answer


def test_asked_before_a_planned_cut_it_says_the_water_is_still_on() -> None:
    from actions.flows.notice_reply import Notice, outage_answer

    campaign = Campaign(kind="outage", params={"utility": "water", "area": "3栋", "start": "2026-12-03T09:00",
                                               "end": "2026-12-03T17:00"})
    answer = outage_answer(SimpleNamespace(now=NOW), Notice(Delivery(), campaign), ["restore"])
    assert "目前还没有停水；本次停水从12月3日09:00开始，预计12月3日17:00恢复供水" in answer
    during = outage_answer(SimpleNamespace(now=NOW + dt.timedelta(days=1)), Notice(Delivery(), campaign), ["restore"])
    assert "还没有停水" not in during and "预计12月3日17:00恢复供水" in during
