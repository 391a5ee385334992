"""The ticket workflow (actions/workflow.py) and its console routes: transitions, one responsible
engineer, SLAs, rework, and the owner told each step in their chat (or by SMS outside WeChat's window)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from actions.workflow import (
    DEFAULT_SLA_HOURS,
    TicketWorkflow,
    WorkflowError,
    compute_due,
    is_overdue,
    sla_hours,
)
from bot.events import EventBatch
from bot.runtime import RUNTIME
from bot.store.models import (
    AuditLog,
    Conversation,
    Identity,
    Message,
    Project,
    SmsMessage,
    StaffUser,
    Ticket,
    TicketEvent,
    utcnow,
)
from tests.conftest import YezhuFactory
from tests.console.conftest import js, login
from tests.console.live import make_ticket


def test_sla_defaults_and_project_overrides() -> None:
    assert sla_hours("repair", "urgent") == DEFAULT_SLA_HOURS["repair"]["urgent"]
    assert sla_hours("complaint", "group") == 4
    project = {"sla": {"repair": {"normal": 24}, "inquiry": {"normal": 8}}}
    assert sla_hours("repair", "normal", project) == 24
    assert sla_hours("repair", "urgent", project) == DEFAULT_SLA_HOURS["repair"]["urgent"]
    assert sla_hours("inquiry", "whatever", project) == 8
    assert sla_hours("unknown-kind", "normal") == 72
    start = dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC)
    assert compute_due("repair", "normal", start, project) == start + dt.timedelta(hours=24)


async def _staff(client: Any, username: str) -> StaffUser:
    async with client.app[RUNTIME].db.session() as s:
        return (await s.execute(sa.select(StaffUser).where(StaffUser.username == username))).scalar_one()


async def _wechat_conversation(client: Any, openid: str = "oDEMO0001", *, hours_ago: float = 0) -> int:
    """The owner's WeChat conversation, last written ``hours_ago`` (the 48-hour window)."""
    rt = client.app[RUNTIME]
    async with rt.db.session() as s, s.begin():
        identity = (await s.execute(sa.select(Identity).where(Identity.external_id == openid))).scalar_one()
        identity.last_inbound_at = utcnow() - dt.timedelta(hours=hours_ago)
        conv = await rt.engine.current_conversation(s, identity)
        return conv.id


async def _run(client: Any, ticket_id: int, verb: str, **kw: Any) -> list[int]:
    rt = client.app[RUNTIME]
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        ticket = await s.get_one(Ticket, ticket_id)
        ids = await getattr(TicketWorkflow(rt), verb)(s, batch, ticket, actor="test", **kw)
    await rt.engine.after_commit(batch, ids)
    return ids


