"""A desk's day through the real app: tickets for phone calls and walk-ins (same verdict as the bot's),
edits on the timeline, urgency first, one search box, photos, paid-repair quotes accepted in chat."""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

import sqlalchemy as sa
from aiohttp import FormData

from actions.tickets import local_now, warranty_verdict
from bot.console.core import CONSOLE
from bot.runtime import RUNTIME
from bot.store.models import (
    AuditLog,
    Conversation,
    House,
    Identity,
    Owner,
    Photo,
    StaffUser,
    Ticket,
    TicketEvent,
    utcnow,
)
from tests.conftest import YezhuFactory, auth
from tests.console.conftest import js, login, visible_text, waiting_conversation

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde\x00"
       b"\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82")


async def _owner(client: Any, phone: str) -> Owner:
    async with client.app[RUNTIME].db.session() as s:
        return (await s.execute(sa.select(Owner).where(Owner.phone == phone))).scalar_one()


async def _house_of(client: Any, owner: Owner) -> House:
    from sqlalchemy.orm import selectinload

    from bot.store.models import Building, OwnerHouse
    async with client.app[RUNTIME].db.session() as s:
        return (await s.execute(
            sa.select(House).join(OwnerHouse, OwnerHouse.house_id == House.id).where(OwnerHouse.owner_id == owner.id)
            .options(selectinload(House.building).selectinload(Building.project)).limit(1)
        )).scalar_one()


async def _ticket(client: Any, ticket_id: int) -> Ticket:
    async with client.app[RUNTIME].db.session() as s:
        return await s.get_one(Ticket, ticket_id)


async def _create(client: Any, csrf: str, **fields: Any) -> Any:
    return await client.post("/console/tickets", data={"_csrf": csrf, **fields}, headers={"Accept": "application/json"})


