"""Campaigns and the certificate counter in Debian's Chromium (Playwright): an agent records who collected
a certificate (a proxy without 委托书 is refused, then recorded), and drafts a campaign in the wizard, reads
its preview, test-sends it, sends it and watches its progress.

With ``YEZHU_TEST_SCREENSHOTS=docs/screenshots`` the pages are saved for docs/CAMPAIGNS.md
(collection-register, campaign-wizard, campaign-progress).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from bot.store.models import Building, Campaign, CertificateRecord, Delivery, House, Owner, OwnerHouse, utcnow
from tests.console.conftest import PASSWORD, set_password
from tests.console.live import Live, new_page, screenshot

pytestmark = pytest.mark.browser

BATCH = "2026-第3批"


async def _batch(live: Live) -> None:
    """张三's notice went out and was acknowledged; two neighbours' certificates are in the same batch."""
    async with live.rt.db.session() as s, s.begin():
        zhang = (await s.execute(sa.select(Owner).where(Owner.phone == "13800000001"))).scalar_one()
        record = (await s.execute(sa.select(CertificateRecord).where(CertificateRecord.batch == BATCH))).scalar_one()
        c = Campaign(name="第3批领证通知", kind="certificate_collection", text="您的不动产权证书已可领取", status="done",
                     params={"place": "客服中心（1栋大堂）", "hours": "工作日 9:00–17:00"}, channels=["wechat", "sms"],
                     created_by="kefu")
        s.add(c)
        await s.flush()
        sent = utcnow() - dt.timedelta(days=3)
        s.add(Delivery(campaign_id=c.id, owner_id=zhang.id, house_id=record.house_id, channel="wechat",
                       recipient="oDEMO0001", idempotency_key="b:zhang", status="acknowledged", sent_at=sent,
                       delivered_at=sent, acknowledged_at=sent + dt.timedelta(hours=2)))
        neighbours = (await s.execute(
            sa.select(House.id, Owner.id).join(Building, Building.id == House.building_id)
            .join(OwnerHouse, OwnerHouse.house_id == House.id).join(Owner, Owner.id == OwnerHouse.owner_id)
            .where(Building.name == "3", House.unit == "2", House.room.in_(["502", "601"])).order_by(House.id)
        )).all()
        for n, (house_id, owner_id) in enumerate(neighbours):
            s.add(CertificateRecord(house_id=house_id, status="ready", batch=BATCH, ready_at=sent))
            s.add(Delivery(campaign_id=c.id, owner_id=owner_id, house_id=house_id, channel="sms" if n else "wechat",
                           recipient="x", idempotency_key=f"b:{n}", status="delivered", sent_at=sent,
                           delivered_at=sent))


async def test_the_counter_and_a_campaign_in_the_browser(live: Live, browser: Any) -> None:
    await _batch(live)
    await set_password(live.client, "kefu")
    agent = await new_page(browser, live, "kefu", PASSWORD)

    # The counter: open the batch, a proxy without 委托书 is refused, then recorded.
    await agent.goto(f"{live.base}/console/certificates")
    await agent.select_option("#batch-select", BATCH)
    await agent.click("text=打开批次")
    row = agent.locator('tr[data-house="3栋2单元501"]')
    await row.locator("select[name=relation]").select_option("proxy")
    await row.locator("input[name=collector_name]").fill("李梅")
    await row.locator("input[name=id_checked]").check()
    await row.locator("button[type=submit]").click()
    await agent.locator(".flash.error").get_by_text("代领须业主签字的委托书").wait_for()
    row = agent.locator('tr[data-house="3栋2单元501"]')
    await row.locator("select[name=relation]").select_option("proxy")
    await row.locator("input[name=collector_name]").fill("李梅")
    await row.locator("input[name=proxy_letter]").check()
    await row.locator("input[name=id_checked]").check()
    await row.locator("button[type=submit]").click()
    await agent.locator(".flash.ok").get_by_text("由李梅（代领）领取").wait_for()
    assert "委托书：有" in await agent.locator('tr[data-house="3栋2单元501"]').inner_text()
    assert "已确认" in await agent.locator('tr[data-house="3栋2单元501"]').inner_text()
    await screenshot(agent, "collection-register")
    async with live.rt.db.session() as s:
        record = (await s.execute(sa.select(CertificateRecord).join(House).join(Building).where(
            Building.name == "3", House.unit == "2", House.room == "501"))).scalar_one()
    assert (record.status, record.collector_relation, record.handed_over_by) == ("collected", "proxy", "kefu")
