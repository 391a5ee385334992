"""A campaign's life: create (with its preview), approve, schedule, send, pause, resume, cancel — each an
explicit verb on the transition table below, each written to the audit log.

::

    draft ──send──▶ sending ──(nothing left)──▶ done
      │               │  ▲
      │            pause resume
      │               ▼  │
      │             paused
    pending_approval ──approve──▶ approved ──send──▶ sending
                                  approved/draft ──schedule──▶ scheduled ──(its time: the tick)──▶ sending
    (any but done/cancelled) ──cancel──▶ cancelled

A campaign whose audience is over the approval threshold (``campaigns.approval_threshold`` of the YAML
config, a project's ``campaign_approval_threshold``, else ``YEZHU_CAMPAIGN_APPROVAL_THRESHOLD``) is created
``pending_approval`` and only a supervisor (or admin) can approve it. Automatic campaigns (a certificate
import, the daily warranty job) are always created ``pending_approval``: staff look before owners hear.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from actions.campaigns import audience as aud
from actions.campaigns.context import Ctx, context, today_china
from actions.campaigns.dispatch import Progress, counts, dispatch, materialise
from actions.campaigns.kinds import CHANNELS, KindError, campaign_params, spec_for
from actions.labels import CAMPAIGN_STATUS_LABELS
from actions.stages import anniversary
from bot.store.models import AuditLog, Campaign, Delivery, House, Project, StaffUser, SurveyTemplate, utcnow
from channels.base import OutboundMessage
from channels.sms.base import CHINA, SmsRequest

log = logging.getLogger("yezhu.campaigns")

APPROVERS = frozenset({"supervisor", "admin"})
STAFF_ROLES = frozenset({"agent", "supervisor", "admin"})
TRANSITIONS: dict[str, frozenset[str]] = {
    "approve": frozenset({"pending_approval"}),
    "schedule": frozenset({"draft", "approved", "scheduled"}),
    "send": frozenset({"draft", "approved", "scheduled"}),
    "pause": frozenset({"sending", "scheduled"}),
    "resume": frozenset({"paused"}),
    "cancel": frozenset({"draft", "pending_approval", "approved", "scheduled", "sending", "paused"}),
}
STATUS_LABELS = CAMPAIGN_STATUS_LABELS  # the one table of words: actions/labels.py
MOBILE = re.compile(r"1[3-9]\d{9}")


class CampaignError(ValueError):
    """A verb that cannot be done now (wrong status, no permission, unknown campaign): one clear line."""


@dataclass(frozen=True, slots=True)
class Created:
    campaign: Campaign
    preview: aud.Preview


async def _actor(s: AsyncSession, name: str, *, system: bool = False) -> StaffUser | None:
    if system:
        return None
    user = (await s.execute(sa.select(StaffUser).where(StaffUser.username == name))).scalar_one_or_none()
    if user is None or not user.active:
        raise CampaignError(f"没有在职员工账号 {name!r}（用 --as 指定，或 yezhu staff list 查看）")
    if user.role not in STAFF_ROLES:
        raise CampaignError(f"{name} 的角色 {user.role} 不能发起或管理通知")
    return user


def audit(s: AsyncSession, actor: str, action: str, campaign_id: int, **data: Any) -> None:
    s.add(AuditLog(actor=actor, action=f"campaign.{action}", target=f"campaign:{campaign_id}",
                   data={k: v for k, v in data.items() if v is not None}))


def threshold(settings: Any, project: Project | None) -> int:
    value = (project.settings or {}).get("campaign_approval_threshold") if project is not None else None
    if value is None:
        value = settings.campaigns_config.get("approval_threshold")
    return int(value if value is not None else settings.campaign_approval_threshold)


def parse_at(value: str | dt.datetime | None) -> dt.datetime | None:
    """``2026-12-03 09:00`` / ISO 8601 in Beijing time unless it says otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        at = value
    else:
        try:
            at = dt.datetime.fromisoformat(str(value).strip().replace("/", "-"))
        except ValueError:
            raise CampaignError(f"时间 {value!r} 无法识别，例如 2026-12-03T09:00") from None
    return (at.replace(tzinfo=CHINA) if at.tzinfo is None else at).astimezone(dt.UTC)


