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
    assert row.stage == "稳定期" and row.category == "plumbing" and row.engineer_id is not None
    assert row.completed_at is not None and row.project_id is not None and row.house_id is not None


async def test_a_low_score_asks_why_and_opens_a_recovery_ticket_for_a_supervisor(chat: Any, desk: Desk) -> None:
    zhang = chat("oDEMO0001")
    number = await file_repair(zhang)
    await desk.close(number)
    await invited(zhang, desk)
    assert "哪里做得不好" in await zhang("2分")
    assert "2/6" in await zhang("师傅迟到了两个小时也没打电话")
    assert "3/6" in await zhang("太慢了，差评")  # a score with its reason in the same message: not asked again
    for text in ("5", "5", "5", "跳过"):
        reply = await zhang(text)
    recovery = NUMBER.search(reply)
    assert recovery and recovery.group().startswith("HF") and "主管" in reply and "24小时" in reply
    [row] = await desk.responses()
    assert row.scores["overall"] == 2 and row.scores["timeliness"] == 1
    assert row.answers["overall"] == "师傅迟到了两个小时也没打电话" and "差评" in row.answers["timeliness"]
    ticket = await desk.ticket(recovery.group())
    original = await desk.ticket(number)
    assert ticket.kind == "recovery" and ticket.related_id == original.id and row.recovery_ticket_id == ticket.id
    assert "师傅迟到了两个小时" in ticket.description and ticket.due_at is not None
    async with desk.rt.db.session() as s:
        from bot.store.models import StaffUser

        assert (await s.get(StaffUser, ticket.assignee_id)).role == "supervisor"  # type: ignore[union-attr]
    # The supervisor's recovery call, recorded on the recovery ticket, schedules the short second callback.
    await desk.login("zhuguan")
    resp = await desk.post(f"/recovery/{ticket.id}/outcome", outcome="已致电业主道歉，约定周六再次上门检查")
    assert resp.status == 200
    [recheck] = await desk.responses(kind="recheck")
    assert recheck.status == "scheduled" and recheck.ticket_id == ticket.id
    assert (await desk.ticket(ticket.number)).status == "closed"
    opening = await invited(zhang, desk)
    assert "主管已与您联系" in opening and "（1/2）" in opening
    assert "还有什么需要" in await zhang("满意")
    assert "感谢您的评价" in await zhang("没有了")
    [recheck] = await desk.responses(kind="recheck")
    assert recheck.status == "complete" and recheck.scores == {"overall": 4}


async def test_still_broken_in_a_callback_reopens_the_repair_as_rework(chat: Any, desk: Desk) -> None:
    zhang = chat("oDEMO0001")
    number = await file_repair(zhang)
    await desk.close(number)
    await invited(zhang, desk)
    await zhang("3")
    reply = await zhang("其实还是在漏水，根本没修好")
    assert number in reply and "返修" in reply and "工程师老陈" in reply
    ticket = await desk.ticket(number)
    assert ticket.status == "reopened" and ticket.rework_count == 1
    [row] = await desk.responses()
    assert row.status == "partial" and "没修好" in row.answers["timeliness"]
    # Closed again after the rework: a fresh callback.
    async with desk.rt.db.session() as s, s.begin():
        from bot.store.models import Ticket

        t = await s.get(Ticket, ticket.id)
        t.status = "done"  # type: ignore[union-attr]
    resp = await desk.post(f"/tickets/{ticket.id}/close")
    assert resp.status == 200
    assert [r.status for r in await desk.responses()] == ["partial", "scheduled"]


async def test_a_question_mid_survey_is_answered_and_the_survey_resumes(chat: Any, desk: Desk) -> None:
    zhang = chat("oDEMO0001")
    number = await file_repair(zhang)
    await desk.close(number)
    await invited(zhang, desk)
    await zhang("满意")
    reply = await zhang("对了 物业费怎么交")
    assert "微信" in reply and "我们继续刚才的回访" in reply and "2/6" in reply
    assert "3/6" in await zhang("4")
    reply = await zhang("家里燃气味很重")  # an emergency always wins
    assert "燃气" in reply and "值班" in reply and "3/6" not in reply
    [row] = await desk.responses()
    assert row.status == "in_progress" and row.scores == {"overall": 4, "timeliness": 4}


