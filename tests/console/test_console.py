"""The console's routes through the real app: queue, taking over a chat, knowledge base, owners,
dashboard, live events (also across two web processes sharing Redis), and the staff CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from bot.console.queue import urgency
from bot.runtime import RUNTIME
from bot.store.models import (
    AuditLog,
    Conversation,
    Identity,
    KnowledgeEntry,
    Message,
    SmsMessage,
    StaffUser,
    UnansweredQuestion,
    utcnow,
)
from tests.conftest import YezhuFactory
from tests.console.conftest import js, login, waiting_conversation


def test_urgency_ranks_emergencies_then_serious_and_group_complaints() -> None:
    assert urgency(100, "emergency")[0] == 3
    assert urgency(0, "emergency")[0] == 3
    assert urgency(90, "group_complaint")[1] == "群体投诉"
    assert urgency(80, "serious_complaint")[1] == "严重投诉"
    assert urgency(0, "owner_asked")[0] == 0


async def test_queue_orders_by_urgency_then_waiting_time(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    plain = await waiting_conversation(client, "crm-plain")
    serious = await waiting_conversation(client, "crm-serious", reason="serious_complaint", priority=80)
    emergency = await waiting_conversation(client, "crm-emergency", reason="emergency", priority=100)
    csrf = await login(client, "kefu")
    body = await (await client.get("/console/api/queue", headers=js(csrf))).json()
    assert [w["id"] for w in body["waiting"]] == [emergency, serious, plain]
    assert body["waiting"][0]["urgency"] == "紧急" and "紧急情况" in body["html"]


async def _conv(client: Any, conv_id: int) -> Conversation:
    async with client.app[RUNTIME].db.session() as s:
        return await s.get_one(Conversation, conv_id)


async def test_take_over_reply_note_transfer_hand_back(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    conv_id = await waiting_conversation(client, "crm-7", "你们物业电话多少")
    csrf = await login(client, "kefu")
    page = await (await client.get(f"/console/conversations/{conv_id}")).text()
    assert "你们物业电话多少" in page and "接入会话" in page
    assert (await client.post(f"/console/conversations/{conv_id}/reply", headers=js(csrf),
                              json={"text": "您好"})).status == 409  # claim first
    assert (await client.post(f"/console/conversations/{conv_id}/claim", headers=js(csrf))).status == 200
    conv = await _conv(client, conv_id)
    kefu = (await _staff(client, "kefu"))
    assert conv.mode == "staff" and conv.assignee_id == kefu.id

    # while staff owns it the bot stays silent
    from tests.conftest import auth
    resp = await client.post("/api/v1/messages", json={"sender": "crm-7", "text": "还在吗"}, headers=auth())
    assert (await resp.json())["replies"] == []

    resp = await client.post(f"/console/conversations/{conv_id}/reply", headers=js(csrf),
                             json={"text": "您好，客服中心电话 0571-88880000"})
    assert resp.status == 200
    resp = await client.post(f"/console/conversations/{conv_id}/note", headers=js(csrf), json={"text": "已告知电话"})
    assert resp.status == 200
    fragment = await (await client.get(f"/console/api/conversations/{conv_id}/messages?after=0")).json()
    assert "还在吗" in fragment["html"] and "内部备注" in fragment["html"]

    # another agent cannot grab it; a transfer hands it over with a note
    zhuguan = await _staff(client, "zhuguan")
    resp = await client.post(f"/console/conversations/{conv_id}/transfer", headers=js(csrf),
                             json={"staff_id": zhuguan.id, "note": "业主想投诉，请主管跟进"})
    assert resp.status == 200
    conv = await _conv(client, conv_id)
    assert conv.assignee_id == zhuguan.id and conv.mode == "staff"
    assert (await client.post(f"/console/conversations/{conv_id}/reply", headers=js(csrf),
                              json={"text": "x"})).status == 409
    assert (await client.post(f"/console/conversations/{conv_id}/hand_back", headers=js(csrf))).status == 409

    client.session.cookie_jar.clear()
    csrf = await login(client, "zhuguan")
    assert (await client.post(f"/console/conversations/{conv_id}/hand_back", headers=js(csrf))).status == 200
    assert (await _conv(client, conv_id)).mode == "bot"
    resp = await client.post("/api/v1/messages", json={"sender": "crm-7", "text": "物业费怎么交"}, headers=auth())
    assert (await resp.json())["replies"], "handed back: the bot answers again"

    async with rt.db.session() as s:
        msgs = list((await s.execute(sa.select(Message).where(Message.conversation_id == conv_id)
                                     .order_by(Message.id))).scalars())
        actions = list((await s.execute(sa.select(AuditLog.action).where(
            AuditLog.target == f"conversation:{conv_id}"))).scalars())
    staff_reply = next(m for m in msgs if m.author == "staff:kefu" and m.direction == "out")
    note = next(m for m in msgs if m.direction == "note")
    assert staff_reply.text.startswith("您好，客服中心") and note.delivery is None
    assert {"conversation.view", "conversation.claim", "conversation.reply", "conversation.note",
            "conversation.transfer", "conversation.hand_back"} <= set(actions)
    await rt.engine.drain()


async def _staff(client: Any, username: str) -> StaffUser:
    async with client.app[RUNTIME].db.session() as s:
        return (await s.execute(sa.select(StaffUser).where(StaffUser.username == username))).scalar_one()


async def test_closed_wechat_window_is_said_and_sms_offered(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    async with rt.db.session() as s, s.begin():
        identity = (await s.execute(sa.select(Identity).where(Identity.external_id == "oDEMO0001"))).scalar_one()
        identity.last_inbound_at = utcnow() - dt.timedelta(hours=50)
        conv = await rt.engine.current_conversation(s, identity)
        conv_id = conv.id
    from tests.console.live import hand_over
    await hand_over(rt, conv_id)
    csrf = await login(client, "kefu")
    await client.post(f"/console/conversations/{conv_id}/claim", headers=js(csrf))
    page = await (await client.get(f"/console/conversations/{conv_id}")).text()
    assert "窗口已关闭" in page and "13800000001" in page
    resp = await client.post(f"/console/conversations/{conv_id}/reply", headers=js(csrf), json={"text": "您好"})
    body = await resp.json()
    assert resp.status == 409 and body["error"] == "window_closed" and body["sms"] is True
    resp = await client.post(f"/console/conversations/{conv_id}/sms", headers=js(csrf),
                             json={"text": "您好，您的房产证已可领取。"})
    assert resp.status == 200
    async with rt.db.session() as s:
        sms = (await s.execute(sa.select(SmsMessage))).scalar_one()
        out = (await s.execute(sa.select(Message).where(Message.conversation_id == conv_id,
                                                        Message.channel == "sms"))).scalar_one()
    assert sms.phone == "13800000001" and out.media["sms_id"] == sms.id


async def test_knowledge_edits_reload_the_bot_and_unanswered_become_entries(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    reloads: list[int] = []

    class Spy:
        async def reload(self) -> int:
            reloads.append(1)
            return 0

    rt.knowledge = Spy()  # type: ignore[attr-defined]
    csrf = await login(client, "kefu")
    resp = await client.post("/console/knowledge", headers=js(csrf), json={
        "slug": "ev-charging", "question": "小区可以装充电桩吗", "alternatives": "充电桩怎么申请\n能装充电桩吗",
        "answer": "可以。请携带车位产权证明到客服中心申请，物业协助报装。", "tags": "停车，充电桩"})
    assert resp.status == 200 and reloads == [1]
    entry_id = (await resp.json())["id"]
    resp = await client.post(f"/console/knowledge/{entry_id}", headers=js(csrf), json={
        "question": "小区可以装充电桩吗", "alternatives": "充电桩怎么申请", "answer": "可以，详见客服中心。",
        "tags": "充电桩"})
    assert resp.status == 200 and reloads == [1, 1]
    assert (await client.post("/console/knowledge", headers=js(csrf), json={
        "slug": "ev-charging", "question": "q", "answer": "a"})).status == 400  # slug taken

    async with rt.db.session() as s, s.begin():
        s.add(UnansweredQuestion(text="快递柜在哪里", project_code="demo"))
        s.add(UnansweredQuestion(text="充电桩怎么收费"))
    async with rt.db.session() as s:
        q1, q2 = (await s.execute(sa.select(UnansweredQuestion).order_by(UnansweredQuestion.id))).scalars().all()
    assert "快递柜在哪里" in await (await client.get("/console/knowledge-unanswered")).text()
    resp = await client.post(f"/console/knowledge-unanswered/{q1.id}/entry", headers=js(csrf),
                             json={"answer": "快递柜在1栋和8栋大堂。"})
    assert resp.status == 200
    resp = await client.post(f"/console/knowledge-unanswered/{q2.id}/entry", headers=js(csrf),
                             json={"attach_to": "ev-charging"})
    assert resp.status == 200 and len(reloads) == 4
    async with rt.db.session() as s:
        made = (await s.execute(sa.select(KnowledgeEntry).where(KnowledgeEntry.question == "快递柜在哪里"))
                ).scalar_one()
        ev = (await s.execute(sa.select(KnowledgeEntry).where(KnowledgeEntry.slug == "ev-charging"))).scalar_one()
        q1, q2 = (await s.execute(sa.select(UnansweredQuestion).order_by(UnansweredQuestion.id))).scalars().all()
    assert made.answer == "快递柜在1栋和8栋大堂。" and made.updated_by == "kefu"
    assert "充电桩怎么收费" in ev.alternatives
    assert q1.resolved and q1.entry_slug == made.slug and q2.entry_slug == "ev-charging"
    assert (await client.post(f"/console/knowledge/{entry_id}/delete", headers=js(csrf))).status == 403


async def test_owner_search_and_profile_are_audited(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    await login(client, "kefu")
    for q in ("张三", "13800000001", "3栋2单元501", "3-2-501"):
        page = await (await client.get("/console/owners", params={"q": q})).text()
        assert "张三" in page and "13800000001" in page, q
    async with client.app[RUNTIME].db.session() as s:
        from bot.store.models import Owner
        owner = (await s.execute(sa.select(Owner).where(Owner.phone == "13800000001"))).scalar_one()
    page = await (await client.get(f"/console/owners/{owner.id}")).text()
    for text in ("3栋2单元501", "可领取", "微信", "绑定于", "房产证"):
        assert text in page
    async with client.app[RUNTIME].db.session() as s:
        actions = list((await s.execute(sa.select(AuditLog.action, AuditLog.target).where(AuditLog.actor == "kefu")
                                        )).all())
    assert ("owner.view", f"owner:{owner.id}") in actions
    assert sum(1 for a, _ in actions if a == "owner.search") == 4


async def test_dashboard_counts_and_chart(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    await waiting_conversation(client, "crm-d1", reason="emergency", priority=100)
    await login(client, "zhuguan")
    page = await (await client.get("/console/dashboard")).text()
    assert "<svg" in page and "今日会话" in page and "紧急" in page


async def _read_event(resp: Any, name: str, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        current = None
        while True:
            line = (await resp.content.readline()).decode().strip()
            if line.startswith("event:"):
                current = line[6:].strip()
            elif line.startswith("data:") and current == name:
                return json.loads(line[5:])


async def test_live_events_reach_the_browser_stream(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    await login(client, "kefu")
    resp = await client.get("/console/events")
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    await _read_event(resp, "hello")
    conv_id = await waiting_conversation(client, "crm-live")
    event = await _read_event(resp, "conversation.status_changed")
    assert event["conversation_id"] == conv_id and event["mode"] == "waiting"
    assert "text" not in event  # ids and states only: the page fetches the rest with its session
    resp.close()


@pytest.mark.redis
async def test_two_web_processes_share_sessions_and_live_events_through_redis(
    yezhu: YezhuFactory, redis_url: str
) -> None:
    first = await yezhu(redis_url=redis_url)
    db_url = first.app[RUNTIME].settings.database_url
    second = await yezhu(redis_url=redis_url, database_url=db_url, demo=False)
    await login(first, "kefu")
    cookie = next(c for c in first.session.cookie_jar if c.key == "yezhu_console")
    second.session.cookie_jar.update_cookies({"yezhu_console": cookie.value})
    resp = await second.get("/console/events")  # the session made by the first process works here
    assert resp.status == 200
    await _read_event(resp, "hello")
    await asyncio.wait_for(_subscribed(second), 5)
    conv_id = await waiting_conversation(first, "crm-redis")  # handed over in the first process
    event = await _read_event(resp, "conversation.status_changed")
    assert event["conversation_id"] == conv_id
    resp.close()


async def _subscribed(client: Any) -> None:
    from bot.console import CONSOLE

    await client.app[CONSOLE].hub.subscribed.wait()


def test_staff_cli_add_and_passwd(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli import app
    from bot.store.db import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    monkeypatch.setenv("YEZHU_DATABASE_URL", url)
    runner = CliRunner()
    result = runner.invoke(app, ["staff", "add", "xiaowang", "--role", "engineer", "--name", "工程师小王",
                                 "--password", "a-long-password"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["staff", "add", "xiaowang", "--password", "a-long-password"]).exit_code == 1
    assert runner.invoke(app, ["staff", "add", "x", "--password", "a-long-password"]).exit_code != 0
    assert runner.invoke(app, ["staff", "add", "boss", "--role", "god", "--password", "a-long-password"]
                         ).exit_code != 0
    result = runner.invoke(app, ["staff", "passwd", "xiaowang"], input="new-password-1\nnew-password-1\n")
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["staff", "passwd", "xiaowang", "--generate"])
    assert result.exit_code == 0 and "password:" in result.output
    assert runner.invoke(app, ["staff", "passwd", "nobody", "--password", "a-long-password"]).exit_code == 1
    result = runner.invoke(app, ["staff", "list"])
    assert "xiaowang" in result.output and "engineer" in result.output

    import asyncio as aio

    from bot.store.db import Database

    async def check() -> tuple[StaffUser, list[str]]:
        db = Database(url)
        async with db.session() as s:
            user = (await s.execute(sa.select(StaffUser).where(StaffUser.username == "xiaowang"))).scalar_one()
            audit = list((await s.execute(sa.select(AuditLog.action))).scalars())
        await db.close()
        return user, audit

    user, audit = aio.run(check())
    assert user.role == "engineer" and user.password_hash.startswith("$argon2")
    assert audit == ["staff.add", "staff.passwd", "staff.passwd"]
