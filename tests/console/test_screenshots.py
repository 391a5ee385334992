"""Screenshots of the real pages for docs/CONSOLE.md (queue, conversation, ticket, dashboard).

``YEZHU_TEST_SCREENSHOTS=docs/screenshots pytest tests/console/test_screenshots.py`` regenerates the
documentation's pictures; without it the same run (never skipped: it also checks that the pages a new
agent looks at first render) writes them to a temporary folder. A realistic morning at the desk is set up
through the real webhook and the console itself.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.store.models import Conversation, Identity, Owner, StaffUser, Ticket, utcnow
from tests.console.conftest import PASSWORD, set_password
from tests.console.live import (
    Live,
    hand_over,
    make_ticket,
    new_page,
    open_conversation,
    screenshot,
)

pytestmark = [pytest.mark.browser]

SHOTS = ("queue", "conversation", "ticket", "tickets", "dashboard")


@pytest.fixture(autouse=True)
def _screenshot_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """docs/screenshots when asked (YEZHU_TEST_SCREENSHOTS), else a temporary folder."""
    import tests.console.live as live_module

    folder = os.environ.get("YEZHU_TEST_SCREENSHOTS") or str(tmp_path / "shots")
    monkeypatch.setattr(live_module, "SCREENSHOTS", folder)
    return Path(folder)


async def _bind(live: Live, phone: str, openid: str) -> None:
    async with live.rt.db.session() as s, s.begin():
        owner = (await s.execute(sa.select(Owner).where(Owner.phone == phone))).scalar_one()
        s.add(Identity(channel="wechat", account="default", external_id=openid, owner_id=owner.id, bound_at=utcnow()))


async def _waiting(live: Live, openid: str, text: str, *, minutes: int, reason: str, priority: int) -> int:
    await live.owner(openid).send_text(text)
    conv = await open_conversation(live.rt, openid)
    if conv.mode == "bot":
        await hand_over(live.rt, conv.id, reason=reason, priority=priority)
    async with live.rt.db.session() as s, s.begin():  # as if it had been waiting a while
        c = await s.get_one(Conversation, conv.id)
        c.waiting_since = utcnow() - dt.timedelta(minutes=minutes)
    return conv.id


async def test_screenshots(live: Live, browser: Any, _screenshot_folder: Path) -> None:
    async with live.rt.db.session() as s:
        phones = list((await s.execute(sa.select(Owner.phone).where(Owner.phone.like("139%"))
                                       .order_by(Owner.id).limit(3))).scalars())
    for i, phone in enumerate(phones):
        await _bind(live, phone, f"oSHOT000{i}")
    zhang = await _waiting(live, "oDEMO0001", "我要找人工客服，卫生间漏水到楼下了", minutes=6, reason="owner_asked",
                           priority=0)
    await _waiting(live, "oDEMO0002", "楼道里有很大的煤气味，怎么办", minutes=2, reason="emergency", priority=100)
    await _waiting(live, "oSHOT0000", "楼下烧烤店油烟太大了，投诉好几次都没人管，再不处理我就打12345",
                   minutes=14, reason="serious_complaint", priority=80)
    await _waiting(live, "oSHOT0001", "停车月卡怎么续费？我在外地", minutes=21, reason="unknown_question", priority=0)
    await _waiting(live, "oSHOT0002", "电梯又坏了，好多邻居都在群里说", minutes=9, reason="group_complaint", priority=90)

    for user in ("kefu", "gongcheng", "zhuguan"):
        await set_password(live.client, user)
    async with live.rt.db.session() as s:
        engineer = (await s.execute(sa.select(StaffUser).where(StaffUser.username == "gongcheng"))).scalar_one()
    for kind, priority, desc, hours in [
        ("repair", "normal", "客厅空调插座没电", 60), ("repair", "urgent", "12栋2号电梯停在8楼", 5),
        ("complaint", "serious", "楼下烧烤店油烟扰民", 30), ("inquiry", "normal", "咨询装修押金退还", 3),
        ("certificate", "normal", "房产证代领委托书", 80), ("repair", "normal", "入户门锁芯卡住", 1),
    ]:
        t = await make_ticket(live.rt, owner_phone="13800000002", conversation_id=None, kind=kind,
                              priority=priority, description=desc, category=None,
                              created=utcnow() - dt.timedelta(hours=hours))
        async with live.rt.db.session() as s, s.begin():
            row = await s.get_one(Ticket, t.id)
            from actions.workflow import compute_due
            row.due_at = compute_due(kind, priority, row.created_at)
            if hours > 20:
                row.status, row.assignee_id = "in_progress", engineer.id

    agent = await new_page(browser, live, "kefu", PASSWORD)
    await agent.locator(f'.queue-item[data-conversation="{zhang}"]').wait_for()
    await screenshot(agent, "queue")

    await agent.locator(f'.queue-item[data-conversation="{zhang}"] button.claim').click()
    await agent.wait_for_url(f"**/console/conversations/{zhang}")
    conv = await open_conversation(live.rt, "oDEMO0001")
    ticket = await make_ticket(live.rt, owner_phone="13800000001", conversation_id=conv.id,
                               description="卫生间地漏返水，渗到楼下天花板")
    await agent.fill("#reply-text", "张先生您好，我是客服小李。已为您登记报修，维修师傅今天下午会联系您上门查看。")
    await agent.press("#reply-text", "Enter")
    await live.api.wait_for_messages(1, timeout=10)
    await agent.fill("#reply-text", "楼下业主也受影响，注意同步回访")
    await agent.click("#as-note")
    await agent.locator("#timeline .msg.note").wait_for()
    await agent.reload()
    await screenshot(agent, "conversation")

    await agent.goto(f"{live.base}/console/tickets/{ticket.id}")
    await agent.select_option("#dispatch-form select[name=assignee_id]", label="工程师老陈（工程师·值班）")
    await agent.fill("#dispatch-form input[name=visit_time]", "今天下午14:00–16:00")
    await agent.click("#dispatch-form button[type=submit]")
    await agent.locator("#ticket-status").get_by_text("已派单").wait_for()
    eng = await new_page(browser, live, "gongcheng", PASSWORD)
    await eng.goto(f"{live.base}/console/tickets/{ticket.id}")
    await eng.click("#start")
    await eng.locator("#ticket-status").get_by_text("处理中").wait_for()
    await eng.fill("#complete-form input[name=note]", "更换地漏密封圈，闭水试验24小时无渗漏")
    await eng.click("#complete")
    await eng.locator("#ticket-status").get_by_text("待验收").wait_for()
    await agent.reload()
    await screenshot(agent, "ticket")
    await agent.goto(f"{live.base}/console/tickets?status=open")
    await screenshot(agent, "tickets")

    supervisor = await new_page(browser, live, "zhuguan", PASSWORD)
    await supervisor.goto(f"{live.base}/console/dashboard")
    await supervisor.locator("svg.chart").first.wait_for()
    await screenshot(supervisor, "dashboard")
    for name in SHOTS:  # every picture the docs show was taken, and is a real page, not a blank one
        shot = _screenshot_folder / f"{name}.png"
        assert shot.stat().st_size > 20_000, f"{shot} looks empty"
