"""The monthly report (客服月报, DOMAIN.md "The desk's own records") as queries over one month.

:func:`build` runs every section's queries — aggregation in SQL (``GROUP BY``, percentiles via
:meth:`reports.sql.Dialect.percentiles`), never a loop over rows in Python — and returns a
:class:`~reports.model.MonthlyReport` that :mod:`reports.xlsx`, :mod:`reports.pdf` and the console render.

Reproducible: every figure is computed from stored timestamps within the month (China time). The clock
is read only as ``as_of = min(month end, now)``, which decides when an unfinished ticket or callback
counts as overdue; for a past month ``as_of`` is the month's end, so its report never changes.
Definitions of each figure: docs/REPORTS.md.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from actions.labels import CHANNEL_LABELS, KIND_LABELS, PRIORITY_LABELS
from actions.stages import AREAS
from bot.store.models import (
    Building,
    Campaign,
    CaseEntry,
    CertificateRecord,
    Conversation,
    ConversationEvent,
    Delivery,
    House,
    Identity,
    Message,
    OwnerHouse,
    Project,
    SurveyResponse,
    Ticket,
    TicketEvent,
    UnansweredQuestion,
    utcnow,
)
from reports import surveys
from reports.model import HOURS, INT, NUM, PCT, TEXT, Chart, MonthlyReport, Section, Table
from reports.period import Month
from reports.sql import Dialect, rate
from reports.surveys import category_label

CHINA = dt.timezone(dt.timedelta(hours=8), "CST")
TICKET_KINDS = ("repair", "complaint", "inquiry", "certificate")
RESPONSE_EVENTS = ("dispatched", "started", "done", "awaiting_acceptance", "closed")
"""The desk's first response to a ticket: its first change of status."""
FINISH_EVENTS = ("done", "awaiting_acceptance", "closed")
"""The desk's work on a ticket is finished (the owner's acceptance is not the desk's time)."""
CALLBACK_KINDS = ("repair", "complaint", "handover", "recovery", "recheck")
CALLBACK_GRACE = dt.timedelta(days=7)
"""A callback not made within 7 days of falling due is overdue (DOMAIN.md: 24 h–7 days)."""
HOT_SPOT_MIN = 2
TOP = 10
LIST_LIMIT = 30
MEDIAN, P90 = (1, 2), (9, 10)
EXTRA_KINDS = {"recovery": "服务补救"}


def local(value: dt.datetime | None) -> str:
    return value.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if value else ""


def kind_label(kind: str | None) -> str:
    return KIND_LABELS.get(kind or "", EXTRA_KINDS.get(kind or "", kind or "其他"))


def pct(value: float | None, sign: bool = False) -> str:
    """A rate as a headline shows it: ``60.0%`` (``+12.5%`` with ``sign``), ``—`` for none."""
    if value is None:
        return "—"
    return f"{value * 100:+.1f}%" if sign else f"{value * 100:.1f}%"


def change(cur: int, prev: int) -> list[Any]:
    return [cur, prev, cur - prev, rate(cur - prev, prev)]