async def create(
    rt: Any, *, kind: str, project: str, actor: str = "admin", buildings: Sequence[str] | str | None = None,
    audience: Mapping[str, Any] | None = None, channels: Sequence[str] | None = None, urgent: bool = False,
    at: str | dt.datetime | None = None, params: Mapping[str, Any] | None = None, name: str | None = None,
    system: bool = False, force_approval: bool = False, dry_run: bool = False,
) -> Created:
    """Draft a campaign of ``kind`` for ``project`` (code or name) and preview it.

    ``dry_run``: check and preview only; nothing is stored or audited (the console's wizard previews
    every change of the rule this way, see :func:`preview_new`).

    ``audience``: the rule (module :mod:`audience`); ``buildings`` adds to it. ``channels``: a subset of
    the kind's (default: the kind's). ``at``: send at that time (Beijing time unless given). Raises
    :class:`CampaignError` / :class:`~actions.campaigns.kinds.KindError` with one clear line."""
    rule = dict(audience or {})
    if buildings:
        rule["buildings"] = buildings
    rule = aud.check_rule(rule)
    if channels is not None:
        bad = [c for c in channels if c not in CHANNELS]
        if bad or not channels:
            raise CampaignError(f"渠道只能是 wechat、sms（收到 {', '.join(bad) or '空'}）")
    when = parse_at(at)
    if when is not None and when < utcnow() - dt.timedelta(minutes=1):
        raise CampaignError("定时发送的时间已经过去")
    try:
        return await _create(rt, kind, project, actor, rule, channels, urgent, when, params, name, system,
                             force_approval, dry_run)
    except _DryRun as done:
        return done.created


class _DryRun(Exception):
    def __init__(self, created: Created) -> None:
        self.created = created


async def preview_new(rt: Any, **options: Any) -> aud.Preview:
    """The preview of a campaign not yet created (``create``'s arguments): nothing is stored."""
    return (await create(rt, dry_run=True, **options)).preview


async def _create(rt: Any, kind: str, project: str, actor: str, rule: dict[str, Any], channels: Sequence[str] | None,
                  urgent: bool, when: dt.datetime | None, params: Mapping[str, Any] | None, name: str | None,
                  system: bool, force_approval: bool, dry_run: bool) -> Created:
    async with rt.db.session() as s, s.begin():
        user = await _actor(s, actor, system=system)
        proj = await aud.project_by_code(s, project)
        spec = spec_for(kind, rt.settings.campaigns_config, proj.code, urgent=urgent)
        if urgent and kind != "outage":
            raise CampaignError("只有停水停电停气通知（outage）可以标为紧急")
        merged = dict(spec.params)  # the kind's defaults under the config's (kinds, then the project's)
        if kind == "certificate_collection":  # the project's counter, unless the campaign says otherwise
            counter = (proj.settings or {}).get("certificate_collection") or {}
            merged = {**{k: v for k, v in counter.items() if k in ("place", "hours")}, **merged}
        if kind == "outage" and rule.get("buildings"):  # the area defaults to the buildings chosen
            merged.setdefault("area", "、".join(f"{b}栋" for b in rule["buildings"]))
        if kind == "survey" and not (merged.get("template") or campaign_params_given(params).get("template")):
            # No template named: the project's own active periodic survey, else the shared one.
            default = (await s.execute(sa.select(SurveyTemplate.code).where(
                SurveyTemplate.kind == "periodic", SurveyTemplate.active.is_(True),
                sa.or_(SurveyTemplate.project_id == proj.id, SurveyTemplate.project_id.is_(None)),
            ).order_by(SurveyTemplate.project_id.is_(None), SurveyTemplate.id))).scalars().first()
            if default is not None:
                merged["template"] = default
        full = campaign_params(spec, {**merged, **campaign_params_given(params)})
        if kind == "survey":
            template = (await s.execute(sa.select(SurveyTemplate).where(
                SurveyTemplate.code == str(full["template"]), SurveyTemplate.active.is_(True)))).scalar_one_or_none()
            if template is None:
                raise CampaignError(f"没有启用的问卷模板 {full['template']!r}")
            full.setdefault("survey", template.name)
        if kind == "warranty_expiry":
            table = (proj.settings or {}).get("warranty") or {}
            entry = table.get(str(full["item"])) or {}
            full.setdefault("item_label", entry.get("label") or full["item"])
        chosen = list(channels) if channels is not None else list(spec.channels)
        campaign = Campaign(
            name=name or f"{spec.label} {dt.datetime.now(CHINA):%m-%d %H:%M}", kind=kind, text=spec.text,
            status="draft", project_id=proj.id, audience=rule, params=full, channels=chosen, urgent=urgent,
            scheduled_at=when, created_by=user.username if user else actor,
        )
        s.add(campaign)
        await s.flush()
        ctx = await context(s, rt.settings, campaign)
        campaign.text = ctx.text({"name": "${name}", "house": "${house}"})
        preview = await aud.preview(s, ctx, rule, threshold(rt.settings, proj))
        if preview.needs_approval or force_approval:
            campaign.status = "pending_approval"
            preview.needs_approval = True
        elif when is not None:
            campaign.status = "scheduled"
        if dry_run:
            raise _DryRun(Created(campaign, preview))  # rolls the transaction back
        audit(s, campaign.created_by or actor, "create", campaign.id, kind=kind, project=proj.code, audience=rule,
              channels=chosen, urgent=urgent, at=when.isoformat() if when else None,
              recipients=preview.recipients, status=campaign.status)
    return Created(campaign, preview)


