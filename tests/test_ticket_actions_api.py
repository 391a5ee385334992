"""``POST /api/v1/tickets/{ref}/actions`` through the real app: every verb on the console's workflow path,
the owner told what the console would tell them, the actor on the timeline and in the audit log, and
every refusal a clear 4xx (English and Chinese) that changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from bot.runtime import RUNTIME
from bot.store.models import AuditLog, Identity, Message, StaffUser, Ticket, TicketEvent, utcnow
from tests.conftest import WECHAT, YezhuFactory, auth
from tests.console.live import make_ticket
from tests.fakes.wechat_server import FakeWeChatAPI


@pytest.fixture
async def wechat() -> AsyncIterator[FakeWeChatAPI]:
    """The owners' WeChat: the notices the workflow sends arrive here."""
    async with FakeWeChatAPI({WECHAT["wechat_app_id"]: WECHAT["wechat_app_secret"]}) as api:
        yield api


async def act(client: Any, ref: Any, status: int = 200, **body: Any) -> dict[str, Any]:
    resp = await client.post(f"/api/v1/tickets/{ref}/actions", json=body, headers=auth())
    data = await resp.json()
    assert resp.status == status, data
    return data  # type: ignore[no-any-return]


async def _owner_chat(client: Any) -> int:
    """张三's WeChat conversation, written to a moment ago (WeChat's window open)."""
    rt = client.app[RUNTIME]
    async with rt.db.session() as s, s.begin():
        identity = (await s.execute(sa.select(Identity).where(Identity.external_id == "oDEMO0001"))).scalar_one()
        identity.last_inbound_at = utcnow()
        return (await rt.engine.current_conversation(s, identity)).id


async def _audit(client: Any, number: str) -> list[AuditLog]:
    async with client.app[RUNTIME].db.session() as s:
        return list((await s.execute(sa.select(AuditLog).where(AuditLog.target == f"ticket:{number}")
                                     .order_by(AuditLog.id))).scalars())


async def test_every_verb_runs_the_consoles_workflow_tells_the_owner_and_names_the_actor(
    yezhu: YezhuFactory, wechat: FakeWeChatAPI
) -> None:
    client = await yezhu(wechat_api_base=wechat.base_url)
    rt = client.app[RUNTIME]
    conv_id = await _owner_chat(client)
    ticket = await make_ticket(rt, owner_phone="13800000001", conversation_id=conv_id)

    body = await act(client, ticket.number, verb="dispatch", actor="kefu", assignee="gongcheng", visit_time="周三上午")
    assert body["status"] == "dispatched" and body["assignee"] == "工程师老陈" and body["visit_time"] == "周三上午"
    assert body["number"] == ticket.number and body["timeline"][-1]["kind"] == "owner_notified"  # as GET returns
    assert (await act(client, ticket.id, verb="start", actor="gongcheng"))["status"] == "in_progress"
    body = await act(client, ticket.id, verb="complete", actor="gongcheng", note="更换地漏芯", request_acceptance=False)
    assert body["status"] == "done"
    assert (await act(client, ticket.id, verb="request_acceptance", actor="kefu"))["status"] == "awaiting_acceptance"
    body = await act(client, ticket.id, verb="close", actor="kefu", reason="业主电话确认已修好")
    assert body["status"] == "closed" and body["closed_at"]
    body = await act(client, ticket.number, verb="reopen", actor="zhuguan", reason="业主反馈仍返水")
    assert body["status"] == "reopened" and body["rework_count"] == 1 and body["closed_at"] is None
    body = await act(client, ticket.id, verb="note", actor="kefu", text="已约业主周五复查")
    assert body["timeline"][-1]["kind"] == "note" and body["timeline"][-1]["data"]["text"] == "已约业主周五复查"
    get = await (await client.get(f"/api/v1/tickets/{ticket.id}", headers=auth())).json()
    assert get == body  # the answer is the ticket as GET /api/v1/tickets/{id} shows it

    moves = [(e["kind"], e["actor"]) for e in body["timeline"] if e["kind"] not in ("owner_notified", "created")]
    assert moves == [("dispatched", "kefu"), ("started", "gongcheng"), ("done", "gongcheng"),
                     ("awaiting_acceptance", "kefu"), ("closed", "kefu"), ("reopened", "zhuguan"), ("note", "kefu")]
    audited = [(a.action, a.actor, a.data.get("via")) for a in await _audit(client, ticket.number)]
    assert audited == [("ticket.dispatch", "kefu", "api"), ("ticket.start", "gongcheng", "api"),
                       ("ticket.complete", "gongcheng", "api"), ("ticket.request_acceptance", "kefu", "api"),
                       ("ticket.close", "kefu", "api"), ("ticket.reopen", "zhuguan", "api"), ("ticket.note", "kefu", "api")]
    async with rt.db.session() as s:  # the owner read what the console would have sent: 4 notices, no note
        notices = list((await s.execute(sa.select(Message.text).where(
            Message.conversation_id == conv_id, Message.direction == "out").order_by(Message.id))).scalars())
    assert len(notices) == 4
    assert "工程师老陈" in notices[0] and "周三上午" in notices[0]
    assert "2天内" in notices[1] and "已办结" in notices[2] and "返修" in notices[3]
    assert not any("周五复查" in n for n in notices)
    received = await wechat.wait_for_messages(4)  # and they reached 张三's WeChat
    assert {m.touser for m in received} == {"oDEMO0001"} and sorted(m.content for m in received) == sorted(notices)
    await rt.engine.drain()