class _Builder:
    def __init__(self, s: AsyncSession, month: Month, project: Project | None, now: dt.datetime) -> None:
        self.s = s
        self.m = month
        self.project = project
        self.pid = project.id if project else None
        self.d = Dialect.of(s)
        self.as_of = month.as_of(now)
        self.data: dict[str, Any] = {}

    # -- helpers ------------------------------------------------------------------------------------

    async def rows(self, q: Any) -> list[Any]:
        return list((await self.s.execute(q)).all())

    def tickets_in(self, start: dt.datetime, end: dt.datetime, col: Any = None) -> Any:
        col = Ticket.created_at if col is None else col
        cond = sa.and_(col >= start, col < end)
        return sa.and_(cond, Ticket.project_id == self.pid) if self.pid is not None else cond

    # -- sections -----------------------------------------------------------------------------------

    async def volumes(self) -> Section:
        m, prev = self.m, self.m.shift(-1)
        channel = sa.func.coalesce(Ticket.origin, Identity.channel, "other")
        dims = {
            "kind": Ticket.kind,
            "category": sa.func.coalesce(Ticket.category, ""),
            "project": sa.func.coalesce(Project.name, "未关联楼盘"),
            "channel": channel,
        }
        # The two months are contiguous: one range, one pass (a CTE), one GROUP BY per dimension.
        base = (sa.select(*[dim.label(name) for name, dim in dims.items()],
                          sa.case((Ticket.created_at >= m.start, 1), else_=0).label("cur"))
                .select_from(Ticket)
                .outerjoin(Project, Project.id == Ticket.project_id)
                .outerjoin(Conversation, Conversation.id == Ticket.conversation_id)
                .outerjoin(Identity, Identity.id == Conversation.identity_id)
                .where(self.tickets_in(prev.start, m.end))).cte("month_tickets")
        union = sa.union_all(*[
            sa.select(sa.literal(name).label("dim"), base.c[name].label("key"), sa.func.sum(base.c.cur),
                      sa.func.sum(1 - base.c.cur)).group_by(base.c[name]) for name in dims])
        counts: dict[str, dict[Any, tuple[int, int]]] = {name: {} for name in dims}
        for name, key, cur, prv in await self.rows(union):
            counts[name][key] = (int(cur or 0), int(prv or 0))
        total = sum(c for c, _ in counts["kind"].values())
        total_prev = sum(p for _, p in counts["kind"].values())
        self.data["volumes"] = {n: {str(k): v[0] for k, v in c.items() if v[0]} for n, c in counts.items()}
        self.data["volumes"]["total"] = total
        self.data["volumes"]["previous_total"] = total_prev

        def table(title: str, name: str, label: Any, order: list[Any] | None = None) -> Table:
            c = counts[name]
            keys = order or sorted(c, key=lambda k: (-c[k][0], -c[k][1], str(k)))
            return Table(title, [(title.removeprefix("按"), TEXT), ("本月", INT), ("上月", INT), ("环比增减", INT),
                                 ("环比", PCT)],
                         [[label(k), *change(*c[k])] for k in keys if k in c])

        kinds = [k for k in TICKET_KINDS if k in counts["kind"]] + sorted(set(counts["kind"]) - set(TICKET_KINDS))
        # The six-month trend by kind.
        first = m.shift(-5)
        mk = self.d.local_key(Ticket.created_at, "month")
        trend_rows = await self.rows(
            sa.select(mk, Ticket.kind, sa.func.count()).where(self.tickets_in(first.start, m.end))
            .group_by(mk, Ticket.kind))
        trend = {(int(k), kind): int(n) for k, kind, n in trend_rows}
        months = [first.shift(i) for i in range(6)]
        trend_kinds = list(TICKET_KINDS)
        trend_table = Table("近六个月趋势", [("月份", TEXT), *[(KIND_LABELS[k], INT) for k in trend_kinds], ("合计", INT)],
                            [[mo.label, *[trend.get((mo.key, k), 0) for k in trend_kinds],
                              sum(trend.get((mo.key, k), 0) for k in trend_kinds)] for mo in months])
        self.data["volumes"]["trend"] = {r[0]: r[-1] for r in trend_table.rows}
        return Section(
            "volumes", "一、工单量", [
                table("按类型", "kind", kind_label, kinds),
                table("按类别", "category", lambda k: category_label(k or None)),
                table("按楼盘", "project", str),
                table("按渠道", "channel", lambda k: CHANNEL_LABELS.get(k, "其他")),
                trend_table,
            ],
            charts=[Chart("本月与上月工单量（按类型）", 0, [1, 2]), Chart("近六个月工单量趋势", 4, [1, 2, 3, 4], kind="line")],
            figures=[("本月工单", str(total)), ("上月工单", str(total_prev)),
                     ("环比", pct(rate(total - total_prev, total_prev), sign=True))],
        )

    async def times(self) -> Section:
        d, m = self.d, self.m
        month_tickets = sa.select(Ticket.id).where(self.tickets_in(m.start, m.end))
        first = (sa.select(TicketEvent.ticket_id, sa.func.min(TicketEvent.at).label("at"))
                 .where(TicketEvent.ticket_id.in_(month_tickets), TicketEvent.kind.in_(RESPONSE_EVENTS))
                 .group_by(TicketEvent.ticket_id)).subquery()
        hours = (d.seconds(first.c.at, Ticket.created_at) / 3600.0).label("h")
        resp = (sa.select(Ticket.kind, hours).join(first, first.c.ticket_id == Ticket.id)
                .where(self.tickets_in(m.start, m.end)))
        close_h = (d.seconds(Ticket.closed_at, Ticket.created_at) / 3600.0).label("h")
        close = sa.select(Ticket.kind, close_h).where(self.tickets_in(m.start, m.end, Ticket.closed_at))
        # Each measure once, by kind and for all kinds together ("all" rows beside each kind's).
        r_sub, c_sub = resp.subquery(), close.subquery()
        r_p = await d.percentiles(self.s, sa.union_all(
            sa.select(r_sub.c.kind, r_sub.c.h), sa.select(sa.literal("all").label("kind"), r_sub.c.h)), (MEDIAN, P90))
        c_p = await d.percentiles(self.s, sa.union_all(
            sa.select(c_sub.c.kind, c_sub.c.h), sa.select(sa.literal("all").label("kind"), c_sub.c.h)), (MEDIAN, P90))
        r_all, c_all = r_p, c_p
        closed = dict(await self.rows(sa.select(c_sub.c.kind, sa.func.count()).group_by(c_sub.c.kind)))
        answered = dict(await self.rows(sa.select(r_sub.c.kind, sa.func.count()).group_by(r_sub.c.kind)))
        rows = []
        for k in TICKET_KINDS:
            rp, cp = r_p.get(k, [None, None]), c_p.get(k, [None, None])
            rows.append([KIND_LABELS[k], int(answered.get(k, 0)), rp[0], rp[1], int(closed.get(k, 0)), cp[0], cp[1]])
        ra, ca = r_all.get("all", [None, None]), c_all.get("all", [None, None])
        rows.append(["合计", sum(int(v) for v in answered.values()), ra[0], ra[1], sum(int(v) for v in closed.values()),
                     ca[0], ca[1]])
        self.data["times"] = {r[0]: {"responded": r[1], "response_median_h": r[2], "response_p90_h": r[3],
                                     "closed": r[4], "close_median_h": r[5], "close_p90_h": r[6]} for r in rows}
        return Section("times", "二、响应与关闭时长", [Table(
            "首次响应与关闭时长（小时）",
            [("类型", TEXT), ("已响应", INT), ("首次响应中位数", HOURS), ("首次响应P90", HOURS), ("本月关闭", INT),
             ("关闭时长中位数", HOURS), ("关闭时长P90", HOURS)], rows)],
            charts=[Chart("首次响应与关闭时长中位数（小时）", 0, [2, 5])],
            notes=["首次响应：工单创建至第一次状态变更（派单、开始处理、完工或关闭）；按本月创建的工单计。",
                   "关闭时长：创建至关闭；按本月关闭的工单计。P90：90% 的工单不超过此时长。"])

    async def overdue(self) -> Section:
        m = self.m
        due_in = self.tickets_in(m.start, self.as_of, Ticket.due_at)
        done = (sa.select(TicketEvent.ticket_id, sa.func.min(TicketEvent.at).label("at"))
                .where(TicketEvent.ticket_id.in_(sa.select(Ticket.id).where(due_in)), TicketEvent.kind.in_(FINISH_EVENTS))
                .group_by(TicketEvent.ticket_id)).subquery()
        finished = done.c.at
        late_q = (sa.select(Ticket.id.label("id")).outerjoin(done, done.c.ticket_id == Ticket.id)
                  .where(due_in, sa.or_(finished.is_(None), finished > Ticket.due_at))).subquery()
        late = Ticket.id.in_(sa.select(late_q.c.id))
        due = dict(await self.rows(sa.select(Ticket.kind, sa.func.count()).where(
            self.tickets_in(m.start, self.as_of, Ticket.due_at)).group_by(Ticket.kind)))
        over = dict(await self.rows(sa.select(Ticket.kind, sa.func.count()).where(late).group_by(Ticket.kind)))
        rows = [[KIND_LABELS[k], int(due.get(k, 0)), int(over.get(k, 0)), rate(over.get(k, 0), due.get(k, 0))]
                for k in TICKET_KINDS]
        n_due, n_over = sum(int(v) for v in due.values()), sum(int(v) for v in over.values())
        rows.append(["合计", n_due, n_over, rate(n_over, n_due)])
        listed = await self.rows(
            sa.select(Ticket.number, Ticket.kind, Ticket.category, Project.name, Ticket.due_at, finished)
            .select_from(Ticket).outerjoin(Project, Project.id == Ticket.project_id)
            .outerjoin(done, done.c.ticket_id == Ticket.id)
            .where(late).order_by(Ticket.due_at, Ticket.id).limit(LIST_LIMIT))
        self.data["overdue"] = {"due": n_due, "overdue": n_over, "numbers": [r[0] for r in listed]}
        return Section("overdue", "三、超时工单", [
            Table("本月到期工单的超时情况", [("类型", TEXT), ("本月到期", INT), ("超时", INT), ("超时率", PCT)], rows),
            Table(f"超时工单明细（前{LIST_LIMIT}条）",
                  [("单号", TEXT), ("类型", TEXT), ("类别", TEXT), ("楼盘", TEXT), ("时限", TEXT), ("完工时间", TEXT)],
                  [[r[0], kind_label(r[1]), category_label(r[2]), r[3] or "", local(r[4]),
                    local(r[5]) if r[5] is not None and r[5] < self.as_of else "未完工"] for r in listed],
                  empty="本月无超时工单"),
        ], charts=[Chart("本月到期与超时工单", 0, [1, 2])],
            notes=["本月到期：时限落在本月（当月未结束时截至此刻）的工单；超时：到期时仍未完工（完工、待验收或关闭均视为完工）。"],
            figures=[("本月到期", str(n_due)), ("超时", str(n_over)),
                     ("超时率", pct(rate(n_over, n_due)))])

    async def reworks(self) -> Section:
        m = self.m
        ev = sa.and_(TicketEvent.at >= m.start, TicketEvent.at < m.end)
        scope = [Ticket.kind == "repair"] + ([Ticket.project_id == self.pid] if self.pid is not None else [])
        base = sa.select(Ticket.category, Ticket.id).join(TicketEvent, TicketEvent.ticket_id == Ticket.id).where(*scope, ev)
        done = base.where(TicketEvent.kind == "done").distinct().subquery()
        redo = base.where(TicketEvent.kind == "reopened").distinct().subquery()
        n_done = dict(await self.rows(sa.select(done.c.category, sa.func.count()).group_by(done.c.category)))
        n_redo = dict(await self.rows(sa.select(redo.c.category, sa.func.count()).group_by(redo.c.category)))
        events = int((await self.s.execute(
            sa.select(sa.func.count()).select_from(TicketEvent).join(Ticket, Ticket.id == TicketEvent.ticket_id)
            .where(*scope, ev, TicketEvent.kind == "reopened"))).scalar_one())
        keys = sorted(set(n_done) | set(n_redo), key=lambda k: (-n_redo.get(k, 0), -n_done.get(k, 0), str(k)))
        rows = [[category_label(k), int(n_done.get(k, 0)), int(n_redo.get(k, 0)), rate(n_redo.get(k, 0), n_done.get(k, 0))]
                for k in keys]
        td, tr = sum(int(v) for v in n_done.values()), sum(int(v) for v in n_redo.values())
        rows.append(["合计", td, tr, rate(tr, td)])
        self.data["reworks"] = {"completed": td, "reworked": tr, "rate": rate(tr, td), "events": events}
        return Section("reworks", "四、返修", [Table("报修返修率（按类别）",
                                                  [("类别", TEXT), ("本月完工", INT), ("本月返修", INT), ("返修率", PCT)], rows)],
                       charts=[Chart("完工与返修（按类别）", 0, [1, 2])],
                       notes=["返修率 = 本月有返修（业主反映“还没修好”后重新打开）的报修单数 ÷ 本月有完工记录的报修单数。"],
                       figures=[("返修率", pct(rate(tr, td))), ("返修次数", str(events))])

    async def complaints(self) -> Section:
        m = self.m
        houses_q = sa.select(sa.func.count()).select_from(House).join(Building, Building.id == House.building_id)
        if self.pid is not None:
            houses_q = houses_q.where(Building.project_id == self.pid)
        households = int((await self.s.execute(houses_q)).scalar_one())
        cond = sa.and_(self.tickets_in(m.start, m.end), Ticket.kind == "complaint")
        by_pri = dict(await self.rows(sa.select(Ticket.priority, sa.func.count()).where(cond).group_by(Ticket.priority)))
        total = sum(int(v) for v in by_pri.values())
        per100 = round(total * 100 / households, 2) if households else None
        listed = await self.rows(
            sa.select(Ticket.number, Ticket.priority, Ticket.category, Project.name, Ticket.closed_at, Ticket.created_at,
                      Ticket.description)
            .select_from(Ticket).outerjoin(Project, Project.id == Ticket.project_id)
            .where(cond, Ticket.priority.in_(("serious", "group"))).order_by(Ticket.created_at, Ticket.id)
            .limit(LIST_LIMIT))
        self.data["complaints"] = {"total": total, "households": households, "per_100": per100,
                                   "serious": int(by_pri.get("serious", 0)), "group": int(by_pri.get("group", 0)),
                                   "listed": [r[0] for r in listed]}
        return Section("complaints", "五、投诉", [
            Table("投诉概况", [("项目", TEXT), ("数值", NUM)], [
                ["本月投诉", total], ["户数", households], ["每百户投诉", per100],
                ["一般投诉", int(by_pri.get("normal", 0))], ["严重投诉", int(by_pri.get("serious", 0))],
                ["群体投诉", int(by_pri.get("group", 0))]]),
            Table("严重及群体投诉", [("单号", TEXT), ("级别", TEXT), ("类别", TEXT), ("楼盘", TEXT), ("月末状态", TEXT),
                                  ("时间", TEXT), ("事项", TEXT)],
                  [[r[0], PRIORITY_LABELS.get(r[1], r[1]), category_label(r[2]), r[3] or "",
                    "已关闭" if r[4] is not None and r[4] < self.as_of else "未关闭", local(r[5]), (r[6] or "")[:40]]
                   for r in listed],
                  empty="本月无严重或群体投诉"),
        ], notes=["每百户投诉 = 本月投诉单数 ÷ 楼盘房屋户数 × 100。"],
            figures=[("本月投诉", str(total)), ("每百户投诉", f"{per100:.2f}" if per100 is not None else "—"),
                     ("严重", str(by_pri.get("serious", 0))), ("群体", str(by_pri.get("group", 0)))])

    async def callbacks(self) -> Section:
        m, r = self.m, SurveyResponse
        due_at = sa.func.coalesce(r.due_at, r.invited_at, r.completed_at)
        done = sa.and_(r.status.in_(surveys.RESPONDED), r.completed_at < m.end)
        # Overdue: not done within the grace period, judged at as_of (a past month: its end).
        cutoff = self.as_of - CALLBACK_GRACE
        late = sa.and_(due_at < cutoff, sa.or_(
            sa.not_(done), self.d.seconds(r.completed_at, due_at) > CALLBACK_GRACE.total_seconds()))
        cond = [r.kind.in_(CALLBACK_KINDS), r.status != "cancelled", due_at >= m.start, due_at < m.end]
        if self.pid is not None:
            cond.append(r.project_id == self.pid)
        rows_ = await self.rows(sa.select(r.kind, sa.func.count(), sa.func.sum(sa.case((done, 1), else_=0)),
                                          sa.func.sum(sa.case((late, 1), else_=0))).where(*cond).group_by(r.kind))
        by = {k: (int(n), int(dn or 0), int(lt or 0)) for k, n, dn, lt in rows_}
        rows = [[surveys.SURVEY_KIND_LABELS.get(k, k), *by[k], rate(by[k][1], by[k][0])] for k in CALLBACK_KINDS if k in by]
        tot = [sum(v[i] for v in by.values()) for i in range(3)]
        rows.append(["合计", *tot, rate(tot[1], tot[0])])
        self.data["callbacks"] = {"due": tot[0], "done": tot[1], "overdue": tot[2], "rate": rate(tot[1], tot[0]),
                                  "by_kind": {k: dict(zip(("due", "done", "overdue"), v, strict=True)) for k, v in by.items()}}
        return Section("callbacks", "六、回访", [Table(
            "回访完成情况", [("回访类型", TEXT), ("应回访", INT), ("已回访", INT), ("逾期未回访", INT), ("回访率", PCT)], rows)],
            charts=[Chart("应回访与已回访", 0, [1, 2, 3])],
            notes=["应回访：回访时间落在本月的回访（机器人与电话回访均计入）；逾期：到期 7 天后仍未完成。"],
            figures=[("应回访", str(tot[0])), ("已回访", str(tot[1])), ("逾期", str(tot[2])),
                     ("回访率", pct(rate(tot[1], tot[0])))])

    async def satisfaction(self) -> Section:
        summ = await surveys.summary(self.s, self.m, self.pid)
        self.data["satisfaction"] = summ
        cols = [("", TEXT), ("答卷数", INT), ("满意率", PCT), ("忠诚度样本", INT), ("忠诚度", PCT)]
        area_cols = [("业务领域", TEXT), ("评分项数", INT), ("满意率", PCT), ("答卷数", INT), ("忠诚度", PCT)]

        def row(name: str, f: dict[str, Any]) -> list[Any]:
            return [name, f["responses"], f["satisfaction_rate"], f["loyalty_respondents"], f["loyalty_rate"]]

        overall = [["全部", summ["responses"], summ["satisfaction_rate"], summ["loyalty_respondents"],
                    summ["loyalty_rate"], summ["invited"], summ["response_rate"]]]
        return Section("satisfaction", "七、满意度与忠诚度", [
            Table("总体", [("", TEXT), ("答卷数", INT), ("满意率", PCT), ("忠诚度样本", INT), ("忠诚度", PCT),
                         ("邀请数", INT), ("答卷率", PCT)], overall),
            Table("按业务领域", area_cols, [[a["area"], a["scores"], a["satisfaction_rate"], a["responses"],
                                            a["loyalty_rate"]] for a in summ["by_area"]]),
            Table("按业主阶段", [("业主阶段", TEXT), *cols[1:]], [row(x["stage"], x) for x in summ["by_stage"]]),
            Table("按楼盘", [("楼盘", TEXT), *cols[1:]], [row(x["name"], x) for x in summ["by_project"]]),
            Table("近六个月", [("月份", TEXT), *cols[1:]], [row(x["month"], x) for x in summ["by_month"]]),
        ], charts=[Chart("满意率（按业务领域）", 1, [2], percent=True),
                   Chart("满意率与忠诚度（按业主阶段）", 2, [2, 4], percent=True),
                   Chart("近六个月满意率与忠诚度", 4, [2, 4], kind="line", percent=True)],
            notes=["满意率 = 总体满意度评 4 或 5 分的答卷 ÷ 有总体满意度评分的答卷；忠诚度 = 总体满意、愿意再次购买、"
                   "愿意推荐三项均评 4 或 5 分的答卷 ÷ 三项均有评分的答卷。",
                   "业务领域满意率按该领域各评分项计（评分项 4–5 分的比例）。业主阶段按答卷时距交付的时间："
                   "准业主（未交付）、磨合期（不满 1 年）、稳定期（1–2 年）、老业主（2 年以上）。"],
            figures=[("答卷数", str(summ["responses"])),
                     ("满意率", pct(summ["satisfaction_rate"])),
                     ("忠诚度", pct(summ["loyalty_rate"]))])

    async def certificates(self) -> Section:
        m = self.m
        camp = [Campaign.kind == "certificate_collection", Campaign.created_at < m.end]
        if self.pid is not None:
            camp.append(Campaign.project_id == self.pid)
        houses = (sa.select(Delivery.campaign_id, Delivery.house_id,
                            sa.func.max(sa.case((Delivery.sent_at < m.end, 1), else_=0)).label("notified"),
                            sa.func.max(sa.case((Delivery.acknowledged_at < m.end, 1), else_=0)).label("ack"))
                  .join(Campaign, Campaign.id == Delivery.campaign_id).where(*camp, Delivery.house_id.is_not(None))
                  .group_by(Delivery.campaign_id, Delivery.house_id)).subquery()
        collected = sa.and_(CertificateRecord.collected_at.is_not(None), CertificateRecord.collected_at < m.end)
        rows_ = await self.rows(
            sa.select(Campaign.name, Campaign.created_at, sa.func.count(), sa.func.sum(houses.c.notified),
                      sa.func.sum(houses.c.ack), sa.func.sum(sa.case((collected, 1), else_=0)),
                      sa.func.sum(sa.case((sa.and_(collected, CertificateRecord.collected_at >= m.start), 1), else_=0)))
            .select_from(houses).join(Campaign, Campaign.id == houses.c.campaign_id)
            .outerjoin(CertificateRecord, CertificateRecord.house_id == houses.c.house_id)
            .group_by(Campaign.id, Campaign.name, Campaign.created_at).order_by(Campaign.created_at, Campaign.id))
        rows = [[name, int(n), int(nt or 0), int(ak or 0), int(cl or 0), int(cm or 0), rate(cl, n)]
                for name, _at, n, nt, ak, cl, cm in rows_]
        tot = [sum(r[i] for r in rows) for i in range(1, 6)]
        rows.append(["合计", *tot, rate(tot[3], tot[0])])
        self.data["certificates"] = dict(zip(("houses", "notified", "acknowledged", "collected", "collected_in_month"),
                                             tot, strict=True))
        return Section("certificates", "八、办证领取进度", [Table(
            "办证通知批次（截至月末）", [("批次", TEXT), ("户数", INT), ("已通知", INT), ("已确认", INT), ("已领取", INT),
                                 ("本月领取", INT), ("领取率", PCT)], rows, empty="暂无办证通知批次")],
            charts=[Chart("办证通知、确认与领取", 0, [2, 3, 4])],
            notes=["已通知：通知已发出；已确认：业主回复确认收到；已领取：签收记录的领取时间在月末之前。"])

    async def notices(self) -> Section:
        m = self.m
        cond = [Delivery.created_at >= m.start, Delivery.created_at < m.end]
        if self.pid is not None:
            cond.append(Campaign.project_id == self.pid)
        sent = sa.and_(Delivery.sent_at.is_not(None), Delivery.sent_at < m.end)
        delivered = sa.or_(Delivery.delivered_at < m.end, Delivery.acknowledged_at < m.end)
        rows_ = await self.rows(
            sa.select(Campaign.kind, sa.func.count(), sa.func.sum(sa.case((sent, 1), else_=0)),
                      sa.func.sum(sa.case((delivered, 1), else_=0)),
                      sa.func.sum(sa.case((Delivery.acknowledged_at < m.end, 1), else_=0)),
                      sa.func.sum(sa.case((Delivery.status == "failed", 1), else_=0)),
                      sa.func.sum(sa.case((Delivery.status == "skipped", 1), else_=0)))
            .join(Campaign, Campaign.id == Delivery.campaign_id).where(*cond).group_by(Campaign.kind))
        labels = {"certificate_collection": "办证通知", "handover": "交付通知", "outage": "停水停电", "construction_progress":
                  "工程进度", "warranty_expiry": "保修到期提醒", "survey": "问卷邀请", "notice": "一般通知"}
        rows = [[labels.get(k, k), *(int(x or 0) for x in rest)] for k, *rest in rows_]
        rows.sort(key=lambda r: -r[1])
        tot = [sum(r[i] for r in rows) for i in range(1, 7)]
        rows.append(["合计", *tot])
        self.data["notices"] = dict(zip(("total", "sent", "delivered", "acknowledged", "failed", "skipped"), tot, strict=True))
        return Section("notices", "九、通知发送", [Table(
            "本月通知（按类型）", [("通知类型", TEXT), ("对象", INT), ("已发送", INT), ("已送达", INT), ("已确认", INT),
                           ("失败", INT), ("未发送", INT)], rows, empty="本月无通知")],
            charts=[Chart("通知发送与送达", 0, [2, 3])],
            notes=["已送达含业主已确认的通知；未发送：因退订、无手机号等原因跳过。"])

    async def bot(self) -> Section:
        m = self.m
        # One pass over the month's messages, grouped by conversation: did the owner write, did staff?
        per_conv = (sa.select(
            Message.conversation_id.label("cid"),
            sa.func.max(sa.case((Message.direction == "in", 1), else_=0)).label("owner"),
            sa.func.max(sa.case((Message.author.like("staff:%"), 1), else_=0)).label("staff"))
            .where(Message.at >= m.start, Message.at < m.end).group_by(Message.conversation_id))
        if self.pid is not None:
            owners = (sa.select(OwnerHouse.owner_id).join(House, House.id == OwnerHouse.house_id)
                      .join(Building, Building.id == House.building_id).where(Building.project_id == self.pid))
            per_conv = per_conv.where(Message.conversation_id.in_(
                sa.select(Conversation.id).where(Conversation.owner_id.in_(owners))))
        active = per_conv.subquery()
        handed = (sa.select(ConversationEvent.conversation_id).where(
            ConversationEvent.kind == "hand_over", ConversationEvent.at >= m.start, ConversationEvent.at < m.end)
            .distinct().subquery())
        person = sa.or_(active.c.staff == 1, handed.c.conversation_id.is_not(None))
        total, people = (await self.s.execute(
            sa.select(sa.func.count(), sa.func.sum(sa.case((person, 1), else_=0)))
            .select_from(active).outerjoin(handed, handed.c.conversation_id == active.c.cid)
            .where(active.c.owner == 1))).one()
        total, people = int(total or 0), int(people or 0)
        self.data["bot"] = {"conversations": total, "with_person": people, "bot_only": total - people,
                            "share": rate(total - people, total)}
        return Section("bot", "十、机器人自助解决", [Table(
            "本月会话", [("", TEXT), ("会话数", INT), ("占比", PCT)],
            [["机器人独立解决", total - people, rate(total - people, total)], ["人工参与", people, rate(people, total)],
             ["合计", total, 1.0 if total else None]])],
            charts=[Chart("会话：机器人与人工", 0, [1])],
            notes=["会话：本月有业主消息的会话；人工参与：本月内转人工或有客服人员回复。"],
            figures=[("机器人独立解决率", pct(rate(total - people, total)))])

    async def recurring(self) -> Section:
        m = self.m
        cat = sa.func.coalesce(Ticket.category, "")
        rows_ = await self.rows(
            sa.select(Ticket.project_id, Project.name, Building.id, Building.name, Ticket.kind, cat, sa.func.count(),
                      sa.func.max(Ticket.id))
            .join(House, House.id == Ticket.house_id).join(Building, Building.id == House.building_id)
            .join(Project, Project.id == Building.project_id)
            .where(self.tickets_in(m.start, m.end), Ticket.kind.in_(("repair", "complaint")))
            .group_by(Ticket.project_id, Project.name, Building.id, Building.name, Ticket.kind, cat)
            .having(sa.func.count() >= HOT_SPOT_MIN)
            .order_by(sa.func.count().desc(), Building.id, cat).limit(TOP))
        cases = dict(await self.rows(
            sa.select(sa.func.coalesce(CaseEntry.category, "") + "|" + sa.cast(sa.func.coalesce(CaseEntry.project_id, 0),
                                                                             sa.String), sa.func.count())
            .where(CaseEntry.created_at < m.end).group_by(CaseEntry.category, CaseEntry.project_id)))
        rows: list[list[Any]] = []
        links: list[str | None] = []
        spots: list[dict[str, Any]] = []
        for pid, pname, bid, bname, kind, category, n, last in rows_:
            what = category_label(category or None)
            title = f"{pname}{bname}栋{what}{kind_label(kind)}反复发生（{self.m.zh}{n}次）"
            links.append("/console/cases/new?" + urlencode({"ticket": last, "category": category, "building": bid,
                                                             "project": pid, "title": title}))
            rows.append([f"{bname}栋·{what}", pname, kind_label(kind), int(n), int(cases.get(f"{category}|{pid}", 0)),
                         "提议入案例库"])
            spots.append({"building": f"{pname} {bname}栋", "kind": kind_label(kind), "category": what, "tickets": int(n)})
        self.data["recurring"] = spots
        # (Whether a question was since answered has no time stamp: it would change a past month's report.)
        q = (sa.select(UnansweredQuestion.text, sa.func.count())
             .where(UnansweredQuestion.created_at >= m.start, UnansweredQuestion.created_at < m.end)
             .group_by(UnansweredQuestion.text).order_by(sa.func.count().desc(), UnansweredQuestion.text).limit(TOP))
        if self.project is not None:
            q = q.where(UnansweredQuestion.project_code == self.project.code)
        unanswered = [[t[:60], int(n)] for t, n in await self.rows(q)]
        self.data["unanswered"] = [{"text": t, "count": n} for t, n in unanswered]
        return Section("recurring", "十一、重复问题与未解答问题", [
            Table("重复发生的问题（同一楼栋同一类别，本月 2 次及以上）",
                  [("楼栋·类别", TEXT), ("楼盘", TEXT), ("类型", TEXT), ("工单数", INT), ("已有案例", INT), ("", TEXT)],
                  rows, links=links, empty="本月无重复发生的问题"),
            Table("最常见的未解答问题", [("问题", TEXT), ("次数", INT)], unanswered,
                  empty="本月无未解答问题"),
        ], charts=[Chart("重复问题（工单数）", 0, [3])] if rows else [],
            notes=["“提议入案例库”链接打开案例库的新建页，已填好楼盘、楼栋、类别与最近一张工单；已有案例：月末前已写入案例库的同类别案例。"])


