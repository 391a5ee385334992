"""A phone callback recorded on the ticket page in Debian's Chromium, and the supervisor's recovery call."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from actions.workflow import TicketWorkflow
from bot.events import EventBatch
from bot.store.models import StaffUser, SurveyResponse, Ticket
from tests.console.conftest import PASSWORD, set_password
from tests.console.live import Live, make_ticket, new_page

pytestmark = pytest.mark.browser


async def test_a_phone_callback_with_a_low_score_reaches_the_supervisor(live: Live, browser: Any) -> None:
    rt = live.rt
    ticket = await make_ticket(rt, owner_phone="13800000001", conversation_id=None)
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        t = await s.get_one(Ticket, ticket.id)
        engineer = (await s.execute(sa.select(StaffUser).where(StaffUser.username == "gongcheng"))).scalar_one()
        wf = TicketWorkflow(rt)
        await wf.dispatch(s, batch, t, assignee=engineer, visit_time=None, actor="kefu")
        await wf.complete(s, batch, t, actor="gongcheng")
        await wf.close(s, batch, t, actor="kefu")
    for name in ("kefu", "zhuguan"):
        await set_password(live.client, name)
    page = await new_page(browser, live, "kefu", PASSWORD)
    await page.goto(f"{live.base}/console/tickets/{ticket.id}")
    await page.select_option("select[name=score_overall]", "2")
    await page.select_option("select[name=score_timeliness]", "1")
    await page.select_option("select[name=score_result]", "4")
    await page.fill("#callback-form textarea[name=note]", "业主说等了一整天，电话也没人接")
    await page.click("#save-callback")
    await page.wait_for_selector("#callbacks .cb-complete")
    section = await page.inner_text("#callbacks")
    assert "已完成" in section and "人工" in section and "2分" in section and "等了一整天" in section
    async with page.expect_navigation():
        await page.click("text=查看补救单")
    assert "等了一整天" in await page.inner_text("main")
    assert await page.query_selector("#recovery-form") is None  # only a supervisor records the recovery call
    recovery_url = page.url
    boss = await new_page(browser, live, "zhuguan", PASSWORD)
    await boss.goto(recovery_url)
    await boss.fill("textarea[name=outcome]", "已致电致歉，周六再次上门检查")
    await boss.click("#record-recovery")
    await boss.wait_for_selector("text=补救结果已登记")
    async with rt.db.session() as s:
        kinds = [r.kind for r in (await s.execute(sa.select(SurveyResponse).order_by(SurveyResponse.id))).scalars()]
    assert kinds == ["repair", "recheck"]