async def test_full_workflow_notifies_the_owner_in_their_chat(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    conv_id = await _wechat_conversation(client)
    ticket = await make_ticket(rt, owner_phone="13800000001", conversation_id=conv_id)
    engineer = await _staff(client, "gongcheng")

    assert len(await _run(client, ticket.id, "dispatch", assignee=engineer, visit_time="周三上午")) == 1
    assert await _run(client, ticket.id, "start") == []
    assert len(await _run(client, ticket.id, "complete", note="已更换")) == 1
    assert len(await _run(client, ticket.id, "close", reason="已验收")) == 1
    with pytest.raises(WorkflowError):
        await _run(client, ticket.id, "start")
    assert len(await _run(client, ticket.id, "reopen", reason="业主反馈仍漏水")) == 1

    async with rt.db.session() as s:
        t = await s.get_one(Ticket, ticket.id)
        kinds = list((await s.execute(sa.select(TicketEvent.kind).where(TicketEvent.ticket_id == t.id)
                                      .order_by(TicketEvent.id))).scalars())
        notices = list((await s.execute(sa.select(Message).where(Message.conversation_id == conv_id,
                                                                 Message.direction == "out")
                                        .order_by(Message.id))).scalars())
    assert t.status == "reopened" and t.rework_count == 1 and t.closed_at is None
    assert t.due_at is not None and t.due_at > utcnow() + dt.timedelta(hours=47)
    assert kinds == ["created", "dispatched", "owner_notified", "started", "done", "awaiting_acceptance",
                     "owner_notified", "closed", "owner_notified", "reopened", "owner_notified"]
    texts = [m.text for m in notices]
    assert "工程师老陈" in texts[0] and "周三上午" in texts[0]
    assert "2天内" in texts[1] and "已办结" in texts[2] and "返修" in texts[3]
    assert all(t.number in x for x in texts) and all(m.author == "bot" for m in notices)
    await rt.engine.drain()


async def test_one_responsible_engineer_only_a_reason_changes_them(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    ticket = await make_ticket(rt, owner_phone="13800000003", conversation_id=None)
    engineer_user, supervisor_user, agent = [await _staff(client, u) for u in ("gongcheng", "zhuguan", "kefu")]
    with pytest.raises(WorkflowError, match="工程师或主管"):
        await _run(client, ticket.id, "dispatch", assignee=agent, visit_time=None)
    await _run(client, ticket.id, "dispatch", assignee=engineer_user, visit_time=None)
    with pytest.raises(WorkflowError, match="原因"):
        await _run(client, ticket.id, "reassign", assignee=supervisor_user, reason=" ")
    await _run(client, ticket.id, "reassign", assignee=supervisor_user, reason="老陈休假")
    async with rt.db.session() as s:
        t = await s.get_one(Ticket, ticket.id)
        ev = (await s.execute(sa.select(TicketEvent).where(TicketEvent.ticket_id == t.id,
                                                           TicketEvent.kind == "reassigned"))).scalar_one()
    assert t.assignee_id == supervisor_user.id
    assert ev.data["reason"] == "老陈休假" and ev.data["from_assignee"] == "工程师老陈"


async def test_outside_the_wechat_window_a_follower_gets_the_template_message_else_an_sms(
    yezhu: YezhuFactory
) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    conv_id = await _wechat_conversation(client, hours_ago=49)
    first = await make_ticket(rt, owner_phone="13800000001", conversation_id=conv_id)
    [templated] = await _run(client, first.id, "dispatch", assignee=await _staff(client, "gongcheng"),
                             visit_time="明天上午")
    async with rt.db.session() as s, s.begin():
        message = await s.get_one(Message, templated)
        assert message.kind == "template" and message.conversation_id == conv_id
        assert message.media["wechat_template"]["fields"]["thing4"] == "明天上午"
        assert (await s.execute(sa.select(SmsMessage))).scalars().all() == []
        conv = await s.get_one(Conversation, conv_id)
        identity = await s.get_one(Identity, conv.identity_id)
        identity.subscribed = False  # no longer follows: template messages cannot reach them
    ticket = await make_ticket(rt, owner_phone="13800000001", conversation_id=conv_id)
    assert await _run(client, ticket.id, "dispatch", assignee=await _staff(client, "gongcheng"),
                      visit_time="明天下午") == []
    async with rt.db.session() as s:
        sms = (await s.execute(sa.select(SmsMessage))).scalars().all()
        ev = (await s.execute(sa.select(TicketEvent).where(TicketEvent.kind == "owner_notified",
                                                           TicketEvent.ticket_id == ticket.id))).scalar_one()
    assert len(sms) == 1 and sms[0].phone == "13800000001" and "明天下午" in sms[0].text
    assert ev.data["channel"] == "sms"
    async with rt.db.session() as s:  # staff see in the owner's conversation what went by SMS
        noted = (await s.execute(sa.select(Message).where(Message.conversation_id == conv_id,
                                                          Message.channel == "sms"))).scalar_one()
    assert noted.text == sms[0].text and noted.media["sms_id"] == sms[0].id


async def test_an_owner_without_any_channel_is_recorded_as_not_told(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    ticket = await make_ticket(rt, owner_phone="13800000003", conversation_id=None)
    async with rt.db.session() as s, s.begin():
        t = await s.get_one(Ticket, ticket.id)
        t.contact_phone = None
        await s.execute(sa.update(Ticket).where(Ticket.id == t.id).values(contact_phone=None))
        from bot.store.models import Owner
        await s.execute(sa.update(Owner).where(Owner.phone == "13800000003").values(sms_opt_out=True))
    await _run(client, ticket.id, "dispatch", assignee=await _staff(client, "gongcheng"), visit_time=None)
    async with rt.db.session() as s:
        ev = (await s.execute(sa.select(TicketEvent).where(TicketEvent.kind == "owner_not_notified"))).scalar_one()
    assert "退订" in ev.data["reason"]


async def test_overdue_and_project_sla_in_the_console(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    async with rt.db.session() as s, s.begin():
        project = (await s.execute(sa.select(Project))).scalar_one()
        project.settings = {**project.settings, "sla": {"repair": {"normal": 1}}}
    old = await make_ticket(rt, owner_phone="13800000001", conversation_id=None,
                            created=utcnow() - dt.timedelta(hours=3))
    fresh = await make_ticket(rt, owner_phone="13800000002", conversation_id=None)
    await login(client, "kefu")
    resp = await client.get(f"/console/tickets/{old.id}")  # computes the missing due time from the SLA
    assert "已超时" in await resp.text()
    async with rt.db.session() as s:
        t = await s.get_one(Ticket, old.id)
    assert is_overdue(t) and t.due_at == t.created_at + dt.timedelta(hours=1)
    page = await (await client.get("/console/tickets?overdue=1")).text()
    assert old.number in page and fresh.number not in page
    page = await (await client.get("/console/tickets?kind=complaint")).text()
    assert old.number not in page
    page = await (await client.get("/console/tickets?building=3&status=new")).text()
    assert old.number in page and fresh.number not in page


async def test_ticket_routes_enforce_roles_and_states(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    ticket = await make_ticket(rt, owner_phone="13800000002", conversation_id=None)
    engineer = await _staff(client, "gongcheng")
    csrf = await login(client, "gongcheng")
    url = f"/console/tickets/{ticket.id}"
    assert (await client.post(f"{url}/dispatch", headers=js(csrf), json={"assignee_id": engineer.id})).status == 403
    # an engineer sees the phone masked until the ticket is theirs
    assert "138****0002" in await (await client.get(url)).text()
    client.session.cookie_jar.clear()
    csrf = await login(client, "kefu")
    assert (await client.post(f"{url}/start", headers=js(csrf))).status == 403  # field work is the engineer's
    resp = await client.post(f"{url}/dispatch", headers=js(csrf), json={"assignee_id": engineer.id,
                                                                       "visit_time": "周五上午"})
    assert resp.status == 200 and (await resp.json())["status"] == "dispatched"
    resp = await client.post(f"{url}/dispatch", headers=js(csrf), json={"assignee_id": engineer.id})
    assert resp.status == 409  # not twice
    resp = await client.post(f"{url}/reassign", headers=js(csrf), json={"assignee_id": 1, "reason": "x"})
    assert resp.status == 403  # supervisors only
    client.session.cookie_jar.clear()
    csrf = await login(client, "gongcheng")
    assert "13800000002" in await (await client.get(url)).text()
    assert (await client.post(f"{url}/start", headers=js(csrf))).status == 200
    assert (await client.post(f"{url}/close", headers=js(csrf))).status == 403  # the desk closes
    resp = await client.post(f"{url}/note", data={"_csrf": csrf, "note": "需要订配件"}, allow_redirects=False)
    assert resp.status == 303
    async with rt.db.session() as s:
        audited = list((await s.execute(sa.select(AuditLog.action).where(AuditLog.target == f"ticket:{ticket.number}")
                                        )).scalars())
    assert {"ticket.view", "ticket.dispatch", "ticket.start", "ticket.note"} <= set(audited)
