"""The case library (客服案例库) through the console's routes: mark a ticket or a chat as a case, the
monthly report's candidate link filling the form, search on SQLite and PostgreSQL, the .xlsx export
read back, who may create, edit and delete, and the audit log."""

from __future__ import annotations

import datetime as dt
import io
import re
import secrets
from typing import Any

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from bot.runtime import RUNTIME
from bot.store.models import AuditLog, Building, CaseEntry, House, Project, Ticket, TicketEvent, utcnow
from tests.conftest import YezhuFactory
from tests.console.conftest import PASSWORD, js, login, set_password, visible_text, waiting_conversation
from tests.console.live import Live, make_ticket, new_page


async def _building(client: Any, name: str = "3") -> Building:
    async with client.app[RUNTIME].db.session() as s:
        return (await s.execute(sa.select(Building).where(Building.name == name))).scalars().first()  # type: ignore[return-value]


async def _ticket_in(client: Any, building: Building, description: str, *, category: str = "plumbing",
                     unit: str = "1", days_ago: int = 0) -> Ticket:
    """A repair in another house of ``building`` (the recurring issue the report sees)."""
    async with client.app[RUNTIME].db.session() as s, s.begin():
        house = (await s.execute(sa.select(House).where(House.building_id == building.id, House.unit == unit)
                                 .order_by(House.id).limit(1))).scalar_one()
        t = Ticket(number=f"BX{utcnow():%Y%m%d}-{secrets.randbelow(9000) + 1000}", kind="repair", category=category,
                   project_id=building.project_id, house_id=house.id, description=description, status="closed",
                   priority="normal", created_at=utcnow() - dt.timedelta(days=days_ago))
        s.add(t)
        await s.flush()
        s.add(TicketEvent(ticket_id=t.id, kind="created", actor="bot", data={"status": "new"}))
    return t


async def _audit(client: Any, prefix: str = "case") -> list[tuple[str, str, dict[str, Any]]]:
    async with client.app[RUNTIME].db.session() as s:
        rows = (await s.execute(sa.select(AuditLog).where(AuditLog.action.startswith(prefix)).order_by(AuditLog.id))
                ).scalars()
        return [(a.actor, a.action, a.data) for a in rows]


def _form(csrf: str, **fields: Any) -> list[tuple[str, str]]:
    out = [("_csrf", csrf)]
    for k, v in fields.items():
        out += [(k, str(x)) for x in v] if isinstance(v, list) else [(k, str(v))]
    return out