async def test_refusals_are_clear_4xx_in_english_and_chinese_and_change_nothing(
    yezhu: YezhuFactory, wechat: FakeWeChatAPI
) -> None:
    client = await yezhu(wechat_api_base=wechat.base_url)
    rt = client.app[RUNTIME]
    ticket = await make_ticket(rt, owner_phone="13800000002", conversation_id=None)
    async with rt.db.session() as s, s.begin():  # a second engineer, and a colleague who left
        s.add(StaffUser(username="xiaozhao", display_name="工程师小赵", role="engineer", password_hash="x"))
        s.add(StaffUser(username="left", display_name="离职客服", role="agent", password_hash="x", active=False))

    async def refused(status: int, error: str, ref: Any = ticket.id, **body: Any) -> dict[str, Any]:
        data = await act(client, ref, status, **body)
        assert data["error"] == error and data["detail"] and data["detail_zh"]
        assert any("\u4e00" <= ch <= "\u9fff" for ch in data["detail_zh"]), data
        return data

    await refused(400, "unknown_verb", verb="fix", actor="kefu")
    await refused(400, "missing_field", verb="start")
    assert (await refused(400, "missing_field", verb="dispatch", actor="kefu"))["field"] == "assignee"
    assert (await refused(400, "missing_field", verb="note", actor="kefu", text="  "))["field"] == "text"
    await refused(400, "unknown_assignee", verb="dispatch", actor="kefu", assignee="nobody")
    await refused(400, "bad_request", verb="dispatch", actor=7)
    await refused(403, "unknown_actor", verb="note", actor="ghost", text="x")
    assert "停用" in (await refused(403, "inactive_actor", verb="note", actor="left", text="x"))["detail_zh"]
    await refused(403, "forbidden", verb="dispatch", actor="gongcheng", assignee="gongcheng")  # the desk dispatches
    await refused(403, "forbidden", verb="start", actor="kefu")  # field work is the engineer's
    await refused(409, "wrong_state", verb="close", actor="kefu")  # nothing done yet
    await refused(409, "refused", verb="dispatch", actor="kefu", assignee="kefu")  # an agent is no engineer
    await refused(404, "not_found", ref="BX20990101-0001", verb="start", actor="gongcheng")
    resp = await client.post(f"/api/v1/tickets/{ticket.id}/actions", data=b"[1", headers=auth())
    assert resp.status == 400
    resp = await client.post(f"/api/v1/tickets/{ticket.id}/actions", json={"verb": "start", "actor": "gongcheng"})
    assert resp.status == 401

    await act(client, ticket.id, verb="dispatch", actor="kefu", assignee="gongcheng")
    await refused(409, "wrong_state", verb="dispatch", actor="kefu", assignee="gongcheng")  # not twice
    await refused(403, "forbidden", verb="start", actor="xiaozhao")  # not their ticket (责任到人)
    await refused(403, "forbidden", verb="reassign", actor="kefu", assignee="xiaozhao", reason="休假")
    async with rt.db.session() as s, s.begin():  # a paid repair waits for the owner's yes to its price
        t = await s.get_one(Ticket, ticket.id)
        t.quote = {"status": "pending", "amount": "180.00", "items": "更换角阀"}
    assert "报价" in (await refused(409, "refused", verb="start", actor="gongcheng"))["detail_zh"]
    shown = await (await client.get(f"/api/v1/tickets/{ticket.id}", headers=auth())).json()
    assert shown["quote"]["status"] == "pending"  # a field app sees why, as the console's ticket page does

    async with rt.db.session() as s:
        t = await s.get_one(Ticket, ticket.id)
        kinds = list((await s.execute(sa.select(TicketEvent.kind).where(TicketEvent.ticket_id == ticket.id)
                                      .order_by(TicketEvent.id))).scalars())
    assert t.status == "dispatched" and t.rework_count == 0
    assert kinds[:2] == ["created", "dispatched"] and "started" not in kinds
    assert [a.action for a in await _audit(client, ticket.number)] == ["ticket.dispatch"]

    # a supervisor changes the responsible engineer, with the reason on the timeline
    body = await act(client, ticket.id, verb="reassign", actor="zhuguan", assignee="xiaozhao", reason="老陈休假")
    assert body["assignee"] == "工程师小赵"
    assert body["timeline"][-2]["kind"] == "reassigned" and body["timeline"][-2]["data"]["reason"] == "老陈休假"
    await rt.engine.drain()


async def test_the_same_path_on_postgresql(yezhu: YezhuFactory, pg_url: str) -> None:
    client = await yezhu(database_url=pg_url, demo=True)
    rt = client.app[RUNTIME]
    ticket = await make_ticket(rt, owner_phone="13800000003", conversation_id=None)
    await act(client, ticket.number, verb="dispatch", actor="kefu", assignee="gongcheng")
    await act(client, ticket.number, verb="close", status=409, actor="kefu")
    await act(client, ticket.number, verb="complete", actor="gongcheng")
    body = await act(client, ticket.number, verb="reopen", actor="kefu", reason="仍未修好")
    assert body["status"] == "reopened" and body["rework_count"] == 1
    assert [a.action for a in await _audit(client, ticket.number)] == ["ticket.dispatch", "ticket.complete",
                                                                        "ticket.reopen"]
    await rt.engine.drain()
