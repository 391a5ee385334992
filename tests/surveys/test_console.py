"""The console's survey pages through their HTTP routes: callbacks due and overdue, template editing
(supervisors only, validated, audited), and the whole path once on PostgreSQL + Redis."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from bot.store.models import AuditLog, SurveyResponse, SurveyTemplate, Ticket
from tests.conftest import WECHAT, YezhuFactory
from tests.console.conftest import js
from tests.conversations.conftest import Chat
from tests.fakes.wechat_server import FakeWeChatAPI
from tests.surveys.conftest import Desk, daytime, file_repair, invited


async def test_callbacks_due_and_overdue_and_the_rates(chat: Any, desk: Desk) -> None:
    zhang = chat("oDEMO0001")
    first = await file_repair(zhang)
    await desk.close(first)
    second = await file_repair(zhang, "客厅灯不亮了")
    await desk.close(second)
    async with desk.rt.db.session() as s, s.begin():  # the first one closed 8 days ago: its callback is late
        ticket = (await s.execute(sa.select(Ticket).where(Ticket.number == first))).scalar_one()
        ticket.closed_at = ticket.closed_at - dt.timedelta(days=8)  # type: ignore[operator]
    await desk.login("kefu")
    page = await (await desk.client.get("/console/callbacks")).text()
    overdue = page[page.index('id="overdue-callbacks"'):page.index('id="due-callbacks"')]
    due = page[page.index('id="due-callbacks"'):page.index('id="recovery-tickets"')]
    assert first in overdue and second not in overdue and second in due
    assert "维修回访率（目标 90%，0/2）" in page
    await desk.login("gongcheng")  # engineers do not make callbacks
    assert (await desk.client.get("/console/callbacks")).status == 403


async def test_supervisors_edit_templates_and_every_change_is_audited(desk: Desk) -> None:
    await desk.login("kefu")
    page = await (await desk.client.get("/console/surveys/templates")).text()
    assert "维修回访" in page and "居住体验调查" in page and "工程质量" in page
    async with desk.rt.db.session() as s:
        template = (await s.execute(sa.select(SurveyTemplate).where(SurveyTemplate.code == "periodic_survey"))
                    ).scalar_one()
    items = template.items
    resp = await desk.client.get(f"/console/surveys/templates/{template.id}", headers=js(desk.csrf))
    assert resp.status == 403  # an agent
    await desk.login("zhuguan")
    assert "第1题业务领域" in await (await desk.client.get(f"/console/surveys/templates/{template.id}")).text()
    fields: dict[str, str] = {"name": "2026年居住体验调查", "active": "1"}
    for n, item in enumerate(items):
        fields.update({f"code_{n}": item["code"], f"text_{n}": item["text"], f"area_{n}": item["area"],
                       f"type_{n}": item["type"]})
    wrong = {**fields, "code_1": "recommend", "code_2": "rebuy"}  # the loyalty items out of order
    resp = await desk.post(f"/surveys/templates/{template.id}", **wrong)
    assert resp.status == 400 and "前三项" in (await resp.json())["detail"]
    resp = await desk.post(f"/surveys/templates/{template.id}", **{**fields, "area_3": "其他"})
    assert resp.status == 400 and "业务领域" in (await resp.json())["detail"]
    n = len(items)
    added = {**fields, f"code_{n}": "parking", f"text_{n}": "您对停车管理满意吗？", f"area_{n}": "物业管理",
             f"type_{n}": "score"}
    assert (await desk.post(f"/surveys/templates/{template.id}", **added)).status == 200
    async with desk.rt.db.session() as s:
        template = await s.get(SurveyTemplate, template.id)  # type: ignore[assignment]
        assert template.name == "2026年居住体验调查" and template.items[-1]["code"] == "parking"
        assert template.updated_by == "zhuguan"
        audit = (await s.execute(sa.select(AuditLog).where(AuditLog.action == "survey.template"))).scalar_one()
        assert audit.actor == "zhuguan" and "parking" in audit.data["items"]


async def test_the_callback_path_on_postgresql_and_redis(yezhu: YezhuFactory, pg_url: str, redis_url: str) -> None:
    async with FakeWeChatAPI({WECHAT["wechat_app_id"]: WECHAT["wechat_app_secret"]}) as api:
        client = await yezhu(wechat_api_base=api.base_url, survey_delay=0, database_url=pg_url, redis_url=redis_url)
        desk = Desk(client)
        zhang = Chat(client, "oDEMO0001")
        zhang.rt.engine.clock = daytime
        number = await file_repair(zhang)
        await desk.close(number)
        await invited(zhang, desk)
        assert "哪里做得不好" in await zhang("😡")
        assert "2/6" in await zhang("等了三天才来人")
        assert "不打扰" in await zhang("别问了")
        async with desk.rt.db.session() as s:
            row = (await s.execute(sa.select(SurveyResponse))).scalar_one()
            recovery = await s.get(Ticket, row.recovery_ticket_id)
        assert row.status == "partial" and row.scores == {"overall": 1} and row.answers["overall"] == "等了三天才来人"
        assert recovery is not None and recovery.kind == "recovery" and "等了三天" in recovery.description
        await client.close()
