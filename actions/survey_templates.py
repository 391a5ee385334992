"""Survey templates (问卷模板) by business area: the standard set, seeding, choice per project, validation.

Every template's first item is ``overall`` (overall satisfaction); periodic and handover surveys then
ask ``rebuy`` and ``recommend`` (the loyalty items, ``actions.stages.LOYALTY_ITEMS``); repair and
complaint callbacks ask timeliness, result, attitude and tidiness; each item is tagged with one of
``actions.stages.AREAS``. The standard set is added by ``yezhu demo`` and, on a database without any,
the first time a template is needed (no migration seeds data). Supervisors edit them in the console.
"""

from __future__ import annotations

import copy
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from actions.stages import AREAS
from bot.store.models import SurveyTemplate


def _score(code: str, text: str, area: str) -> dict[str, str]:
    assert area in AREAS, area
    return {"code": code, "text": text, "area": area, "type": "score"}


def _text(code: str, text: str, area: str) -> dict[str, str]:
    return {"code": code, "text": text, "area": area, "type": "text"}


LOYALTY = [
    _score("rebuy", "如果再次购房，您是否还会选择我们？（5分为一定会）", "销售服务"),
    _score("recommend", "您是否愿意向亲友推荐我们的楼盘？（5分为非常愿意）", "销售服务"),
]
TEMPLATES: list[dict[str, Any]] = [
    {"code": "repair_callback", "name": "维修回访", "kind": "repair", "items": [
        _score("overall", "您对本次维修服务的总体满意度？", "物业管理"),
        _score("timeliness", "工程师上门是否及时？", "物业管理"),
        _score("result", "维修效果您满意吗？", "工程质量"),
        _score("attitude", "工程师的服务态度如何？", "物业管理"),
        _score("tidiness", "完工后现场是否清理干净？", "物业管理"),
        _text("comment", "还有什么意见或建议吗？", "客户服务"),
    ]},
    {"code": "complaint_callback", "name": "投诉回访", "kind": "complaint", "items": [
        _score("overall", "您对这次投诉处理的总体满意度？", "客户服务"),
        _score("timeliness", "我们的响应和处理是否及时？", "客户服务"),
        _score("result", "您对处理结果满意吗？", "客户服务"),
        _score("attitude", "处理人员的态度如何？", "客户服务"),
        _score("tidiness", "处理过程是否规范有序（如涉及现场，是否清理干净）？", "物业管理"),
        _text("comment", "还有什么想对我们说的吗？", "客户服务"),
    ]},
    {"code": "handover_survey", "name": "交付回访", "kind": "handover", "items": [
        _score("overall", "您对新房交付的总体满意度？", "工程质量"),
        *LOYALTY,
        _score("quality", "您对房屋质量满意吗？", "工程质量"),
        _score("design", "您对户型和小区规划满意吗？", "规划设计"),
        _score("service", "交付办理过程中的服务如何？", "客户服务"),
        _text("comment", "还有什么意见或建议吗？", "客户服务"),
    ]},
    {"code": "periodic_survey", "name": "居住体验调查", "kind": "periodic", "items": [
        _score("overall", "您对目前居住体验的总体满意度？", "物业管理"),
        *LOYALTY,
        _score("property", "您对物业服务（安保、保洁、绿化）满意吗？", "物业管理"),
        _score("quality", "您对房屋质量满意吗？", "工程质量"),
        _score("design", "您对小区规划和配套满意吗？", "规划设计"),
        _score("service", "您对客服中心的服务满意吗？", "客户服务"),
        _text("comment", "还有什么意见或建议吗？", "客户服务"),
    ]},
    {"code": "recheck", "name": "补救后二次回访", "kind": "recovery", "items": [
        _score("overall", "对我们后续的处理，您现在满意吗？", "客户服务"),
        _text("comment", "还有什么需要我们改进的吗？", "客户服务"),
    ]},
]
TEMPLATE_KIND = {"repair": "repair", "complaint": "complaint", "handover": "handover", "periodic": "periodic",
                 "recheck": "recovery"}
"""Survey kind → the template kind it uses."""


async def seed_templates(s: AsyncSession, *, actor: str = "system") -> int:
    """Add the standard templates that are missing (by code); never changes an edited one."""
    have = set((await s.execute(sa.select(SurveyTemplate.code))).scalars())
    added = 0
    for spec in TEMPLATES:
        if spec["code"] not in have:
            s.add(SurveyTemplate(code=spec["code"], name=spec["name"], kind=spec["kind"],
                                 items=copy.deepcopy(spec["items"]), active=True, updated_by=actor))
            added += 1
    if added:
        await s.flush()
    return added


async def template_for(s: AsyncSession, kind: str, project_id: int | None) -> SurveyTemplate | None:
    """The active template of ``kind`` (the survey's kind; ``recheck`` uses the recovery template): the
    project's own first, else the shared one; the standard set is seeded when none exists at all."""
    tkind = TEMPLATE_KIND.get(kind, kind)
    for attempt in range(2):
        rows = (await s.execute(
            sa.select(SurveyTemplate).where(SurveyTemplate.kind == tkind, SurveyTemplate.active.is_(True),
                                            sa.or_(SurveyTemplate.project_id == project_id,
                                                   SurveyTemplate.project_id.is_(None)))
            .order_by(SurveyTemplate.project_id.is_(None), SurveyTemplate.id)
        )).scalars().all()
        if rows:
            return rows[0]
        if attempt == 0 and not await seed_templates(s):
            return None
    return None


def validate_items(items: list[dict[str, Any]]) -> list[dict[str, str]]:
    """A template's items as staff edit them: raise ValueError (in Chinese) for what the figures cannot use."""
    clean: list[dict[str, str]] = []
    seen: set[str] = set()
    for n, item in enumerate(items, 1):
        code = str(item.get("code", "")).strip()
        text = str(item.get("text", "")).strip()
        area = str(item.get("area", "")).strip()
        kind = str(item.get("type", "score")).strip() or "score"
        if not code and not text:
            continue
        if not code or not code.replace("_", "").isalnum() or not code.isascii():
            raise ValueError(f"第{n}项：编码只能用英文字母、数字和下划线")
        if code in seen:
            raise ValueError(f"第{n}项：编码 {code} 重复")
        if not text:
            raise ValueError(f"第{n}项：请填写问题")
        if area not in AREAS:
            raise ValueError(f"第{n}项：请选择业务领域（{'、'.join(AREAS)}）")
        if kind not in ("score", "text"):
            raise ValueError(f"第{n}项：题型只能是评分或文字")
        seen.add(code)
        clean.append({"code": code, "text": text[:200], "area": area, "type": kind})
    if not clean or clean[0]["code"] != "overall" or clean[0]["type"] != "score":
        raise ValueError("第一项必须是总体满意度（编码 overall，评分题）")
    return clean


def check_loyalty(kind: str, items: list[dict[str, str]]) -> None:
    if kind in ("handover", "periodic") and [i["code"] for i in items[:3]] != ["overall", "rebuy", "recommend"]:
        raise ValueError("交付与居住体验调查的前三项必须依次是 overall（总体满意度）、rebuy（再次购买）、recommend（推荐）")