async def test_a_phone_call_becomes_a_ticket_with_the_bots_warranty_verdict(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    csrf = await login(client, "kefu")
    # The agent finds the caller by the last 4 digits of the number they read out.
    found = await (await client.get("/console/api/owners", params={"q": "0001"}, headers=js(csrf))).json()
    zhang = next(o for o in found["owners"] if o["name"] == "张三")
    house_id = zhang["houses"][0]["id"]
    resp = await _create(client, csrf, origin="phone", kind="repair", category="plumbing", priority="normal",
                         owner_id=zhang["id"], house_id=house_id, description="卫生间地漏返水，楼下天花板渗水",
                         visit_time="明天上午")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    t = await _ticket(client, body["ticket_id"])
    assert t.number.startswith("BX") and t.origin == "phone" and t.status == "new" and t.due_at is not None
    assert t.contact_phone == "13800000001" and t.owner_id == zhang["id"] and t.house_id == house_id
    house = await _house_of(client, await _owner(client, "13800000001"))
    expected = warranty_verdict("plumbing", t.description, house.handover_date,
                                (house.building.project.settings or {}).get("warranty") or {},
                                local_now().date()).to_dict()
    assert t.warranty == expected and "渗水" in t.description  # a waterproofing leak: 5 years
    page = await (await client.get(f"/console/tickets/{t.id}")).text()
    for text in ("电话", "给排水/漏水", "张三", "创建工单", "客服小李", expected["reason"][:10]):
        assert text in page, text
    assert "plumbing" not in visible_text(page) and "kefu" not in visible_text(page)
    async with client.app[RUNTIME].db.session() as s:
        logged = (await s.execute(sa.select(AuditLog).where(AuditLog.action == "ticket.create"))).scalar_one()
    assert logged.actor == "kefu" and logged.target == f"ticket:{t.number}"


async def test_a_walk_in_about_a_public_spot_and_what_the_form_refuses(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    csrf = await login(client, "kefu")
    resp = await _create(client, csrf, origin="walk_in", kind="repair", category="elevator", priority="urgent",
                         location="5栋2号电梯", description="电梯门关不上", contact_phone="139 1234 5678")
    assert resp.status == 200, await resp.text()
    t = await _ticket(client, (await resp.json())["ticket_id"])
    assert t.house_id is None and t.location == "5栋2号电梯" and t.contact_phone == "13912345678"
    assert t.priority == "urgent" and t.warranty and t.warranty["covered"] is None  # public area: no warranty
    assert t.due_at is not None and t.due_at - t.created_at == dt.timedelta(hours=2)

    zhang, li = await _owner(client, "13800000001"), await _owner(client, "13800000002")
    li_house = await _house_of(client, li)
    refusals = [
        ({"kind": "repair", "description": "", "location": "大门"}, "问题描述"),
        ({"kind": "repair", "description": "漏水", "owner_id": zhang.id, "house_id": li_house.id}, "不属于该业主"),
        ({"kind": "repair", "description": "漏水"}, "公共区域"),
        ({"kind": "complaint", "priority": "urgent", "description": "太吵", "location": "3栋"}, "紧急程度"),
        ({"kind": "repair", "description": "漏水", "location": "大门", "contact_phone": "12345"}, "手机号格式不正确"),
        ({"kind": "repair", "description": "漏水", "location": "大门"}, "联系电话"),
        ({"kind": "fix", "description": "漏水", "location": "大门"}, "工单类型"),
    ]
    for fields, detail in refusals:
        resp = await _create(client, csrf, **{"origin": "phone", **fields})
        assert resp.status == 400, fields
        text = (await resp.json())["detail"]
        assert detail in text and not re.search(r"[a-z]{3}", text), text


async def test_a_ticket_from_a_taken_over_chat_is_prefilled(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    conv_id = await waiting_conversation(client, "crm-leak", "我家厨房水管爆了一直在漏水")
    csrf = await login(client, "kefu")
    page = await (await client.get("/console/tickets/new", params={"conversation": conv_id})).text()
    assert "我家厨房水管爆了一直在漏水" in page and f'name="conversation_id" value="{conv_id}"' in page
    resp = await _create(client, csrf, origin="wechat", kind="repair", category="plumbing", location="待确认",
                         contact_phone="13900001111", description="厨房水管爆裂", conversation_id=conv_id)
    t = await _ticket(client, (await resp.json())["ticket_id"])
    assert t.conversation_id == conv_id
    chat = await (await client.get(f"/console/conversations/{conv_id}")).text()
    assert t.number in chat and "给排水/漏水" in chat


async def test_edits_are_on_the_timeline_and_in_the_audit_log(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    csrf = await login(client, "kefu")
    resp = await _create(client, csrf, origin="phone", kind="complaint", category="noise", location="3栋",
                         contact_phone="13900002222", description="楼上装修噪音")
    t = await _ticket(client, (await resp.json())["ticket_id"])
    resp = await client.post(f"/console/tickets/{t.id}/edit", headers=js(csrf),
                             json={"priority": "serious", "description": "楼上装修噪音，已反映三次，要打12345"})
    assert resp.status == 200, await resp.text()
    after = await _ticket(client, t.id)
    assert after.priority == "serious" and after.due_at - after.created_at == dt.timedelta(hours=4)
    page = await (await client.get(f"/console/tickets/{t.id}")).text()
    assert "修改工单" in page and "紧急程度：一般 → 严重" in page and "要打12345" in page
    resp = await client.post(f"/console/tickets/{t.id}/edit", headers=js(csrf), json={"priority": "serious"})
    assert resp.status == 400 and "没有需要保存的修改" in (await resp.json())["detail"]
    async with client.app[RUNTIME].db.session() as s:
        edited = (await s.execute(sa.select(TicketEvent).where(TicketEvent.ticket_id == t.id,
                                                               TicketEvent.kind == "edited"))).scalar_one()
        logged = (await s.execute(sa.select(AuditLog).where(AuditLog.action == "ticket.edit"))).scalar_one()
    assert edited.data["changes"]["priority"] == ["normal", "serious"] and logged.actor == "kefu"
    e_csrf = await login(client, "gongcheng")
    resp = await client.post(f"/console/tickets/{t.id}/edit", headers=js(e_csrf), json={"priority": "normal"})
    assert resp.status == 403


async def test_urgent_and_overdue_tickets_come_first_and_the_navigation_counts_overdue(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    csrf = await login(client, "kefu")
    made = {}
    for name, kind, priority, location in [("plain", "repair", "normal", "1栋大堂"),
                                           ("urgent", "repair", "urgent", "2栋电梯"),
                                           ("late", "inquiry", "normal", "客服中心")]:
        resp = await _create(client, csrf, origin="phone", kind=kind, priority=priority, location=location,
                             contact_phone="13900003333", description=f"{name} 工单",
                             category="other" if kind == "repair" else "")
        made[name] = (await resp.json())["ticket_id"]
    async with client.app[RUNTIME].db.session() as s, s.begin():
        late = await s.get_one(Ticket, made["late"])
        late.due_at = utcnow() - dt.timedelta(hours=1)
        soon = await s.get_one(Ticket, made["plain"])
        soon.due_at = utcnow() + dt.timedelta(minutes=50)
    client.app[CONSOLE].overdue.clear()  # changed behind the console's back: no event to recount on
    page = await (await client.get("/console/tickets")).text()
    order = [int(x) for x in re.findall(r'data-ticket="(\d+)"', page)]
    assert order.index(made["urgent"]) < order.index(made["late"]) < order.index(made["plain"])
    assert "超时1" in page and "临近超时" in page
    newest = await (await client.get("/console/tickets", params={"sort": "new"})).text()
    first = re.search(r'data-ticket="(\d+)"', newest)
    assert first is not None and int(first.group(1)) == made["late"]


async def test_the_queue_says_why_a_chat_waits_and_which_message_caused_it(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    await client.post("/api/v1/messages", json={"sender": "crm-why", "text": "小区大门的道闸坏了一周没人修"},
                      headers=auth())
    conv_id = await waiting_conversation(client, "crm-why", "人工", reason="owner_asked")
    csrf = await login(client, "kefu")
    await client.post("/api/v1/messages", json={"sender": "crm-why", "text": "你好"}, headers=auth())
    html = (await (await client.get("/console/api/queue", headers=js(csrf))).json())["html"]
    item = html[html.index(f'data-conversation="{conv_id}"'):]
    assert "业主要求人工" in item and "“人工”" in item and "道闸坏了一周没人修" in item
    assert "最新：你好" in item


async def test_one_search_box_finds_by_phone_house_number_and_words(yezhu: YezhuFactory, db_url: str) -> None:
    client = await yezhu(database_url=db_url)
    csrf = await login(client, "kefu")
    zhang = await _owner(client, "13800000001")
    house = await _house_of(client, zhang)
    resp = await _create(client, csrf, origin="phone", kind="repair", category="door_window", owner_id=zhang.id,
                         house_id=house.id, description="入户门锁芯卡住打不开")
    t = await _ticket(client, (await resp.json())["ticket_id"])
    await waiting_conversation(client, "crm-search", "车库B2的灯一直闪")
    for q in ("0001", "13800000001", "3-2-501", "3栋2单元501", t.number, t.number[:10].lower(), "锁芯", "张三"):
        page = await (await client.get("/console/search", params={"q": q})).text()
        assert f'data-ticket="{t.id}"' in page, q
        if q not in (t.number, t.number[:10].lower(), "锁芯"):
            assert f'data-owner="{zhang.id}"' in page, q
    resp = await _create(client, csrf, origin="walk_in", kind="repair", category="elevator", location="5栋2号电梯",
                         contact_phone="13900007777", description="轿厢里的灯不亮")
    lift = (await resp.json())["ticket_id"]
    for q in ("电梯", "5栋2号", "灯不亮", "灯"):  # two characters (bigrams on PostgreSQL), more, one
        page = await (await client.get("/console/search", params={"q": q})).text()
        assert f'data-ticket="{lift}"' in page and f'data-ticket="{t.id}"' not in page, q
    page = await (await client.get("/console/search", params={"q": "一直闪"})).text()
    assert 'id="conversation-results"' in page and "车库B2的灯一直闪" in page
    filtered = await (await client.get("/console/search", params={"q": "锁芯", "kind": "complaint"})).text()
    assert f'data-ticket="{t.id}"' not in filtered
    today = local_now().date()
    dated = await (await client.get("/console/search", params={
        "q": "锁芯", "category": "door_window", "status": "open", "from": today.isoformat(),
        "to": today.isoformat()})).text()
    assert f'data-ticket="{t.id}"' in dated
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    assert f'data-ticket="{t.id}"' not in await (await client.get("/console/search", params={
        "q": "锁芯", "to": yesterday})).text()
    wild = await (await client.get("/console/search", params={"q": "100%_"})).text()
    assert "没有匹配的工单" in wild


async def test_engineers_search_only_their_own_tickets_with_masked_phones(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    csrf = await login(client, "kefu")
    zhang = await _owner(client, "13800000001")
    house = await _house_of(client, zhang)
    resp = await _create(client, csrf, origin="phone", kind="repair", category="electrical", owner_id=zhang.id,
                         house_id=house.id, description="客厅插座没电")
    theirs = await _ticket(client, (await resp.json())["ticket_id"])
    await _create(client, csrf, origin="phone", kind="repair", category="electrical", owner_id=zhang.id,
                  house_id=house.id, description="卧室插座冒火花")
    async with client.app[RUNTIME].db.session() as s:
        engineer = (await s.execute(sa.select(StaffUser).where(StaffUser.username == "gongcheng"))).scalar_one()
    await client.post(f"/console/tickets/{theirs.id}/dispatch", headers=js(csrf), json={"assignee_id": engineer.id})
    await login(client, "gongcheng")
    page = await (await client.get("/console/search", params={"q": "插座"})).text()
    assert "客厅插座没电" in page and "13800000001" in page  # their own ticket, the phone to call
    assert "卧室插座冒火花" not in page and 'id="owner-results"' not in page  # not theirs; no owner search
    page = await (await client.get("/console/search", params={"q": "0001"})).text()
    assert f'data-ticket="{theirs.id}"' in page and "卧室插座冒火花" not in page and "data-owner=" not in page


async def test_photos_from_the_engineers_phone_and_the_owners_chat(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    csrf = await login(client, "kefu")
    resp = await _create(client, csrf, origin="phone", kind="repair", category="other", location="1栋大堂",
                         contact_phone="13900004444", description="大堂吊顶掉了一块")
    ticket_id = (await resp.json())["ticket_id"]
    form = FormData()
    form.add_field("_csrf", csrf)
    form.add_field("stage", "before")
    form.add_field("photo", io.BytesIO(PNG * 1), filename="IMG_0001.PNG", content_type="image/png")
    big = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 12_000  # 3 MB from a phone's camera: far above the
    form.add_field("photo", io.BytesIO(big), filename="IMG_0002.JPG", content_type="image/jpeg")  # 64 KB webhook limit
    resp = await client.post(f"/console/tickets/{ticket_id}/photos", data=form, headers={"Accept": "application/json"})
    assert resp.status == 200, await resp.text()
    photo_id, big_id = (await resp.json())["photo_ids"]
    assert len(await (await client.get(f"/console/media/photo/{big_id}")).read()) == len(big)
    img = await client.get(f"/console/media/photo/{photo_id}")
    assert img.status == 200 and img.content_type == "image/png" and await img.read() == PNG
    page = await (await client.get(f"/console/tickets/{ticket_id}")).text()
    assert f"/console/media/photo/{photo_id}" in page and "施工前" in page and "添加照片" in page
    bad = FormData()
    bad.add_field("_csrf", csrf)
    bad.add_field("photo", io.BytesIO(b"MZ not an image"), filename="a.jpg", content_type="image/jpeg")
    resp = await client.post(f"/console/tickets/{ticket_id}/photos", data=bad, headers={"Accept": "application/json"})
    assert resp.status == 415 and "不是照片" in (await resp.json())["detail"]
    async with client.app[RUNTIME].db.session() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Photo))).scalar_one() == 2


async def test_a_paid_repair_waits_for_the_owner_to_accept_the_quote_in_chat(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    await client.post("/api/v1/messages", json={"sender": "crm-paid", "text": "洗手盆下水堵了"}, headers=auth())
    async with rt.db.session() as s:
        conv = (await s.execute(sa.select(Conversation).join(Identity, Identity.id == Conversation.identity_id)
                                .where(Identity.external_id == "crm-paid"))).scalars().first()
    assert conv is not None
    csrf = await login(client, "kefu")
    resp = await _create(client, csrf, origin="phone", kind="repair", category="drainage", location="8栋1单元1203",
                         contact_phone="13900005555", description="洗手盆下水堵塞（异物）", conversation_id=conv.id)
    ticket_id = (await resp.json())["ticket_id"]
    async with rt.db.session() as s, s.begin():  # the desk judged it a usage problem: a paid repair
        t = await s.get_one(Ticket, ticket_id)
        t.warranty = {"covered": False, "reason": "异物堵塞属于使用问题，不在保修范围"}
    for amount, detail in (("abc", "正确的报价金额"), ("0", "大于0"), ("180", "报价包含的项目")):
        resp = await client.post(f"/console/tickets/{ticket_id}/quote", headers=js(csrf),
                                 json={"amount": amount, "items": "" if amount == "180" else "疏通"})
        assert resp.status == 409 and detail in (await resp.json())["detail"]
    resp = await client.post(f"/console/tickets/{ticket_id}/quote", headers=js(csrf),
                             json={"amount": "¥80", "items": "疏通下水 1 处"})
    assert resp.status == 200, await resp.text()
    page = await (await client.get(f"/console/conversations/{conv.id}")).text()
    assert "费用合计80.00元" in page and "同意报价" in page
    # Dispatch, then the engineer may not start before the owner said yes.
    async with rt.db.session() as s:
        engineer = (await s.execute(sa.select(StaffUser).where(StaffUser.username == "gongcheng"))).scalar_one()
    resp = await client.post(f"/console/tickets/{ticket_id}/dispatch", headers=js(csrf),
                             json={"assignee_id": engineer.id, "visit_time": "今天下午"})
    assert resp.status == 200
    e_csrf = await login(client, "gongcheng")
    resp = await client.post(f"/console/tickets/{ticket_id}/start", headers=js(e_csrf))
    assert resp.status == 409 and "尚未同意报价" in (await resp.json())["detail"]
    # "我不同意你们的处理方式" is not an answer to the price; "同意报价" is a yes.
    other = await client.post("/api/v1/messages", json={"sender": "crm-paid", "text": "我不同意你们的处理方式"},
                              headers=auth())
    assert not any("报价" in r["text"] for r in (await other.json())["replies"])
    assert (await _ticket(client, ticket_id)).quote["status"] == "pending"  # type: ignore[index]
    answer = await client.post("/api/v1/messages", json={"sender": "crm-paid", "text": "同意报价"}, headers=auth())
    replies = (await answer.json())["replies"]
    assert any("已确认报价80.00元" in r["text"] for r in replies), replies
    t = await _ticket(client, ticket_id)
    assert t.quote is not None and t.quote["status"] == "accepted"
    page = await (await client.get(f"/console/tickets/{ticket_id}")).text()
    assert "业主同意报价" in page and "80.00 元" in page and "业主已同意" in page
    resp = await client.post(f"/console/tickets/{ticket_id}/start", headers=js(e_csrf))
    assert resp.status == 200


async def test_imports_show_progress_and_a_row_level_error_table(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    csrf = await login(client, "admin")
    csv_text = ("项目,楼栋,单元,房号,业主姓名,手机号,交房日期\n"
                "示范花园,5,1,101,赵六,13911110001,2025-05-01\n"
                "示范花园,5,1,102,钱七,1391111,2025-05-01\n"
                "示范花园,5,1,103,孙八,13911110003,2025/13/45\n")
    form = FormData()
    form.add_field("_csrf", csrf)
    form.add_field("kind", "owners")
    form.add_field("file", csv_text.encode("utf-8-sig"), filename="花名册.csv", content_type="text/csv")
    resp = await client.post("/console/imports", data=form, headers={"Accept": "application/json"})
    assert resp.status == 200, await resp.text()
    job = (await resp.json())["job"]
    for _ in range(100):
        state = await (await client.get(f"/console/api/imports/{job}", headers=js(csrf))).json()
        if state["status"] != "running":
            break
        import asyncio
        await asyncio.sleep(0.1)
    assert state["status"] == "done", state
    html = state["html"]
    assert "导入 1 行" in html and "2 行有问题" in html and 'id="import-errors"' in html
    assert "手机号格式不正确" in html and ">3<" in html and ">4<" in html
    assert "(not a" not in html and "phone" not in html
    assert (await _owner(client, "13911110001")).name == "赵六"
    await login(client, "kefu")
    assert (await client.get("/console/imports")).status == 403


async def test_the_ways_a_desk_types_a_house_or_a_phone(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    csrf = await login(client, "kefu")
    for q in ("3-2-501", "3栋2单元501", "3栋2单元501室", "三栋二单元501", "3#2-501", "3号楼2单元501", "3栋501",
              "138 0000 0001", "+86 138-0000-0001", "0001", "张三"):
        found = await (await client.get("/console/api/owners", params={"q": q}, headers=js(csrf))).json()
        assert "张三" in [o["name"] for o in found["owners"]], q
        page = await (await client.get("/console/search", params={"q": q})).text()
        assert "data-owner=" in page and "张三" in page, q
    for q in ("3-2-5011", "99栋1单元101", "李四四"):
        found = await (await client.get("/console/api/owners", params={"q": q}, headers=js(csrf))).json()
        assert "张三" not in [o["name"] for o in found["owners"]], q
