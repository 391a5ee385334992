"""No English code on any console page: every page's visible text is scanned after a day's worth of data
(tickets of every kind through every verb, edits, quotes, photos, chats with what the bot understood,
knowledge, imports, audit entries), as each role sees it.

And live everywhere in the embedded mode: what another process writes to the same SQLite database reaches
the console's event stream within 2 seconds, and a staff reply reaches a ``yezhu chat`` terminal owner.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from typing import Any

import sqlalchemy as sa
from aiohttp import FormData

from bot.runtime import RUNTIME
from bot.store.models import Conversation, Identity, KnowledgeEntry, Message, Owner, StaffUser, Ticket, utcnow
from tests.conftest import YezhuFactory, auth, make_settings
from tests.console.conftest import js, login, visible_text, waiting_conversation

TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_.:/\-]*")
ALLOWED = {"Enter", "Shift", "Excel", "xlsx", "csv", "App"}
"""Words staff read as words: keys on the keyboard, file types, the 物业App of the demo knowledge base."""


def english_codes(text: str, allowed: set[str]) -> set[str]:
    """Latin tokens with a lower-case letter (``hvac``, ``no_show``, ``admin``, ``staff:kefu``); upper-case
    abbreviations (``BX`` of a ticket number, ``CSV``, ``JPG``) are how staff write them."""
    return {tok for tok in TOKEN.findall(text) if any(c.islower() for c in tok) and tok not in allowed}


async def _a_busy_day(client: Any) -> dict[str, int]:
    rt = client.app[RUNTIME]
    csrf = await login(client, "kefu")
    async with rt.db.session() as s:
        zhang = (await s.execute(sa.select(Owner).where(Owner.phone == "13800000001"))).scalar_one()
        engineer = (await s.execute(sa.select(StaffUser).where(StaffUser.username == "gongcheng"))).scalar_one()
    found = await (await client.get("/console/api/owners", params={"q": "张三"}, headers=js(csrf))).json()
    house_id = found["owners"][0]["houses"][0]["id"]
    ids: dict[str, int] = {}
    for name, fields in {
        "hvac": {"kind": "repair", "category": "hvac", "owner_id": zhang.id, "house_id": house_id},
        "floor": {"kind": "repair", "category": "wall_floor", "owner_id": zhang.id, "house_id": house_id,
                  "priority": "urgent"},
        "no_show": {"kind": "complaint", "category": "no_show", "location": "3栋", "priority": "group",
                    "contact_phone": "13900006666"},
        "cert": {"kind": "certificate", "owner_id": zhang.id, "house_id": house_id},
    }.items():
        resp = await client.post("/console/tickets", headers=js(csrf), json={
            "origin": "walk_in", "description": "业主来访反映的问题", **fields})
        assert resp.status == 200, await resp.text()
        ids[name] = (await resp.json())["ticket_id"]
    t = ids["hvac"]
    await client.post(f"/console/tickets/{t}/edit", headers=js(csrf), json={"category": "electrical",
                                                                          "location": "主卧"})
    await client.post(f"/console/tickets/{t}/dispatch", headers=js(csrf), json={"assignee_id": engineer.id,
                                                                              "visit_time": "明天上午"})
    async with rt.db.session() as s, s.begin():
        row = await s.get_one(Ticket, t)
        row.warranty = {**(row.warranty or {}), "covered": False}
    await client.post(f"/console/tickets/{t}/quote", headers=js(csrf), json={"amount": "120", "items": "更换开关"})
    await client.post(f"/console/tickets/{t}/note", headers=js(csrf), json={"note": "业主下午在家"})
    form = FormData()
    form.add_field("_csrf", csrf)
    form.add_field("photo", io.BytesIO(b"\xff\xd8\xff\xe0" + b"0" * 64), filename="a.jpg", content_type="image/jpeg")
    await client.post(f"/console/tickets/{t}/photos", data=form, headers={"Accept": "application/json"})
    for verb in ("reassign",):
        await client.post(f"/console/tickets/{ids['floor']}/{verb}", headers=js(csrf), json={})
    await client.post(f"/console/tickets/{ids['cert']}/dispatch", headers=js(csrf), json={"assignee_id": engineer.id})
    # Chats: an emergency the bot understood, a person asked for, one taken over with a reply and a note.
    await client.post("/api/v1/messages", json={"sender": "crm-gas", "text": "厨房有很大的煤气味"}, headers=auth())
    ids["conv"] = await waiting_conversation(client, "crm-human", "我要投诉，找人工", reason="owner_asked")
    ids["gas"] = await waiting_conversation(client, "crm-gas", "快来人", reason="emergency", priority=100)
    await client.post(f"/console/conversations/{ids['conv']}/claim", headers=js(csrf))
    await client.post(f"/console/conversations/{ids['conv']}/reply", headers=js(csrf), json={"text": "您好，请讲"})
    await client.post(f"/console/conversations/{ids['conv']}/note", headers=js(csrf), json={"text": "备注"})
    await client.get("/console/search", params={"q": "0001"})
    # the case library: a case from a ticket, edited by a supervisor, exported; a field app's ticket note
    resp = await client.post("/console/cases", headers=js(csrf), json={
        "title": "空调不制冷", "area": "工程质量", "category": "hvac", "ticket_id": ids["hvac"], "happened": "业主反映",
        "learned": "交付前试机", "audience": ["engineering", "design"]})
    ids["case"] = (await resp.json())["id"]
    await client.get("/console/cases/export.xlsx", params={"category": "hvac", "audience": "design", "q": "空调"})
    await client.post(f"/api/v1/tickets/{ids['floor']}/actions", headers=auth(),
                      json={"verb": "note", "actor": "kefu", "text": "业主下午在家"})
    csrf = await login(client, "zhuguan")
    await client.post(f"/console/cases/{ids['case']}", headers=js(csrf), json={
        "title": "空调不制冷", "area": "物业管理", "category": "electrical", "happened": "业主反映",
        "learned": "交付前试机", "audience": ["service"]})
    async with rt.db.session() as s:
        ids["kb"] = (await s.execute(sa.select(KnowledgeEntry.id).limit(1))).scalar_one()
        ids["owner"] = zhang.id
    return ids


async def test_no_english_code_on_any_console_page(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    ids = await _a_busy_day(client)
    async with client.app[RUNTIME].db.session() as s:
        usernames = set((await s.execute(sa.select(StaffUser.username))).scalars())
    csrf = await login(client, "admin")
    form = FormData()
    form.add_field("_csrf", csrf)
    form.add_field("kind", "certificates")
    form.add_field("file", "项目,楼栋,单元,房号,状态\n示范花园,3,2,501,ready\n示范花园,3,2,999,可领取\n,1,1,101,不知道\n"
                   .encode(), filename="2026.csv", content_type="text/csv")
    job = (await (await client.post("/console/imports", data=form, headers={"Accept": "application/json"})).json())["job"]
    for _ in range(50):
        if (await (await client.get(f"/console/api/imports/{job}", headers=js(csrf))).json())["status"] != "running":
            break
        await asyncio.sleep(0.1)
    pages = [
        "/console/", "/console/tickets", "/console/tickets?status=open&sort=new", "/console/tickets/new",
        f"/console/tickets/new?conversation={ids['conv']}", *(f"/console/tickets/{i}" for k, i in ids.items()
                                                             if k in ("hvac", "floor", "no_show", "cert")),
        f"/console/conversations/{ids['conv']}", f"/console/conversations/{ids['gas']}",
        "/console/owners?q=张三", f"/console/owners/{ids['owner']}", "/console/knowledge", "/console/knowledge/new",
        f"/console/knowledge/{ids['kb']}", "/console/knowledge-unanswered?all=1", "/console/dashboard",
        "/console/staff", "/console/audit", "/console/search?q=0001", "/console/search?q=3-2-501",
        "/console/search?q=问题&status=open", "/console/imports", f"/console/imports/{job}",
        "/console/cases", "/console/cases?area=工程质量&audience=design", f"/console/cases/new?ticket={ids['hvac']}",
        f"/console/cases/new?conversation={ids['conv']}", f"/console/cases/{ids['case']}",
    ]
    problems: dict[str, set[str]] = {}
    for role in ("admin", "kefu", "gongcheng"):
        await login(client, role)
        for path in pages:
            resp = await client.get(path)
            if resp.status == 403:
                continue
            assert resp.status == 200, (role, path, resp.status)
            allowed = ALLOWED | (usernames if path == "/console/staff" else set())
            found = english_codes(visible_text(await resp.text()), allowed)
            if found:
                problems[f"{role} {path}"] = found
        queue = await client.get("/console/api/queue", headers=js(csrf))
        if queue.status == 200:
            found = english_codes(visible_text((await queue.json())["html"]), ALLOWED)
            if found:
                problems[f"{role} queue fragment"] = found
    assert not problems, "\n".join(f"{page}: {sorted(codes)}" for page, codes in problems.items())


async def test_events_from_another_process_reach_the_console_within_2_seconds(yezhu: YezhuFactory) -> None:
    """``yezhu chat`` in another terminal writes to the same SQLite file; there is no Redis to carry its
    events, so the console watches the database."""
    from bot.app import create_app

    client = await yezhu()
    url = str(client.app[RUNTIME].settings.database_url)
    conv_id = await waiting_conversation(client, "crm-live", "电梯困人了", reason="emergency", priority=100)
    await login(client, "kefu")
    other = create_app(make_settings(database_url=url))  # the other process: its own runtime and pub/sub
    runtime = other[RUNTIME]
    await runtime.start(migrate=False)
    try:
        resp = await client.get("/console/events")
        assert resp.status == 200
        await resp.content.readline()  # retry: …
        started = time.monotonic()
        async with runtime.db.session() as s:
            identity = (await s.execute(sa.select(Identity).where(Identity.external_id == "crm-live"))).scalar_one()
        from channels.base import Accepted, InboundMessage
        accepted = await runtime.engine.accept(InboundMessage(
            channel=identity.channel, account=identity.account, sender="crm-live", msg_id="other-process-1",
            kind="text", text="还在吗？人还困着"))
        assert isinstance(accepted, Accepted)
        seen = ""
        while not re.search(r"event: message\.created\ndata: .*\n", seen):
            line = await asyncio.wait_for(resp.content.readline(), 2.5)
            seen += line.decode()
        assert time.monotonic() - started < 2.0
        assert f'"conversation_id": {conv_id}' in seen
        resp.close()
    finally:
        await runtime.stop()


async def test_a_staff_reply_reaches_the_terminal_owner(yezhu: YezhuFactory, capsys: Any) -> None:
    from bot.cli import _echo_proactive

    client = await yezhu()
    rt = client.app[RUNTIME]
    # A terminal owner (``yezhu chat --openid oTERM1``) asks for a person.
    await client.post("/api/v1/messages", json={"sender": "warmup", "text": "你好"}, headers=auth())
    from channels.base import InboundMessage
    accepted = await rt.engine.accept(InboundMessage(channel="wechat", account="default", sender="oTERM1",
                                                     msg_id="term-1", kind="text", text="我要人工客服"))
    await accepted.replies  # type: ignore[union-attr]
    async with rt.db.session() as s:
        conv = (await s.execute(sa.select(Conversation).join(Identity, Identity.id == Conversation.identity_id)
                                .where(Identity.external_id == "oTERM1"))).scalars().first()
    assert conv is not None and conv.mode == "waiting"
    echo = asyncio.ensure_future(_echo_proactive(rt, "wechat", "default", "oTERM1", interval=0.2))
    await asyncio.sleep(0.5)  # the terminal has printed the bot's answers itself
    csrf = await login(client, "kefu")
    await client.post(f"/console/conversations/{conv.id}/claim", headers=js(csrf))
    resp = await client.post(f"/console/conversations/{conv.id}/reply", headers=js(csrf),
                             json={"text": "您好，我是客服小李，请问有什么可以帮您？"})
    assert resp.status == 200, await resp.text()
    try:
        for _ in range(20):
            await asyncio.sleep(0.2)
            if "客服小李>" in capsys.readouterr().out + "":
                break
        else:
            raise AssertionError("the terminal owner never saw the staff reply")
    finally:
        echo.cancel()
    async with rt.db.session() as s:
        out = (await s.execute(sa.select(Message).where(Message.conversation_id == conv.id,
                                                        Message.author == "staff:kefu"))).scalar_one()
    assert out.at <= utcnow()