async def test_a_ticket_becomes_a_case_and_only_supervisors_change_it(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    b3 = await _building(client)
    earlier = await _ticket_in(client, b3, "1单元卫生间地漏返水，已疏通")
    ticket = await make_ticket(rt, owner_phone="13800000001", conversation_id=None, category="plumbing",
                               description="卫生间地漏返水，楼下天花板有水渍")
    csrf = await login(client, "kefu")
    page = await (await client.get(f"/console/tickets/{ticket.id}")).text()
    assert f'href="/console/cases/new?ticket={ticket.id}"' in page and "标记为案例" in visible_text(page)

    form = await (await client.get(f"/console/cases/new?ticket={ticket.id}")).text()
    text = visible_text(form)
    assert ticket.number in text and "卫生间地漏返水，楼下天花板有水渍" in text  # the ticket, in "what happened"
    assert re.search(r"3栋\d{4}年\d+月\d+日以来同类（给排水/漏水）工单共 1 张", text)  # and its building's history
    assert earlier.number in text and "1单元卫生间地漏返水，已疏通" in text
    assert '<option selected>工程质量</option>' in form and 'value="engineering" checked' in form
    assert '<option value="plumbing" selected>' in form

    # a mistake comes back with everything typed still there
    typed = {"title": "3栋地漏反复返水", "area": "工程质量", "category": "plumbing", "ticket_id": ticket.id,
             "happened": "3栋两户地漏返水，疏通后复发", "learned": "", "audience": ["engineering", "design"]}
    resp = await client.post("/console/cases", data=_form(csrf, **typed))
    page = await resp.text()
    assert resp.status == 400 and "请填写经验教训" in visible_text(page)
    assert 'value="3栋地漏反复返水"' in page and "3栋两户地漏返水，疏通后复发" in page and 'value="design" checked' in page

    typed["learned"] = "交付前对卫生间地漏做闭水试验；返水先查存水弯"
    resp = await client.post("/console/cases", data=_form(csrf, **typed), allow_redirects=False)
    assert resp.status == 303
    case_url = resp.headers["Location"]
    async with rt.db.session() as s:
        case = (await s.execute(sa.select(CaseEntry))).scalar_one()
    assert case_url == f"/console/cases/{case.id}"
    assert (case.title, case.area, case.category, case.ticket_id, case.created_by) == (
        "3栋地漏反复返水", "工程质量", "plumbing", ticket.id, "kefu")
    assert case.audience == ["design", "engineering"] and case.project_id is None
    page = await (await client.get(f"/console/tickets/{ticket.id}")).text()  # the ticket links to its case
    assert f'<a href="/console/cases/{case.id}">3栋地漏反复返水</a>' in page

    # the agent reads it but may not change it
    page = visible_text(await (await client.get(case_url)).text())
    assert "交付前对卫生间地漏做闭水试验" in page and ticket.number in page and "删除案例" not in page
    assert (await client.post(case_url, headers=js(csrf), json={**typed, "title": "改"})).status == 403
    assert (await client.post(f"{case_url}/delete", headers=js(csrf))).status == 403
    # an engineer reads the library but does not write cases
    csrf = await login(client, "gongcheng")
    assert "3栋地漏反复返水" in visible_text(await (await client.get("/console/cases")).text())
    assert (await client.get(f"/console/cases/new?ticket={ticket.id}")).status == 403
    assert (await client.post("/console/cases", headers=js(csrf), json=typed)).status == 403

    csrf = await login(client, "zhuguan")
    resp = await client.post(case_url, headers=js(csrf), json={**typed, "title": "3栋卫生间地漏反复返水",
                                                               "audience": ["engineering"]})
    assert resp.status == 200, await resp.text()
    resp = await client.post(case_url, headers=js(csrf), json={**typed, "area": "售后"})
    assert resp.status == 400 and "业务领域" in (await resp.json())["detail"]
    assert (await client.post(f"{case_url}/delete", headers=js(csrf))).status == 200
    async with rt.db.session() as s:
        assert (await s.execute(sa.select(CaseEntry))).first() is None
    audited = await _audit(client)
    assert [(who, what) for who, what, _ in audited] == [("kefu", "case.create"), ("zhuguan", "case.update"),
                                                         ("zhuguan", "case.delete")]
    assert audited[0][2]["ticket_id"] == ticket.id
    assert audited[1][2]["changed"] == ["title", "audience"] and audited[1][2]["before"]["title"] == "3栋地漏反复返水"
    assert audited[2][2]["title"] == "3栋卫生间地漏反复返水"


async def test_the_reports_candidate_link_and_a_chat_prefill_the_form(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    b8 = await _building(client, "8")
    leaks = [await _ticket_in(client, b8, f"{n}单元厨房下水管渗水", unit=str(n)) for n in (1, 2, 3)]
    await _ticket_in(client, b8, "入户门锁坏了", category="door_window")
    async with rt.db.session() as s:
        project = (await s.execute(sa.select(Project))).scalar_one()
    conv_id = await waiting_conversation(client, "crm-case", "你好，楼上装修噪音太大了，天天早上七点就开始")
    await login(client, "kefu")

    url = (f"/console/cases/new?category=plumbing&building={b8.id}&project={project.id}"
           "&title=8栋厨房下水管反复渗水")
    form = await (await client.get(url)).text()
    text = visible_text(form)
    assert 'value="8栋厨房下水管反复渗水"' in form
    assert re.search(r"8栋\d{4}年\d+月\d+日以来同类（给排水/漏水）工单共 3 张：", text)
    assert all(t.number in text for t in leaks) and "入户门锁" not in text  # only that category
    assert f'<option value="{project.id}" selected>' in form and '<option value="plumbing" selected>' in form
    # from an old month's report: that ticket's neighbours of the months before it count too
    old = await _ticket_in(client, b8, "3单元阳台地漏返水", unit="3", days_ago=300)
    older = await _ticket_in(client, b8, "2单元厨房水管漏水", unit="2", days_ago=400)
    text = visible_text(await (await client.get(f"/console/cases/new?ticket={old.id}&building={b8.id}")).text())
    assert "3单元阳台地漏返水" in text and older.number in text and "工单共 4 张" in text

    page = await (await client.get(f"/console/conversations/{conv_id}")).text()
    assert f'href="/console/cases/new?conversation={conv_id}"' in page
    form = await (await client.get(f"/console/cases/new?conversation={conv_id}")).text()
    assert "会话记录" in visible_text(form) and "业主" in visible_text(form)
    assert "天天早上七点就开始" in visible_text(form) and f'name="conversation_id" value="{conv_id}"' in form
    # unknown ids and values in the link are ignored, never an error page
    assert (await client.get("/console/cases/new?ticket=99999&building=x&category=nope&project=")).status == 200


async def test_search_and_the_xlsx_export(yezhu: YezhuFactory, db_url: str) -> None:
    client = await yezhu(database_url=db_url, demo=True)
    async with client.app[RUNTIME].db.session() as s:
        project = (await s.execute(sa.select(Project))).scalar_one()
    csrf = await login(client, "kefu")
    cases = [
        {"title": "3栋地漏反复返水", "area": "工程质量", "category": "plumbing", "project_id": project.id,
         "happened": "两户地漏返水", "learned": "交付前做闭水试验", "audience": ["engineering", "design"]},
        {"title": "夜间装修噪音", "area": "物业管理", "category": "noise", "happened": "业主投诉楼上早7点装修",
         "learned": "装修巡查提前到7点；公告施工时间", "audience": ["service"]},
        {"title": "=HYPERLINK(\"http://x\",\"点我\")", "area": "销售服务", "category": "sales_promise",
         "happened": "销售承诺赠送车位未兑现 100%_done", "learned": "承诺写进合同附件", "audience": ["service", "design"]},
    ]
    for c in cases:
        resp = await client.post("/console/cases", headers=js(csrf), json=c)
        assert resp.status == 200, await resp.text()

    async def titles(**q: Any) -> list[str]:
        resp = await client.get("/console/cases", params=q)
        assert resp.status == 200
        page = await resp.text()
        return [c["title"] for c in cases if f">{c['title']}<".replace('"', "&#34;") in page]

    assert await titles() == [c["title"] for c in cases]
    assert await titles(q="闭水") == ["3栋地漏反复返水"]  # what was learned
    assert await titles(q="装修 公告") == ["夜间装修噪音"]  # every word must match
    assert await titles(q="漏水") == ["3栋地漏反复返水"]  # the category's name (给排水/漏水)
    assert await titles(q="100%_") == [cases[2]["title"]]  # LIKE's wildcards are just characters
    assert await titles(q="100%x") == []
    assert await titles(area="物业管理") == ["夜间装修噪音"]
    assert await titles(category="sales_promise") == [cases[2]["title"]]
    assert await titles(audience="design") == ["3栋地漏反复返水", cases[2]["title"]]
    assert await titles(project=project.id) == ["3栋地漏反复返水"]
    assert await titles(audience="service", q="车位") == [cases[2]["title"]]
    assert "没有符合条件的案例" in visible_text(await (await client.get("/console/cases?q=电梯")).text())

    resp = await client.get("/console/cases/export.xlsx", params={"audience": "design"})
    assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(await resp.read())).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:8] == ("编号", "标题", "业务领域", "类别", "楼盘", "事情经过", "经验教训", "适用对象")
    by_title = {r[1]: r for r in rows[1:]}
    assert set(by_title) == {"3栋地漏反复返水", cases[2]["title"]}  # the filters apply to the export
    leak = by_title["3栋地漏反复返水"]
    assert leak[2:8] == ("工程质量", "给排水/漏水", project.name, "两户地漏返水", "交付前做闭水试验", "设计、工程")
    formula = sheet.cell(row=[r[1] for r in rows].index(cases[2]["title"]) + 1, column=2)
    assert formula.data_type == "s"  # an owner's "=…" stays text in Excel, never a formula
    assert [(who, what, data["rows"]) for who, what, data in await _audit(client, "case.export")] == [
        ("kefu", "case.export", 2)]