async def test_skip_refusal_and_silence(chat: Any, desk: Desk) -> None:
    zhang = chat("oDEMO0001")
    first = await file_repair(zhang)
    await desk.close(first)
    await invited(zhang, desk)
    assert "2/6" in await zhang("跳过")
    assert "3/6" in await zhang("5分")
    assert "不打扰您了" in await zhang("不想答了")
    second = await file_repair(zhang, "客厅灯不亮了")
    await desk.close(second)
    await invited(zhang, desk)
    assert "2/6" in await zhang("⭐⭐⭐")
    rows = await desk.responses()
    assert [r.status for r in rows] == ["partial", "in_progress"]
    assert rows[0].scores == {"timeliness": 5}
    # Silence: the survey job expires it after expire_hours (72) — partial, its form leaves the chat.
    import datetime as dt

    from actions import surveys
    from tests.surveys.conftest import daytime

    assert await surveys.expire(desk.rt, now=daytime() + dt.timedelta(hours=73)) == 1
    rows = await desk.responses()
    assert rows[1].status == "partial" and rows[1].completed_at is not None and rows[1].stage == "稳定期"
    assert "回访" not in await zhang("物业费怎么交") and "回访" not in await zhang("你好")


async def test_a_survey_answered_twice_keeps_the_first_complete_response(chat: Any, desk: Desk) -> None:
    zhang = chat("oDEMO0001")
    number = await file_repair(zhang)
    ticket_id = await desk.close(number)
    await invited(zhang, desk)
    for text in ("5", "5", "5", "5", "5", "没有"):
        await zhang(text)
    assert "第一次" in await zhang("1分")  # a second answer changes nothing
    resp = await desk.post(f"/callbacks/{ticket_id}/record", score_overall="1")
    assert resp.status == 409
    [row] = await desk.responses()
    assert row.scores["overall"] == 5 and row.source == "bot"


async def test_staff_record_a_phone_callback_on_the_ticket(chat: Any, desk: Desk) -> None:
    zhang = chat("oDEMO0001")
    number = await file_repair(zhang)
    ticket_id = await desk.close(number)
    await desk.login("kefu")
    page = await (await desk.client.get(f"/console/tickets/{ticket_id}")).text()
    assert "登记电话回访" in page and "工程师上门是否及时" in page
    assert (await desk.post(f"/callbacks/{ticket_id}/record", score_overall="9")).status == 400
    resp = await desk.post(f"/callbacks/{ticket_id}/record", score_overall="4", score_timeliness="2",
                           score_result="5", note="业主说师傅来晚了，但修得不错")
    assert resp.status == 200
    body = await resp.json()
    assert body["recovery"].startswith("HF")
    [row] = await desk.responses()
    assert row.status == "complete" and row.source == "staff" and row.channel == "phone" and row.recorded_by == "kefu"
    assert row.scores == {"overall": 4, "timeliness": 2, "result": 5} and row.stage == "稳定期"
    assert row.engineer_id is not None and row.category == "plumbing" and row.comment.startswith("业主说")
    page = await (await desk.client.get(f"/console/tickets/{ticket_id}")).text()
    assert "人工" in page and "2分" in page and "查看补救单" in page
    # The owner's chat no longer holds the callback (staff completed it): an answer gets the first one kept.
    assert (await desk.invite())["invited"] == 0
    async with desk.rt.db.session() as s:
        import sqlalchemy as sa

        from bot.store.models import AuditLog

        assert await s.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(
            AuditLog.action == "survey.record", AuditLog.actor == "kefu")) == 1


from tests.surveys.conftest import NUMBER  # noqa: E402
