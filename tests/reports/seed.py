"""A small, hand-computed data set for the figures and the monthly report (October 2026).

Every expected number in the tests is worked out by hand in the comments below, from these rows only.
Times are China time (CST, UTC+8) unless written with Z.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import (
    Building,
    Campaign,
    CertificateRecord,
    Conversation,
    ConversationEvent,
    Delivery,
    House,
    Identity,
    Message,
    Project,
    StaffUser,
    SurveyResponse,
    SurveyTemplate,
    Ticket,
    TicketEvent,
    UnansweredQuestion,
)

CST = dt.timezone(dt.timedelta(hours=8))
H = dt.timedelta(hours=1)


def at(text: str) -> dt.datetime:
    """``"10-05 09:00"`` → 2026-10-05 09:00 China time (``"09-15 …"`` for September)."""
    return dt.datetime.strptime(f"2026-{text}", "%Y-%m-%d %H:%M").replace(tzinfo=CST)


PERIODIC_ITEMS = [
    {"code": "overall", "text": "总体满意度", "area": "客户服务", "type": "score"},
    {"code": "rebuy", "text": "再次购买", "area": "销售服务", "type": "score"},
    {"code": "recommend", "text": "推荐亲友", "area": "规划设计", "type": "score"},
    {"code": "quality", "text": "房屋质量", "area": "工程质量", "type": "score"},
    {"code": "comment", "text": "其他意见", "area": "客户服务", "type": "text"},
]
REPAIR_ITEMS = [
    {"code": "overall", "text": "总体满意度", "area": "物业管理", "type": "score"},
    {"code": "timeliness", "text": "及时性", "area": "物业管理", "type": "score"},
    {"code": "result", "text": "维修效果", "area": "工程质量", "type": "score"},
    {"code": "attitude", "text": "服务态度", "area": "客户服务", "type": "score"},
    {"code": "tidiness", "text": "现场整洁", "area": "物业管理", "type": "score"},
]


async def seed(s: AsyncSession) -> dict[str, Any]:
    a = Project(code="a", name="甲花园")
    b = Project(code="b", name="乙花园")
    s.add_all([a, b])
    await s.flush()
    a1, a2, b1 = Building(project_id=a.id, name="1"), Building(project_id=a.id, name="2"), Building(project_id=b.id, name="1")
    s.add_all([a1, a2, b1])
    await s.flush()
    h1 = House(building_id=a1.id, unit="1", room="101", handover_date=dt.date(2025, 10, 15))  # 磨合期 on 10-10
    h2 = House(building_id=a1.id, unit="1", room="102", handover_date=dt.date(2024, 2, 29))   # 老业主 in Oct 2026
    h3 = House(building_id=a1.id, unit="1", room="103", handover_date=None)                     # 准业主
    h4 = House(building_id=a2.id, unit="1", room="101", handover_date=dt.date(2023, 1, 1))    # 老业主 (stored 稳定期)
    h5 = House(building_id=b1.id, unit="1", room="101", handover_date=dt.date(2026, 3, 1))    # 磨合期
    s.add_all([h1, h2, h3, h4, h5])
    e1 = StaffUser(username="wang", display_name="王工", role="engineer", password_hash="x")
    e2 = StaffUser(username="li", display_name="李工", role="engineer", password_hash="x")
    s.add_all([e1, e2])
    await s.flush()
    p1 = SurveyTemplate(code="p1", name="居住体验", kind="periodic", items=PERIODIC_ITEMS)
    r1 = SurveyTemplate(code="r1", name="报修回访", kind="repair", items=REPAIR_ITEMS)
    s.add_all([p1, r1])
    await s.flush()

    def resp(tpl: SurveyTemplate, project: Project, house: House, status: str, scores: dict[str, Any], *,
             completed: str | None = "10-10 10:00", invited: str | None = "10-03 10:00", due: str | None = None,
             **kw: Any) -> SurveyResponse:
        return SurveyResponse(template_id=tpl.id, kind=tpl.kind, project_id=project.id, house_id=house.id, status=status,
                              scores=scores, completed_at=at(completed) if completed else None,
                              invited_at=at(invited) if invited else None, due_at=at(due) if due else None, **kw)

    s.add_all([
        # R1..R5 are October's respondents; R6 completed without an overall score (not a respondent).
        resp(p1, a, h1, "complete", {"overall": 5, "rebuy": 4, "recommend": 4, "quality": 3}),   # satisfied, loyal
        # (R2's "5" as text and R5's 4.0 as a float: scores stored by other code count the same.)
        resp(p1, a, h2, "complete", {"overall": 4, "rebuy": 2, "recommend": "5", "quality": 5}),  # satisfied
        resp(p1, a, h3, "complete", {"overall": 2, "rebuy": 4, "recommend": 4}),                 # neither
        resp(r1, a, h4, "complete", {"overall": 5, "timeliness": 4, "result": 2, "attitude": 5, "tidiness": 5},
             stage="稳定期", category="plumbing", engineer_id=e1.id, due="10-03 10:00", source="staff", channel="phone"),
        resp(r1, b, h5, "partial", {"overall": 3, "timeliness": 3, "result": 4, "attitude": 4.0},
             category="plumbing", engineer_id=e2.id, due="10-03 10:00"),
        resp(r1, a, h1, "complete", {"timeliness": 5}, due="10-03 10:00"),
        # R7: September's respondent (the trend).
        resp(p1, a, h1, "complete", {"overall": 5, "rebuy": 5, "recommend": 5}, completed="09-20 10:00",
             invited="09-18 10:00"),
        # R8 expired, R9 cancelled (left out), R10 not sent yet but due in October.
        resp(p1, a, h2, "expired", {}, completed=None),
        resp(p1, a, h2, "cancelled", {}, completed=None),
        resp(p1, b, h5, "scheduled", {}, completed=None, invited=None, due="10-20 10:00"),
        # R11 a repair callback never made (overdue); R12 due 10-29, not overdue at the month's end.
        resp(r1, a, h4, "expired", {}, completed=None, invited="10-05 10:00", due="10-05 10:00"),
        resp(r1, a, h4, "invited", {}, completed=None, invited="10-29 10:00", due="10-29 10:00"),
    ])

    def ticket(number: str, kind: str, category: str | None, project: Project, house: House | None, created: str,
               due_h: float, events: list[tuple[str, float]], closed_h: float | None = None, **kw: Any) -> Ticket:
        t0 = at(created)
        t = Ticket(number=number, kind=kind, category=category, project_id=project.id,
                   house_id=house.id if house else None, created_at=t0, due_at=t0 + due_h * H,
                   closed_at=t0 + closed_h * H if closed_h is not None else None,
                   status="closed" if closed_h is not None else kw.pop("status", "new"), **kw)
        t.events = [TicketEvent(kind=k, at=t0 + h * H, actor="staff:kefu") for k, h in events]
        return t

    s.add_all([
        ticket("T1", "repair", "plumbing", a, h1, "10-02 10:00", 48, [("dispatched", 1), ("done", 20), ("closed", 30)],
               30, origin="phone"),
        ticket("T2", "repair", "plumbing", a, h2, "10-05 09:00", 48,
               [("dispatched", 3), ("done", 10), ("reopened", 12), ("done", 40)], status="done", origin="wechat",
               rework_count=1),
        ticket("T3", "repair", "electrical", a, h4, "10-07 09:00", 2, [("dispatched", 2), ("done", 5), ("closed", 6)], 6,
               origin="phone", priority="urgent"),
        ticket("T4", "complaint", "noise", a, h1, "10-08 09:00", 4, [("dispatched", 0.5), ("closed", 20)], 20,
               origin="phone", priority="serious", description="楼上装修噪音，已投诉三次"),
        ticket("T5", "complaint", "parking", b, h5, "10-09 09:00", 4, [], origin="wechat", priority="group",
               description="地库车位被占"),
        ticket("T6", "inquiry", None, a, None, "10-10 09:00", 24, [("closed", 1)], 1, origin="phone"),
        ticket("T7", "repair", "plumbing", a, h1, "09-15 09:00", 48, [("dispatched", 1), ("closed", 10)], 10,
               origin="phone"),
        ticket("T8", "repair", "plumbing", a, h2, "10-31 23:30", 48, [], origin="phone"),   # still October (CST)
        ticket("T9", "repair", "plumbing", a, h2, "11-01 00:30", 48, [], origin="phone"),   # November already
    ])

    c1 = Campaign(name="第一批办证通知", kind="certificate_collection", text="…", project_id=a.id, status="done",
                  created_at=at("10-01 09:00"))
    c2 = Campaign(name="停水通知", kind="outage", text="…", project_id=b.id, status="done", created_at=at("10-12 09:00"))
    s.add_all([c1, c2])
    await s.flush()
    s.add_all([
        Delivery(campaign_id=c1.id, house_id=h1.id, channel="wechat", idempotency_key="d1", status="acknowledged",
                 created_at=at("10-02 09:00"), sent_at=at("10-02 09:01"), acknowledged_at=at("10-03 09:00")),
        Delivery(campaign_id=c1.id, house_id=h2.id, channel="sms", idempotency_key="d2", status="delivered",
                 created_at=at("10-02 09:00"), sent_at=at("10-02 09:01"), delivered_at=at("10-02 09:02")),
        Delivery(campaign_id=c1.id, house_id=h4.id, channel="sms", idempotency_key="d3", status="failed",
                 created_at=at("10-02 09:00"), error="no_phone"),
        Delivery(campaign_id=c2.id, house_id=h5.id, channel="sms", idempotency_key="d4", status="delivered",
                 created_at=at("10-12 09:00"), sent_at=at("10-12 09:01"), delivered_at=at("10-12 09:02")),
        CertificateRecord(house_id=h1.id, status="collected", collected_at=at("10-20 10:00")),
        CertificateRecord(house_id=h2.id, status="collected", collected_at=at("11-05 10:00")),
    ])

    idents = [Identity(channel="wechat", account="default", external_id=f"o{i}") for i in range(4)]
    s.add_all(idents)
    await s.flush()
    convs = [Conversation(identity_id=i.id) for i in idents]
    s.add_all(convs)
    await s.flush()

    def msg(conv: Conversation, when: str, direction: str = "in", author: str | None = None) -> Message:
        return Message(conversation_id=conv.id, direction=direction, channel="wechat", account="default",
                       text="…", author=author, at=at(when))

    s.add_all([
        msg(convs[0], "10-05 10:00"), msg(convs[0], "10-05 10:00", "out", "bot"),          # the bot alone
        msg(convs[1], "10-06 10:00"),                                                       # handed over
        ConversationEvent(conversation_id=convs[1].id, kind="hand_over", at=at("10-06 10:01")),
        msg(convs[2], "10-07 10:00"), msg(convs[2], "10-07 10:05", "out", "staff:kefu"),   # a person answered
        msg(convs[3], "09-07 10:00"),                                                       # September only
    ])
    s.add_all([
        UnansweredQuestion(text="物业费能开发票吗", project_code="a", created_at=at("10-03 10:00"), resolved=True),
        UnansweredQuestion(text="物业费能开发票吗", project_code="a", created_at=at("10-04 10:00")),
        UnansweredQuestion(text="物业费能开发票吗", project_code="b", created_at=at("10-05 10:00")),
        UnansweredQuestion(text="小区能养狗吗", project_code="a", created_at=at("10-06 10:00")),
        UnansweredQuestion(text="九月的问题", project_code="a", created_at=at("09-06 10:00")),
    ])
    await s.flush()
    return {"a": a.id, "b": b.id, "e1": e1.id, "e2": e2.id, "a1": a1.id}
