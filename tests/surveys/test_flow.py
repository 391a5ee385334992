"""The in-chat callback survey through the real WeChat webhook, NLU and policy."""

from __future__ import annotations

from typing import Any

from tests.surveys.conftest import Desk, file_repair, invited


async def test_a_closed_repair_gets_a_callback_answered_in_chat(chat: Any, desk: Desk) -> None:
    zhang = chat("oDEMO0001")
    number = await file_repair(zhang)
    await desk.close(number)
    [row] = await desk.responses()
    assert row.status == "scheduled" and row.kind == "repair"
    opening = await invited(zhang, desk)
    assert number in opening and "1/6" in opening and "总体满意度" in opening
    assert "2/6" in await zhang("非常满意")
    assert "3/6" in await zhang("给4分吧")
    assert "4/6" in await zhang("👍")
    assert "5/6" in await zhang("还行吧")
    reply = await zhang("挺好的")
    assert "意见或建议" in reply
    assert "感谢您的评价" in await zhang("没有")
    [row] = await desk.responses()
    assert row.status == "complete" and row.scores == {"overall": 5, "timeliness": 4, "result": 5, "attitude": 3,
                                                       "tidiness": 4}
    assert row.stage == "磨合期" and row.category == "plumbing" and row.engineer_id is not None
    assert row.completed_at is not None and row.project_id is not None and row.house_id is not None
