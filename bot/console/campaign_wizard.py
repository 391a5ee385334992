"""The campaign wizard and a campaign's controls in the console, on the campaigns module's public functions.

* ``GET /console/campaigns/new`` — one form: kind, project, audience filters (buildings, units, owner
  stage, certificate status, handover dates, tag, an uploaded xlsx list), the kind's params, channels,
  urgency, an optional send time. ``POST /console/campaigns`` creates it through
  :func:`actions.campaigns.create` (which decides draft / pending approval / scheduled and writes the
  audit log); a refusal re-shows the form with every value kept and the reason.
* The campaign page shows the preview (:func:`actions.campaigns.get_preview`: recipients per channel, the
  excluded with reasons — :func:`actions.campaigns.excluded` lists them —, SMS segments and cost, one
  rendered sample per channel) while it has not started, a test-send to the staff member's own phone or
  WeChat (:func:`actions.campaigns.test_send`), and the buttons this staff member may press now.
* ``POST /console/campaigns/{id}/{verb}`` — approve (supervisor or admin: ``campaigns.approve``), send,
  pause, resume, cancel. Sending from the console always hands the dispatch to the job queue (in-process
  in the embedded mode), so the page returns at once and the progress counts move while it runs.

Nothing here selects an audience or sends a message itself.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from actions import campaigns as core
from actions.campaigns.kinds import KINDS, KindError, spec_for
from actions.labels import CAMPAIGN_KIND_LABELS, UTILITY_LABELS
from actions.stages import STAGES
from bot.console.core import (
    Refused,
    Staff,
    close_files,
    done,
    form,
    match_id,
    render,
    route,
    runtime_of,
    staff_of,
)
from bot.store.models import Campaign, Project, SurveyTemplate

AVAILABLE = True
"""Whether the wizard and the action buttons are wired to the campaigns module."""

PARAMS: dict[str, tuple[tuple[str, str, str], ...]] = {
    # kind -> (param, label, input type)
    "certificate_collection": (("place", "领取地点", "text"), ("hours", "领取时间", "text"),
                               ("documents", "需携带材料", "text"), ("proxy", "代领规则", "text"),
                               ("mail", "邮寄规则（不邮寄可留空）", "text")),
    "handover": (("date", "交付日期", "date"), ("place", "办理地点", "text")),
    "outage": (("utility", "停什么", "utility"), ("start", "开始时间", "datetime-local"),
               ("end", "预计恢复时间", "datetime-local"), ("area", "影响范围", "text"), ("reason", "原因", "text")),
    "construction_progress": (("month", "月份", "text"), ("content", "进展内容", "textarea"),
                              ("photos", "照片链接（可选）", "text")),
    "warranty_expiry": (("item", "保修项目", "warranty"),),
    "survey": (("template", "问卷模板", "survey"),),
    "notice": (("content", "通知内容", "textarea"),),
}
CERT_FILTERS = {"": "不限", "ready": "可领取未领", "processing": "办理中", "collected": "已领取"}
VERBS = {"approve": "审批通过", "send": "立即发送", "pause": "暂停", "resume": "继续发送", "cancel": "取消通知"}
CAN = {
    "approve": frozenset({"pending_approval"}), "send": frozenset({"draft", "approved", "scheduled"}),
    "pause": frozenset({"sending", "scheduled"}), "resume": frozenset({"paused"}),
    "cancel": frozenset({"draft", "pending_approval", "approved", "scheduled", "sending", "paused"}),
}
"""When each button shows (the campaigns module's transition table decides; this only hides buttons)."""


def actions_for(staff: Staff, campaign: Campaign) -> list[tuple[str, str, str]]:
    """The buttons ``staff`` may press on ``campaign`` now: (verb, words, style)."""
    out = []
    for verb, words in VERBS.items():
        if campaign.status not in CAN[verb]:
            continue
        if verb == "approve" and not staff.can("campaigns.approve"):
            continue
        style = "primary" if verb in ("approve", "send", "resume") else ("danger" if verb == "cancel" else "")
        out.append((verb, words, style))
    return out


async def _choices(request: web.Request) -> dict[str, Any]:
    async with runtime_of(request).db.session() as s:
        projects = (await s.execute(sa.select(Project.code, Project.name, Project.settings).order_by(Project.id))).all()
        surveys = (await s.execute(sa.select(SurveyTemplate.code, SurveyTemplate.name)
                                   .where(SurveyTemplate.active.is_(True)).order_by(SurveyTemplate.id))).all()
    warranty: dict[str, str] = {}
    for _code, _name, settings in projects:
        for item, entry in ((settings or {}).get("warranty") or {}).items():
            if isinstance(entry, dict) and entry.get("years"):
                warranty.setdefault(item, str(entry.get("label") or item))
    return {"projects": [(c, n) for c, n, _ in projects], "surveys": list(surveys), "warranty": warranty}


def _defaults(rt: Any, kind: str, project: str | None) -> dict[str, Any]:
    try:
        return dict(spec_for(kind, rt.settings.campaigns_config, project).params)
    except KindError:
        return {}


async def _form_page(request: web.Request, values: dict[str, str], error: str = "", status: int = 200
                     ) -> web.StreamResponse:
    choices = await _choices(request)
    return render(request, "campaign_new.html", status=status, title="新建群发通知", page="campaigns",
                  values=values, error=error, KINDS={k: CAMPAIGN_KIND_LABELS.get(k, k) for k in KINDS},
                  PARAMS=PARAMS, STAGES=STAGES, CERT_FILTERS=CERT_FILTERS, UTILITIES=UTILITY_LABELS, **choices)


@route("GET", "/campaigns/new", "campaigns")
async def new_campaign(request: web.Request) -> web.StreamResponse:
    kind = request.query.get("kind", "certificate_collection")
    kind = kind if kind in KINDS else "certificate_collection"
    values: dict[str, str] = {"kind": kind, "ch_wechat": "1", "ch_sms": "1"}
    rt = runtime_of(request)
    for k in KINDS:
        for name, value in _defaults(rt, k, None).items():
            values.setdefault(f"p_{k}_{name}", str(value))
    return await _form_page(request, values)


def _rule(values: dict[str, str]) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    for key in ("buildings", "units"):
        if values.get(key, "").strip():
            rule[key] = values[key].replace("，", ",")
    for key in ("stage", "certificate", "handover_from", "handover_to", "tag"):
        if values.get(key, "").strip():
            rule[key] = values[key].strip()
    return rule


@route("POST", "/campaigns", "campaigns")
async def create_campaign(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    rt = runtime_of(request)
    values = await form(request)  # text fields checked (no control characters)
    data = await request.post()  # the same parsed body (aiohttp keeps it), for the uploaded list
    upload = data.get("list")
    kind = values.get("kind", "")
    try:
        if kind not in KINDS:
            raise core.CampaignError("请选择通知类型")
        if not values.get("project"):
            raise core.CampaignError("请选择楼盘")
        rule = _rule(values)
        if isinstance(upload, web.FileField) and upload.filename:
            rule.update(await _read_list(rt, values["project"], upload))
        params = {name: values.get(f"p_{kind}_{name}", "").strip() for name, _l, _t in PARAMS.get(kind, ())}
        params = {k: v for k, v in params.items() if v}
        if values.get("url", "").strip():
            params["url"] = values["url"].strip()
        channels = [c for c in ("wechat", "sms") if values.get(f"ch_{c}")]
        created = await core.create(
            rt, kind=kind, project=values["project"], actor=staff.username, audience=rule, channels=channels,
            urgent=bool(values.get("urgent")), at=values.get("at") or None, params=params,
            name=values.get("name", "").strip() or None)
    except (core.CampaignError, KindError) as exc:
        return await _form_page(request, values, error=str(exc), status=400)
    finally:
        close_files(data)
    c = created.campaign
    words = {"pending_approval": "已提交，收件人超过审批人数，需主管审批后发送。", "scheduled": "已定时。",
             "draft": "草稿已保存，请核对预览后发送。"}.get(c.status, "")
    return done(request, f"/console/campaigns/{c.id}", f"群发通知已创建：{words}", id=c.id)


async def _read_list(rt: Any, project: str, upload: web.FileField) -> dict[str, Any]:
    """An uploaded xlsx list (楼栋 单元 房号, or 手机号) as ``houses``/``owners`` of the rule."""
    if not (upload.filename or "").lower().endswith(".xlsx"):
        raise core.CampaignError("名单须为 xlsx 文件（列：楼栋 单元 房号，或 手机号）")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "list.xlsx"
        path.write_bytes(upload.file.read())
        async with rt.db.session() as s:
            proj = (await s.execute(sa.select(Project).where(sa.or_(Project.code == project, Project.name == project)))
                    ).scalar_one_or_none()
            if proj is None:
                raise core.CampaignError("请选择楼盘")
            result = await core.read_list(s, proj.id, path)
    if result.errors:
        first = result.errors[0]
        raise core.CampaignError(f"名单第 {first.row} 行（{first.value}）：{first.reason}；"
                                 f"共 {len(result.errors)} 行有误，请修改后重新上传")
    rule: dict[str, Any] = {}
    if result.houses:
        rule["houses"] = list(result.houses)
    if result.owners:
        rule["owners"] = list(result.owners)
    if not rule:
        raise core.CampaignError("名单中没有可识别的房屋或手机号")
    return rule


async def preview_of(request: web.Request, campaign: Campaign) -> dict[str, Any] | None:
    """The preview and the excluded owners (first 50) of a campaign that has not started."""
    if campaign.status not in ("draft", "pending_approval", "approved", "scheduled"):
        return None
    rt = runtime_of(request)
    preview = await core.get_preview(rt, campaign.id)
    ctx = await core.get_context(rt, campaign.id)
    async with rt.db.session() as s:
        left_out = await core.excluded(s, ctx, campaign.audience or {}, limit=50)
    return {"p": preview, "excluded": left_out, "reasons": core.REASONS}


@route("POST", "/campaigns/{id}/test", "campaigns")
async def test_send(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    campaign_id = match_id(request)
    data = await request.post()
    phone = str(data.get("phone") or "").strip() or None
    openid = str(data.get("openid") or "").strip() or None
    try:
        result = await core.test_send(runtime_of(request), campaign_id, staff.username, phone=phone, openid=openid)
    except core.CampaignError as exc:
        raise Refused(str(exc), back=f"/console/campaigns/{campaign_id}") from None
    words = {"wechat": "微信", "sms": "短信"}
    told = "；".join(f"{words.get(ch, ch)}：{'已发送' if r == 'sent' else ('没有已审核的模板' if r == 'no_template' else '失败 ' + r)}"
                    for ch, r in result.items())
    return done(request, f"/console/campaigns/{campaign_id}", f"测试发送 — {told}")


@route("POST", "/campaigns/{id}/{verb:approve|send|pause|resume|cancel}", "campaigns")
async def campaign_verb(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    campaign_id = match_id(request)
    verb = request.match_info["verb"]
    back = f"/console/campaigns/{campaign_id}"
    if verb == "approve" and not staff.can("campaigns.approve"):
        raise Refused("超过审批人数的通知须由主管审批", status=403, back=back)
    rt = runtime_of(request)
    try:
        if verb == "approve":
            await core.approve(rt, campaign_id, staff.username)
            message = "已审批通过。"
        elif verb == "send":
            await core.send(rt, campaign_id, staff.username, local=False)
            message = "已开始发送，进度会自动刷新。"
        elif verb == "pause":
            await core.pause(rt, campaign_id, staff.username)
            message = "已暂停，正在发送的一批完成后停止。"
        elif verb == "resume":
            await core.resume(rt, campaign_id, staff.username, local=False)
            message = "已继续发送。"
        else:
            await core.cancel(rt, campaign_id, staff.username)
            message = "已取消，尚未发出的消息不再发送。"
    except core.CampaignError as exc:
        raise Refused(str(exc), back=back) from None
    return done(request, back, message)