@pytest.mark.browser
async def test_in_the_browser_a_ticket_is_marked_as_a_case_found_and_exported(live: Live, browser: Any) -> None:
    ticket = await make_ticket(live.rt, owner_phone="13800000001", conversation_id=None, category="plumbing",
                               description="卫生间地漏返水，楼下天花板有水渍")
    await set_password(live.client, "kefu")
    page = await new_page(browser, live, "kefu", PASSWORD)
    await page.goto(f"{live.base}/console/tickets/{ticket.id}")
    await page.click("#mark-case")
    await page.wait_for_url(f"**/console/cases/new?ticket={ticket.id}")
    assert "卫生间地漏返水" in await page.input_value("textarea[name=happened]")
    assert await page.is_checked("input[name=audience][value=engineering]")
    await page.fill("input[name=title]", "3栋地漏返水")
    await page.fill("textarea[name=learned]", "交付前对卫生间地漏做闭水试验")
    await page.check("input[name=audience][value=design]")
    await page.click("#case-form button[type=submit]")
    await page.wait_for_url(re.compile(r"/console/cases/\d+$"))
    assert "案例已加入案例库" in await page.inner_text("body")

    await page.click("nav >> text=案例库")
    await page.fill("#case-filters input[name=q]", "闭水")
    await page.click("#case-filters button[type=submit]")
    await page.wait_for_url("**/console/cases?q=*")
    assert await page.locator("#case-list tbody tr[data-case]").count() == 1
    assert "设计" in await page.inner_text("#case-list") and ticket.number in await page.inner_text("#case-list")
    async with page.expect_download() as info:
        await page.click("#export-cases")
    download = await info.value
    assert download.suggested_filename.endswith(".xlsx")
    sheet = load_workbook(io.BytesIO((await download.path()).read_bytes())).active
    assert [r[1] for r in sheet.iter_rows(min_row=2, values_only=True)] == ["3栋地漏返水"]
    await page.context.close()
