"""Each kind's audience and the channel choice, as the preview shows it to staff: recipients per channel,
everyone excluded with the reason, SMS cost and samples (both databases)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openpyxl
import pytest

from actions import campaigns
from actions.campaigns import KindError
from tests.campaigns.conftest import runtime, seed


@pytest.fixture
async def rt(yezhu: Any, db_url: str) -> Any:
    client = await yezhu(demo=False, database_url=db_url)
    r = runtime(client)
    r.seeded = await seed(r)  # type: ignore[attr-defined]
    return r


@pytest.fixture
async def rt_sqlite(yezhu: Any) -> Any:
    """The same SQL runs on both databases (above); input handling needs only one."""
    r = runtime(await yezhu(demo=False))
    r.seeded = await seed(r)  # type: ignore[attr-defined]
    return r


async def preview(rt: Any, kind: str, **kw: Any) -> campaigns.Preview:
    return (await campaigns.create(rt, kind=kind, project="camp", actor="kefu", **kw)).preview


async def test_each_kind_reaches_its_audience_on_the_right_channel(rt: Any) -> None:
    # 办证通知: ready certificates only; a follower by WeChat, the others by SMS; opted out and the
    # co-owner of a house already told are excluded with their reasons.
    p = await preview(rt, "certificate_collection")
    assert (p.recipients, p.channels) == (2, {"wechat": 1, "sms": 1})
    assert p.excluded == {"opted_out": 1, "duplicate_house": 1}
    assert "甲先生" in p.samples["wechat"]["text"] and "1栋1单元101" in p.samples["wechat"]["text"]
    assert p.samples["sms"]["text"].startswith("【物业客服】") and "客服中心" in p.samples["sms"]["text"]
    assert p.sms_segments >= 1 and p.sms_cost > 0

    # 工程进展: buyers not yet handed over (准业主), WeChat only: the one not following is "not bound".
    p = await preview(rt, "construction_progress", params={"content": "主体结构封顶", "photos": "https://x/1.jpg"})
    assert (p.channels, p.excluded) == ({"wechat": 1, "sms": 0}, {"not_bound": 1})
    assert "https://x/1.jpg" in p.samples["wechat"]["text"]

    # 交付通知: 准业主 too, SMS where not bound -- but that one opted out of notices.
    p = await preview(rt, "handover", params={"date": "2027年3月1日", "place": "交付中心"})
    assert (p.channels, p.excluded) == ({"wechat": 1, "sms": 0}, {"opted_out": 1})

    # A planned cut in building 2: opted out and no phone excluded.
    outage = {"utility": "water", "start": "2026-12-20T09:00", "end": "2026-12-20T17:00", "area": "2栋"}
    p = await preview(rt, "outage", buildings="2", params=outage)
    assert (p.channels, p.excluded) == ({"wechat": 1, "sms": 0}, {"opted_out": 1, "no_phone": 1})
    assert "停水" in p.samples["wechat"]["text"] and "12月20日 09:00至12月20日 17:00" in p.samples["wechat"]["text"]
    # …a sudden one is safety information: both channels, opted-out owners too.
    p = await preview(rt, "outage", buildings="2", urgent=True, params=outage)
    assert (p.recipients, p.channels, p.excluded) == (2, {"wechat": 1, "sms": 2}, {"no_phone": 1})
    assert "紧急通知" in p.samples["sms"]["text"]

    # 保修到期: the house whose electrical warranty (2 years) ends within two months.
    p = await preview(rt, "warranty_expiry", params={"item": "electrical"})
    assert (p.recipients, p.channels) == (1, {"wechat": 1, "sms": 0})
    assert "电气管线" in p.samples["wechat"]["text"]

    # 满意度调查 to everyone; a tag; units.
    p = await preview(rt, "survey", params={"template": "periodic-2026"})
    assert (p.channels, p.excluded) == ({"wechat": 3, "sms": 1}, {"opted_out": 1, "no_phone": 1, "duplicate_house": 1})
    assert "2026年度满意度调查" in p.samples["wechat"]["text"]
    # …without naming a template: the active periodic survey is the one invited to.
    assert "2026年度满意度调查" in (await preview(rt, "survey")).samples["wechat"]["text"]
    p = await preview(rt, "notice", audience={"tag": "VIP"}, params={"content": "VIP活动"})
    assert (p.recipients, p.channels) == (1, {"wechat": 1, "sms": 0})
    p = await preview(rt, "notice", audience={"stage": "老业主"}, params={"content": "x"})
    assert (p.recipients, p.excluded) == (0, {"no_phone": 1})


async def test_an_uploaded_list_reports_bad_rows_by_number(rt_sqlite: Any, tmp_path: Path) -> None:
    rt = rt_sqlite
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["楼栋", "单元", "房号", "手机号"])
    ws.append(["1", "1", "102", None])          # row 2: 乙's house
    ws.append(["9", "9", "999", None])          # row 3: no such house
    ws.append([None, None, None, "13900000003"])  # row 4: 丙 by phone
    ws.append([None, None, None, "123"])        # row 5: not a phone
    path = tmp_path / "list.xlsx"
    wb.save(path)
    async with rt.db.session() as s:
        result = await campaigns.read_list(s, rt.seeded.project_id, path)
    assert [(e.row, e.reason) for e in result.errors] == [(3, "本项目没有这个房屋"), (5, "手机号格式不正确")]
    p = await preview(rt, "notice", audience={"houses": result.houses, "owners": result.owners},
                      params={"content": "名单通知"})
    assert (p.recipients, p.channels) == (2, {"wechat": 1, "sms": 1})


async def test_bad_input_gets_one_clear_error(rt_sqlite: Any) -> None:
    rt = rt_sqlite
    # The wizard's live preview stores nothing.
    p = await campaigns.preview_new(rt, kind="notice", project="camp", buildings="1", params={"content": "x"})
    assert p.recipients == 3 and await campaigns.list_campaigns(rt) == []
    with pytest.raises(KindError, match="未知的通知类型"):
        await campaigns.create(rt, kind="party", project="camp")
    with pytest.raises(KindError, match="缺少参数：content"):
        await campaigns.create(rt, kind="notice", project="camp")
    with pytest.raises(KindError, match="没有项目"):
        await campaigns.create(rt, kind="notice", project="nowhere", params={"content": "x"})
    with pytest.raises(campaigns.CampaignError, match="没有在职员工账号"):
        await campaigns.create(rt, kind="notice", project="camp", actor="ghost", params={"content": "x"})
    with pytest.raises(KindError, match="utility"):
        await campaigns.create(rt, kind="outage", project="camp", params={"utility": "air", "start": "x", "area": "y"})