async def build(s: AsyncSession, month: Month, project: Project | None = None,
                now: dt.datetime | None = None) -> MonthlyReport:
    """Every section of ``month``'s report (one project, or all)."""
    b = _Builder(s, month, project, now or utcnow())
    sections = [await b.volumes(), await b.times(), await b.overdue(), await b.reworks(), await b.complaints(),
                await b.callbacks(), await b.satisfaction(), await b.certificates(), await b.notices(), await b.bot(),
                await b.recurring()]
    scope = project.name if project else "全部楼盘"
    return MonthlyReport(month=month.label, title=f"客服月报 {month.zh}（{scope}）", project=project.code if project else None,
                         generated_from=f"数据截至 {local(b.as_of)}", sections=sections, data=b.data)


async def find_project(s: AsyncSession, code: str | None) -> Project | None:
    """The project with ``code``; None for no code; LookupError (with the known codes) for an unknown one."""
    if not code:
        return None
    project = (await s.execute(sa.select(Project).where(Project.code == code))).scalar_one_or_none()
    if project is None:
        known = (await s.execute(sa.select(Project.code).order_by(Project.code))).scalars().all()
        raise LookupError(f"no project {code!r} (known: {', '.join(known) or 'none'})")
    return project


__all__ = ["AREAS", "build", "find_project"]
