"""Satisfaction, loyalty and response rates (DOMAIN.md "Surveys and the figures managers live by").

Definitions (docs/REPORTS.md has them with examples):

* a **respondent** is a survey response with status ``complete`` or ``partial`` and a score for the
  ``overall`` item, counted in the month of its ``completed_at`` (China time) — bot and staff-recorded
  callbacks alike;
* **satisfaction rate** = respondents scoring ``overall`` 4 or 5 ÷ respondents;
* **loyalty rate** = respondents scoring 4 or 5 on all three loyalty items (overall, rebuy, recommend)
  ÷ respondents who scored all three (repair and complaint callbacks do not ask rebuy/recommend, so they
  are outside the loyalty denominator rather than counted as disloyal);
* **response rate** = responses that became respondents ÷ responses invited (or due, for those not yet
  sent; staff-recorded ones count as invited when completed), counted in the month of
  ``COALESCE(invited_at, due_at, completed_at)``, cancelled ones left out;
* **by area**: every scored item of a respondent's survey belongs to a business area (the template's
  item ``area``); an area's satisfaction rate is the share of its item scores that are 4 or 5, and its
  loyalty rate that of the respondents who scored any item of the area;
* **owner stage**: the stage stored with the response, else computed from the house's handover date on
  the day of the response (:func:`actions.stages.owner_stage`, in SQL: :meth:`reports.sql.Dialect.stage`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from actions.labels import COMPLAINT_CATEGORY_LABELS, KIND_LABELS, REPAIR_CATEGORY_LABELS
from actions.stages import AREAS, STAGES
from bot.store.models import House, Project, StaffUser, SurveyResponse, SurveyTemplate
from reports.period import Month
from reports.sql import Dialect, rate

RESPONDED = ("complete", "partial")
SURVEY_KIND_LABELS = {**KIND_LABELS, "repair": "报修回访", "complaint": "投诉回访", "handover": "交付回访",
                      "periodic": "居住体验调查", "recovery": "服务补救回访", "recheck": "补救后复访"}
TREND_MONTHS = 6


def category_label(code: str | None) -> str:
    if not code:
        return "未分类"
    return REPAIR_CATEGORY_LABELS.get(code) or COMPLAINT_CATEGORY_LABELS.get(code) or code


def respondents(d: Dialect, start: Any, end: Any, project_id: int | None) -> sa.CTE:
    """One row per respondent in ``[start, end)``: dimensions and the three loyalty scores."""
    r = SurveyResponse
    overall, rebuy, recommend = (d.json_int(r.scores, k) for k in ("overall", "rebuy", "recommend"))
    q = (
        sa.select(
            r.id.label("id"), r.template_id, r.project_id, r.category, r.engineer_id, r.kind,
            d.local_key(r.completed_at, "month").label("month"),
            sa.func.coalesce(r.stage, d.stage(House.handover_date, r.completed_at)).label("stage"),
            sa.case((overall >= 4, 1), else_=0).label("satisfied"),
            sa.case((sa.and_(overall.is_not(None), rebuy.is_not(None), recommend.is_not(None)), 1),
                    else_=0).label("loyalty_base"),
            sa.case((sa.and_(overall >= 4, rebuy >= 4, recommend >= 4), 1), else_=0).label("loyal"),
        )
        .select_from(r).outerjoin(House, House.id == r.house_id)
        .where(r.status.in_(RESPONDED), overall.is_not(None), r.completed_at >= start, r.completed_at < end)
    )
    if project_id is not None:
        q = q.where(r.project_id == project_id)
    return q.cte("respondent")


def invitations(d: Dialect, start: Any, end: Any, project_id: int | None) -> sa.CTE:
    """One row per response invited (or due) in ``[start, end)``, with whether it was answered."""
    r = SurveyResponse
    sent = sa.func.coalesce(r.invited_at, r.due_at, r.completed_at)
    overall = d.json_int(r.scores, "overall")
    q = (
        sa.select(
            r.id.label("id"), r.project_id, r.category, r.engineer_id, r.kind,
            d.local_key(sent, "month").label("month"),
            sa.func.coalesce(r.stage, d.stage(House.handover_date, sent)).label("stage"),
            sa.case((sa.and_(r.status.in_(RESPONDED), overall.is_not(None)), 1), else_=0).label("answered"),
        )
        .select_from(r).outerjoin(House, House.id == r.house_id)
        .where(r.status != "cancelled", sent >= start, sent < end)
    )
    if project_id is not None:
        q = q.where(r.project_id == project_id)
    return q.cte("invitation")


def _figures(responses: int, satisfied: int, base: int, loyal: int, invited: int | None = None,
             answered: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "responses": responses, "satisfied": satisfied, "satisfaction_rate": rate(satisfied, responses),
        "loyalty_respondents": base, "loyal": loyal, "loyalty_rate": rate(loyal, base),
    }
    if invited is not None:
        out.update(invited=invited, response_rate=rate(answered, invited))
    return out


async def _grouped(s: AsyncSession, resp: sa.CTE, inv: sa.CTE, dims: tuple[str, ...]
                   ) -> dict[str, dict[Any, dict[str, Any]]]:
    """Every dimension's groups in two queries (one over the respondents, one over the invitations):
    a ``UNION ALL`` of one ``GROUP BY`` per dimension over the same CTE, which PostgreSQL computes once.
    Keys come back as text (a dimension's values are of different types) and are mapped back here."""

    def union(base: sa.CTE, measures: list[Any]) -> Any:
        parts = []
        for dim in dims:
            col = base.c[dim]
            parts.append(sa.select(sa.literal(dim).label("dim"), sa.cast(col, sa.String).label("key"), *measures)
                         .select_from(base).group_by(col))
        return sa.union_all(*parts)

    rows = (await s.execute(union(resp, [sa.func.count().label("n"), sa.func.sum(resp.c.satisfied).label("sat"),
                                         sa.func.sum(resp.c.loyalty_base).label("base"),
                                         sa.func.sum(resp.c.loyal).label("loyal")]))).all()
    inv_rows = (await s.execute(union(inv, [sa.func.count().label("n"),
                                            sa.func.sum(inv.c.answered).label("answered")]))).all()
    counts = {(dim, key): (int(n), int(a or 0)) for dim, key, n, a in inv_rows}
    found = {(dim, key): tuple(int(x or 0) for x in rest) for dim, key, *rest in rows}
    out: dict[str, dict[Any, dict[str, Any]]] = {dim: {} for dim in dims}
    for dim, key in set(found) | set(counts):
        n, sat, base, loyal = found.get((dim, key), (0, 0, 0, 0))
        invited, answered = counts.get((dim, key), (0, 0))
        value: Any = int(key) if key is not None and dim in INT_DIMS else key
        out[dim][value] = _figures(n, sat, base, loyal, invited, answered)
    return out


INT_DIMS = frozenset({"project_id", "engineer_id", "month"})


async def _totals(s: AsyncSession, resp: sa.CTE, inv: sa.CTE) -> tuple[int, ...]:
    r = sa.select(sa.func.count().label("n"), sa.func.sum(resp.c.satisfied).label("sat"),
                  sa.func.sum(resp.c.loyalty_base).label("base"), sa.func.sum(resp.c.loyal).label("loyal")).subquery()
    i = sa.select(sa.func.count().label("n"), sa.func.sum(inv.c.answered).label("answered")).subquery()
    row = (await s.execute(sa.select(r.c.n, r.c.sat, r.c.base, r.c.loyal, i.c.n, i.c.answered)
                           .select_from(r).join(i, sa.true()))).one()
    return tuple(int(x or 0) for x in row)


async def by_area(s: AsyncSession, d: Dialect, resp: sa.CTE) -> dict[str, dict[str, Any]]:
    """Item scores per business area (the template's item ``area``), and the loyalty of the
    respondents who scored the area. JSON expansion differs by database; the rest is one query."""
    t = SurveyTemplate.__table__
    area: Any
    code: Any
    score: Any
    kind: Any
    if d.pg:
        item = sa.func.json_array_elements(t.c["items"]).table_valued("value").lateral("item")
        area = item.c.value.op("->>")("area")
        code = item.c.value.op("->>")("code")
        score = d.score(sa.type_coerce(SurveyResponse.__table__.c.scores, sa.JSON).op("->>")(code))
        kind = item.c.value.op("->>")("type")
    else:
        item = sa.func.json_each(t.c["items"]).table_valued("value").alias("item")
        area = sa.func.json_extract(item.c.value, "$.area")
        code = sa.func.json_extract(item.c.value, "$.code")
        score = d.score(sa.func.json_extract(SurveyResponse.__table__.c.scores, '$."' + code + '"'))
        kind = sa.func.json_extract(item.c.value, "$.type")
    per = (
        sa.select(
            resp.c.id, area.label("area"), sa.func.count().label("n"),
            sa.func.sum(sa.case((score >= 4, 1), else_=0)).label("sat"),
            sa.func.max(resp.c.loyalty_base).label("base"), sa.func.max(resp.c.loyal).label("loyal"),
        )
        .select_from(resp)
        .join(SurveyResponse.__table__, SurveyResponse.__table__.c.id == resp.c.id)
        .join(t, t.c.id == resp.c.template_id)
        .join(item, sa.true())
        .where(score.is_not(None), sa.func.coalesce(kind, "score") != "text", area.is_not(None))
        .group_by(resp.c.id, area)
    ).subquery()
    rows = (await s.execute(
        sa.select(per.c.area, sa.func.sum(per.c.n), sa.func.sum(per.c.sat), sa.func.count(),
                  sa.func.sum(per.c.base), sa.func.sum(per.c.loyal)).group_by(per.c.area)
    )).all()
    out = {}
    for a, n, sat, respondents_, base, loyal in rows:
        n, sat, base, loyal = int(n or 0), int(sat or 0), int(base or 0), int(loyal or 0)
        out[a] = {"scores": n, "satisfied_scores": sat, "satisfaction_rate": rate(sat, n),
                  "responses": int(respondents_), "loyalty_respondents": base, "loyal": loyal,
                  "loyalty_rate": rate(loyal, base)}
    return out


async def summary(s: AsyncSession, month: Month, project_id: int | None = None) -> dict[str, Any]:
    """The survey figures of ``month`` (optionally one project) as the API returns them."""
    d = Dialect.of(s)
    resp = respondents(d, month.start, month.end, project_id)
    inv = invitations(d, month.start, month.end, project_id)
    groups = await _grouped(s, resp, inv, ("stage", "kind", "project_id", "category", "engineer_id"))
    n, sat, base, loyal, invited, answered = await _totals(s, resp, inv)
    figures = _figures(n, sat, base, loyal, invited, answered)

    projects = dict((await s.execute(sa.select(Project.id, Project.name))).all())
    codes = dict((await s.execute(sa.select(Project.id, Project.code))).all())
    engineers = dict((await s.execute(sa.select(StaffUser.id, StaffUser.display_name))).all())

    def listed(groups: dict[Any, dict[str, Any]], key: str, label: Any) -> list[dict[str, Any]]:
        keys = sorted(groups, key=lambda k: (-groups[k]["responses"], str(k)))
        return [{key: k, "name": label(k), **groups[k]} for k in keys]

    areas = await by_area(s, d, resp)
    stage = groups["stage"]
    # The trend: the same figures for the six months ending with this one.
    first = month.shift(1 - TREND_MONTHS)
    trend = (await _grouped(s, respondents(d, first.start, month.end, project_id),
                            invitations(d, first.start, month.end, project_id), ("month",)))["month"]
    months = [first.shift(i) for i in range(TREND_MONTHS)]
    empty = _figures(0, 0, 0, 0, 0, 0)
    return {
        "month": month.label,
        "project": codes.get(project_id) if project_id is not None else None,
        **figures,
        "by_area": [{"area": a, **areas.get(a, {"scores": 0, "satisfied_scores": 0, "satisfaction_rate": None,
                                                "responses": 0, "loyalty_respondents": 0, "loyal": 0,
                                                "loyalty_rate": None})}
                    for a in [*AREAS, *sorted(set(areas) - set(AREAS))]],
        "by_stage": [{"stage": st, **stage.get(st, empty)} for st in STAGES],
        "by_project": listed(groups["project_id"], "project_id", lambda k: projects.get(k, "未关联楼盘")),
        "by_category": listed(groups["category"], "category", category_label),
        "by_engineer": listed(groups["engineer_id"], "engineer_id", lambda k: engineers.get(k, "未指定")),
        "by_kind": listed(groups["kind"], "kind", lambda k: SURVEY_KIND_LABELS.get(k, k)),
        "by_month": [{"month": m.label, **trend.get(m.key, empty)} for m in months],
    }