def campaign_params_given(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {str(k): v for k, v in (params or {}).items() if v is not None}


async def _load(s: AsyncSession, campaign_id: int, *, lock: bool = False) -> Campaign:
    q = sa.select(Campaign).where(Campaign.id == campaign_id)
    if lock and s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    campaign = (await s.execute(q)).scalar_one_or_none()
    if campaign is None:
        raise CampaignError(f"没有编号为 {campaign_id} 的通知")
    return campaign


def _check(campaign: Campaign, verb: str) -> None:
    if campaign.status not in TRANSITIONS[verb]:
        label = STATUS_LABELS.get(campaign.status, campaign.status)
        if verb == "send" and campaign.status == "pending_approval":
            raise CampaignError(f"通知 {campaign.id} 待主管审批，审批后才能发送（yezhu campaign approve {campaign.id} --as 主管）")
        raise CampaignError(f"通知 {campaign.id} 当前状态为“{label}”，不能{VERB_LABELS[verb]}")


VERB_LABELS = {"approve": "审批", "schedule": "定时", "send": "发送", "pause": "暂停", "resume": "恢复", "cancel": "取消"}


async def get_preview(rt: Any, campaign_id: int) -> aud.Preview:
    """The campaign's preview as of now (the audience may have changed since it was created)."""
    async with rt.db.session() as s:
        campaign = await _load(s, campaign_id)
        ctx = await context(s, rt.settings, campaign)
        project = await s.get(Project, campaign.project_id) if campaign.project_id else None
        return await aud.preview(s, ctx, campaign.audience or {}, threshold(rt.settings, project))


async def get_context(rt: Any, campaign_id: int) -> Ctx:
    async with rt.db.session() as s:
        return await context(s, rt.settings, await _load(s, campaign_id))


async def approve(rt: Any, campaign_id: int, actor: str) -> Campaign:
    async with rt.db.session() as s, s.begin():
        user = await _actor(s, actor)
        assert user is not None
        if user.role not in APPROVERS:
            raise CampaignError(f"{actor} 不是主管，不能审批通知")
        campaign = await _load(s, campaign_id, lock=True)
        _check(campaign, "approve")
        campaign.status = "scheduled" if campaign.scheduled_at is not None else "approved"
        campaign.approved_by, campaign.approved_at = user.username, utcnow()
        audit(s, user.username, "approve", campaign.id, status=campaign.status)
    return campaign


async def schedule(rt: Any, campaign_id: int, at: str | dt.datetime, actor: str) -> Campaign:
    when = parse_at(at)
    if when is None:
        raise CampaignError("请给出发送时间")
    async with rt.db.session() as s, s.begin():
        user = await _actor(s, actor)
        campaign = await _load(s, campaign_id, lock=True)
        _check(campaign, "schedule")
        campaign.status, campaign.scheduled_at = "scheduled", when
        audit(s, user.username if user else actor, "schedule", campaign.id, at=when.isoformat())
    return campaign


async def start(rt: Any, campaign_id: int, actor: str, *, system: bool = False) -> str:
    """Make the deliveries and mark the campaign ``sending`` (one transaction); a campaign already
    ``sending`` (a dispatcher died, or another process runs it) is left as it is. Returns the status."""
    async with rt.db.session() as s, s.begin():
        user = await _actor(s, actor, system=system)
        campaign = await _load(s, campaign_id, lock=True)
        if campaign.status in ("sending", "done"):
            return campaign.status
        if campaign.status == "paused":
            raise CampaignError(f"通知 {campaign_id} 已暂停，请用 yezhu campaign resume {campaign_id} 继续")
        _check(campaign, "send")
        ctx = await context(s, rt.settings, campaign)
        added = await materialise(s, campaign, ctx)
        campaign.status, campaign.started_at = "sending", campaign.started_at or utcnow()
        audit(s, user.username if user else actor, "send", campaign.id, deliveries=added)
    return "sending"


async def send(rt: Any, campaign_id: int, actor: str, *, progress: Progress | None = None,
               local: bool | None = None, system: bool = False) -> str:
    """Start the campaign and deliver it: in this process (embedded mode, or ``local``), else enqueue it
    to the workers (``campaign_dispatch``) and return ``queued``. Safe to call again at any time."""
    status = await start(rt, campaign_id, actor, system=system)
    if status == "done":
        return "done"
    if local if local is not None else rt.jobs.in_process:
        return await dispatch(rt, campaign_id, progress)
    await rt.jobs.enqueue_campaign(campaign_id)
    return "queued"


async def _set(rt: Any, campaign_id: int, verb: str, actor: str, status: str, **extra: Any) -> Campaign:
    async with rt.db.session() as s, s.begin():
        user = await _actor(s, actor)
        campaign = await _load(s, campaign_id, lock=True)
        _check(campaign, verb)
        before = campaign.status
        campaign.status = status
        for k, v in extra.items():
            setattr(campaign, k, v)
        if verb == "cancel":
            now = utcnow()
            await s.execute(sa.update(Delivery).where(Delivery.campaign_id == campaign_id, Delivery.status == "queued")
                            .values(status="skipped", error="cancelled", updated_at=now))
        audit(s, user.username if user else actor, verb, campaign.id, before=before)
    return campaign


async def pause(rt: Any, campaign_id: int, actor: str) -> Campaign:
    """Stop sending after the batch in flight; ``resume`` goes on where it stopped."""
    return await _set(rt, campaign_id, "pause", actor, "paused")


async def resume(rt: Any, campaign_id: int, actor: str, *, progress: Progress | None = None,
                 local: bool | None = None) -> str:
    async with rt.db.session() as s:
        campaign = await _load(s, campaign_id)
        started = campaign.started_at is not None
        later = campaign.scheduled_at is not None and campaign.scheduled_at > utcnow()
    if not started:  # paused before it started: back to waiting for its time (or for a send)
        return (await _set(rt, campaign_id, "resume", actor, "scheduled" if later else "approved")).status
    await _set(rt, campaign_id, "resume", actor, "sending")
    if local if local is not None else rt.jobs.in_process:
        return await dispatch(rt, campaign_id, progress)
    await rt.jobs.enqueue_campaign(campaign_id)
    return "queued"


async def cancel(rt: Any, campaign_id: int, actor: str) -> Campaign:
    """No more messages: queued deliveries become ``skipped`` (``cancelled``); what went out stays recorded."""
    return await _set(rt, campaign_id, "cancel", actor, "cancelled", finished_at=utcnow())


async def status(rt: Any, campaign_id: int) -> dict[str, Any]:
    """The campaign and its deliveries' counts by status (``acknowledged`` included): the API's body."""
    async with rt.db.session() as s:
        c = await _load(s, campaign_id)
        project = await s.get(Project, c.project_id) if c.project_id else None
    by = await counts(rt, campaign_id)
    return {
        "id": c.id, "name": c.name, "kind": c.kind, "status": c.status, "status_label": STATUS_LABELS.get(c.status),
        "project": project.code if project else None, "audience": c.audience, "params": c.params,
        "channels": c.channels, "urgent": c.urgent, "text": c.text,
        "scheduled_at": _iso(c.scheduled_at), "created_by": c.created_by, "created_at": _iso(c.created_at),
        "approved_by": c.approved_by, "approved_at": _iso(c.approved_at), "started_at": _iso(c.started_at),
        "finished_at": _iso(c.finished_at), "counts": by, "total": sum(by.values()),
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def deliveries(rt: Any, campaign_id: int, *, status: str | None = None, channel: str | None = None,
                     limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """The per-recipient table (filters: status, channel; paged by id)."""
    async with rt.db.session() as s:
        await _load(s, campaign_id)
        q = sa.select(Delivery).where(Delivery.campaign_id == campaign_id)
        if status:
            q = q.where(Delivery.status == status)
        if channel:
            q = q.where(Delivery.channel == channel)
        rows = (await s.execute(q.order_by(Delivery.id).limit(limit).offset(offset))).scalars().all()
        details = {d["owner_id"]: d for d in await aud.owner_details(s, [(r.owner_id, r.house_id, None) for r in rows
                                                                         if r.owner_id is not None])}
    return [{"id": r.id, "owner_id": r.owner_id, "owner": details.get(r.owner_id, {}).get("name"),
             "house_id": r.house_id, "house": details.get(r.owner_id, {}).get("house"), "channel": r.channel,
             "recipient": r.recipient, "status": r.status, "error": r.error,
             "reason": aud.REASONS.get(r.error or "", r.error), "attempts": r.attempts, "provider_id": r.provider_id,
             "text": r.text, "sent_at": _iso(r.sent_at), "delivered_at": _iso(r.delivered_at),
             "acknowledged_at": _iso(r.acknowledged_at)} for r in rows]


async def test_send(rt: Any, campaign_id: int, actor: str, *, phone: str | None = None,
                    openid: str | None = None) -> dict[str, str]:
    """Send the campaign's sample to the sender's own phone (default: their staff phone) and/or WeChat
    openid, marked 【测试】 in the console's audit; nothing is recorded as a delivery. Returns per channel
    ``sent`` or the error."""
    async with rt.db.session() as s, s.begin():
        user = await _actor(s, actor)
        assert user is not None
        campaign = await _load(s, campaign_id)
        ctx = await context(s, rt.settings, campaign)
        phone = phone or user.phone
        if phone:
            given, phone = phone, re.sub(r"^(?:\+?86|0086)", "", re.sub(r"[\s\-()]", "", phone))
            if not MOBILE.fullmatch(phone):
                raise CampaignError(f"测试手机号 {given!r} 不是有效的手机号（11 位，1 开头）")
        audit(s, user.username, "test_send", campaign.id, phone=phone, openid=openid)
    if not phone and not openid:
        raise CampaignError(f"{actor} 没有登记手机号，请用 --phone 或 --openid 指定测试接收人")
    sample = {"name": user.display_name, "house": "测试房屋"}
    out: dict[str, str] = {}
    if openid:
        if ctx.wechat is None:
            out["wechat"] = "no_template"
        else:
            sender = rt.senders.get("wechat")
            result = await sender.send(ctx.account, openid, OutboundMessage(
                ctx.text(sample), kind="template", data=ctx.wechat_data(sample)))
            out["wechat"] = "sent" if result.ok else f"{result.error_code} {result.error or ''}".strip()
    if phone:
        if ctx.sms is None or ctx.sms_code is None:
            out["sms"] = "no_template"
        else:
            result = await rt.sms_provider.send(SmsRequest(
                phone=phone, sign_name=ctx.sms_sign, template_code=ctx.sms_code, params=ctx.sms_params(sample),
                param_order=tuple(ctx.sms.params), out_id=f"t{campaign_id}-{int(utcnow().timestamp())}"))
            out["sms"] = result.status if result.status == "sent" else f"{result.error_code} {result.error or ''}".strip()
    return out


async def list_campaigns(rt: Any, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    async with rt.db.session() as s:
        q = sa.select(Campaign).order_by(Campaign.id.desc()).limit(limit)
        if status:
            q = q.where(Campaign.status == status)
        rows = (await s.execute(q)).scalars().all()
    return [{"id": c.id, "name": c.name, "kind": c.kind, "status": c.status, "created_by": c.created_by,
             "created_at": _iso(c.created_at), "scheduled_at": _iso(c.scheduled_at)} for c in rows]


# --- the scheduler's work ------------------------------------------------------------------------------


async def tick(rt: Any, now: dt.datetime | None = None) -> dict[str, int]:
    """Every minute (cron): start scheduled campaigns whose time has come; hand ``sending`` campaigns with
    no live dispatcher (a dead one, or SMS deferred until now) to a dispatcher again."""
    now = now or utcnow()
    out = {"started": 0, "resumed": 0}
    async with rt.db.session() as s:
        due = (await s.execute(sa.select(Campaign.id).where(Campaign.status == "scheduled",
                                                            Campaign.scheduled_at <= now))).scalars().all()
        orphans = (await s.execute(sa.select(Campaign.id).where(
            Campaign.status == "sending", sa.or_(Campaign.lease_until.is_(None), Campaign.lease_until < now))
        )).scalars().all()
    for cid in due:
        try:
            if await start(rt, cid, "scheduler", system=True) == "sending":
                await rt.jobs.enqueue_campaign(cid)
                out["started"] += 1
        except CampaignError as exc:
            log.warning("campaign %s: not started: %s", cid, exc)
    for cid in orphans:
        if cid in due:
            continue
        d = Delivery
        async with rt.db.session() as s:
            owed = (await s.execute(sa.select(sa.func.count()).select_from(d).where(
                d.campaign_id == cid, sa.or_(d.status == "sending", sa.and_(
                    d.status == "queued", sa.or_(d.not_before.is_(None), d.not_before <= now)))))).scalar_one()
        if owed:
            await rt.jobs.enqueue_campaign(cid)
            out["resumed"] += 1
        else:
            from actions.campaigns.dispatch import finish

            await finish(rt, cid)
    return out


async def certificate_ready(rt: Any, project_id: int, house_ids: Sequence[int], *, batch: str | None = None
                            ) -> Campaign | None:
    """After a certificate import made ``house_ids`` ready: a collection notice for them, for approval."""
    if not house_ids:
        return None
    async with rt.db.session() as s:
        project = await s.get(Project, project_id)
    if project is None:
        return None
    try:
        created = await create(rt, kind="certificate_collection", project=project.code, actor="import",
                               audience={"houses": sorted(set(house_ids))}, system=True, force_approval=True,
                               name=f"办证通知 {batch or ''} {dt.datetime.now(CHINA):%m-%d}".replace("  ", " "))
    except (CampaignError, KindError) as exc:
        log.warning("certificate import: no collection notice drafted: %s", exc)
        return None
    return created.campaign


async def warranty_reminders(rt: Any, today: dt.date | None = None, *, lead_days: int = 61,
                             catch_up: int = 7) -> list[int]:
    """Daily: the houses whose warranty items (those counted in years in the project's warranty table)
    end ``lead_days`` (two months) from today -- and the ``catch_up`` days before, in case a day was
    missed -- get one reminder campaign per (project, end date) naming every item that ends then,
    pending approval, never twice (the campaign's name is its key)."""
    from bot.store.models import Building

    today = today or today_china()
    created: list[int] = []
    async with rt.db.session() as s:
        projects = (await s.execute(sa.select(Project))).scalars().all()
    for project in projects:
        table = (project.settings or {}).get("warranty") or {}
        by_years: dict[int, list[tuple[str, str]]] = {}
        for item, entry in table.items():
            if isinstance(entry, Mapping) and entry.get("years"):
                by_years.setdefault(int(entry["years"]), []).append((item, str(entry.get("label") or item)))
        for years, items in sorted(by_years.items()):
            labels = "、".join(label for _, label in items)
            for back in range(catch_up, -1, -1):
                ends = today + dt.timedelta(days=lead_days - back)
                name = f"保修到期提醒 {ends.isoformat()} {labels}"[:100]
                async with rt.db.session() as s:
                    if (await s.execute(sa.select(Campaign.id).where(
                            Campaign.project_id == project.id, Campaign.kind == "warranty_expiry",
                            Campaign.name == name))).first():
                        continue
                    houses = (await s.execute(sa.select(House.id).join(Building, Building.id == House.building_id)
                                              .where(Building.project_id == project.id,
                                                     House.handover_date == anniversary(ends, -years)))).scalars().all()
                if not houses:
                    continue
                try:
                    c = await create(rt, kind="warranty_expiry", project=project.code, actor="scheduler", system=True,
                                     audience={"houses": list(houses)}, name=name, force_approval=True,
                                     params={"item": ",".join(code for code, _ in items), "item_label": labels,
                                             "date": f"{ends.year}年{ends.month}月{ends.day}日"})
                except (CampaignError, KindError) as exc:
                    log.warning("warranty reminder %s not drafted: %s", name, exc)
                    continue
                created.append(c.campaign.id)
    return created
