"""A campaign's audience and its preview, as set-based SQL (100,000 owners in well under 10 s).

The audience rule (``Campaign.audience``, JSON) selects houses of the campaign's project and their
owners by any of: ``buildings`` (names, ``["3", "8"]``), ``units``, ``stage`` (准业主 | 磨合期 | 稳定期 |
老业主, from the handover date), ``certificate`` (a certificate-record status: ``ready`` = ready and not
collected), ``handover_from``/``handover_to`` (ISO dates), ``tag`` (``owner_tag``), ``houses`` / ``owners``
(ids: an uploaded xlsx list, or the houses an import made ready), ``warranty_from``/``warranty_to`` (the
warranty of params ``item`` ends in that range). The kind adds its own rule (准业主 for construction
progress and handover; a ready certificate for collection notices).

One query classifies every candidate once (:func:`classified`): one row per owner (an owner with several
houses in the audience is told once, ``houses`` counts them), the first owner of each house (co-owners
are ``duplicate_house``), the owner's WeChat follower identity, and per channel whether it goes there:

* WeChat template message to a follower of the project's account when the kind has a WeChat template;
* SMS where WeChat cannot carry it (not bound), or to everyone when the kind sends both (an urgent outage);
  never to an opted-out owner for notices (an emergency still goes), never marketing without consent;
* nobody is dropped silently: ``reason`` is ``opted_out`` | ``no_phone`` | ``not_bound`` | ``no_template``
  | ``no_consent`` | ``duplicate_house``.

``preview`` aggregates that query with GROUP BY; ``dispatch.materialise`` inserts it as delivery rows with
``INSERT … SELECT``. Both run in the database: nothing per owner crosses into Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from actions.campaigns.context import Ctx, today_china
from actions.campaigns.kinds import KindError
from actions.labels import CAMPAIGN_REASON_LABELS
from actions.stages import PRE_OWNER, SETTLING, STABLE, STAGES, VETERAN, anniversary
from bot.store.models import (
    Building,
    CertificateRecord,
    House,
    Identity,
    Owner,
    OwnerHouse,
    OwnerTag,
    Project,
)
from channels.sms.base import measure

REASONS = CAMPAIGN_REASON_LABELS
"""Why an owner gets nothing (the codes are the deliveries' ``error``): the one table in actions/labels.py."""
RULE_KEYS = frozenset({"buildings", "units", "stage", "certificate", "handover_from", "handover_to", "tag",
                       "houses", "owners", "warranty_from", "warranty_to", "list"})


def t(model: Any) -> sa.Table:
    return cast(sa.Table, model.__table__)


def _date(value: Any, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise KindError(f"{name} 必须是日期，例如 2026-06-01") from None


def check_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """The rule with its values checked (one clear error for a bad one); unknown keys refused."""
    unknown = set(rule) - RULE_KEYS
    if unknown:
        raise KindError(f"未知的受众条件：{', '.join(sorted(unknown))}")
    out = dict(rule)
    for key in ("buildings", "units"):
        if key in out and out[key] is not None:
            v = out[key]
            out[key] = [str(x).strip().removesuffix("栋").removesuffix("单元") for x in
                        (v.split(",") if isinstance(v, str) else v) if str(x).strip()]
    if out.get("stage") and out["stage"] not in STAGES:
        raise KindError(f"stage 只能是 {'、'.join(STAGES)}")
    for key in ("handover_from", "handover_to", "warranty_from", "warranty_to"):
        if out.get(key):
            out[key] = _date(out[key], key).isoformat()
    return out


def _stage_condition(h: sa.Table, stage: str, today: dt.date) -> sa.ColumnElement[bool]:
    one, two = anniversary(today, -1), anniversary(today, -2)
    d = h.c.handover_date
    if stage == PRE_OWNER:
        return sa.or_(d.is_(None), d > today)
    if stage == SETTLING:
        return sa.and_(d <= today, d > one)
    if stage == STABLE:
        return sa.and_(d <= one, d >= two)
    if stage == VETERAN:
        return d < two
    raise KindError(f"未知的业主阶段 {stage}")


def warranty_years(ctx: Ctx, item: str) -> int:
    table = ctx.project_settings.get("warranty") or {}
    entry = table.get(item)
    if not isinstance(entry, Mapping) or not entry.get("years"):
        items = [k for k, v in table.items() if isinstance(v, Mapping) and v.get("years")]
        raise KindError(f"项目保修表中没有按年计的项目 {item!r}（可选：{', '.join(items)}）")
    return int(entry["years"])


def rule_of(ctx: Ctx, audience: Mapping[str, Any]) -> dict[str, Any]:
    """The campaign's rule over the kind's own (the campaign's keys win)."""
    return {**dict(ctx.spec.audience), **{k: v for k, v in audience.items() if v not in (None, "", [])}}


def candidates(ctx: Ctx, audience: Mapping[str, Any], today: dt.date | None = None) -> sa.Select[Any]:
    """Owner × house rows matching the rule, each house's owners ranked (``hrank`` 1 = who is told)."""
    today = today or today_china()
    rule = rule_of(ctx, audience)
    oh, h, b, o = t(OwnerHouse), t(House), t(Building), t(Owner)
    first = sa.func.row_number().over(
        partition_by=h.c.id, order_by=(sa.case((oh.c.relation == "owner", 0), else_=1), oh.c.id))
    q = (sa.select(o.c.id.label("owner_id"), h.c.id.label("house_id"), o.c.phone, o.c.sms_opt_out,
                   o.c.consent_marketing, first.label("hrank"))
         .select_from(oh.join(h, h.c.id == oh.c.house_id).join(b, b.c.id == h.c.building_id)
                      .join(o, o.c.id == oh.c.owner_id)))
    if ctx.project_id is not None:
        q = q.where(b.c.project_id == ctx.project_id)
    if rule.get("buildings"):
        q = q.where(b.c.name.in_([str(x) for x in rule["buildings"]]))
    if rule.get("units"):
        q = q.where(h.c.unit.in_([str(x) for x in rule["units"]]))
    if rule.get("stage"):
        q = q.where(_stage_condition(h, rule["stage"], today))
    if rule.get("handover_from"):
        q = q.where(h.c.handover_date >= _date(rule["handover_from"], "handover_from"))
    if rule.get("handover_to"):
        q = q.where(h.c.handover_date <= _date(rule["handover_to"], "handover_to"))
    if rule.get("certificate"):
        cr = t(CertificateRecord)
        q = q.where(sa.exists(sa.select(cr.c.id).where(cr.c.house_id == h.c.id, cr.c.status == rule["certificate"])))
    if rule.get("tag"):
        ot = t(OwnerTag)
        q = q.where(sa.exists(sa.select(ot.c.id).where(ot.c.owner_id == o.c.id, ot.c.tag == str(rule["tag"]))))
    listed = []
    if rule.get("houses"):
        listed.append(h.c.id.in_([int(x) for x in rule["houses"]]))
    if rule.get("owners"):
        listed.append(o.c.id.in_([int(x) for x in rule["owners"]]))
    if listed:
        q = q.where(sa.or_(*listed))
    if ctx.spec.kind == "warranty_expiry" and not rule.get("houses"):
        years = warranty_years(ctx, str(ctx.params.get("item")))
        start = _date(rule.get("warranty_from") or today.isoformat(), "warranty_from")
        end = _date(rule.get("warranty_to") or (today + dt.timedelta(days=61)).isoformat(), "warranty_to")
        q = q.where(h.c.handover_date >= anniversary(start, -years), h.c.handover_date <= anniversary(end, -years))
    return q


def classified(ctx: Ctx, audience: Mapping[str, Any], today: dt.date | None = None) -> sa.Subquery:
    """One row per owner of the audience: ``owner_id, house_id, houses, phone, openid, wechat, sms, reason``
    (``wechat``/``sms`` 1 when a message goes there; ``reason`` why nothing goes, else NULL)."""
    l1 = candidates(ctx, audience, today).subquery("l1")
    per_owner = sa.func.row_number().over(partition_by=l1.c.owner_id, order_by=(l1.c.hrank, l1.c.house_id))
    houses = sa.func.sum(sa.case((l1.c.hrank == 1, 1), else_=0)).over(partition_by=l1.c.owner_id)
    l2 = sa.select(l1, per_owner.label("orank"), houses.label("houses")).subquery("l2")
    i = t(Identity)
    wi = (sa.select(i.c.owner_id, sa.func.min(i.c.external_id).label("openid"))
          .where(i.c.channel == "wechat", i.c.account == ctx.account, i.c.subscribed.is_(True),
                 i.c.owner_id.is_not(None))
          .group_by(i.c.owner_id).subquery("wi"))
    head = l2.c.hrank == 1
    bound = wi.c.openid.is_not(None)
    phone_ok = sa.and_(l2.c.phone.is_not(None), l2.c.phone != "")
    wechat = sa.and_(head, bound) if ctx.can_wechat else sa.false()
    blocked: list[sa.ColumnElement[bool]] = []
    if ctx.opt_out_applies:
        blocked.append(l2.c.sms_opt_out.is_(True))
    if ctx.needs_consent:
        blocked.append(l2.c.consent_marketing.is_(False))
    if ctx.can_sms:
        possible = sa.and_(head, phone_ok, *[sa.not_(x) for x in blocked])
        sms = possible if ctx.both or not ctx.can_wechat else sa.and_(possible, sa.not_(wechat))
    else:
        sms = sa.false()
    whens: list[tuple[Any, Any]] = [(sa.not_(head), "duplicate_house"), (sa.or_(wechat, sms), sa.null())]
    if "sms" not in ctx.channels:  # WeChat only
        whens.append((sa.true() if ctx.wechat is None else sa.false(), "no_template"))
        whens.append((sa.true(), "not_bound"))
    else:
        whens.append((sa.not_(phone_ok), "no_phone"))
        if ctx.sms_code is None:
            whens.append((sa.true(), "no_template"))
        if ctx.opt_out_applies:
            whens.append((l2.c.sms_opt_out.is_(True), "opted_out"))
        if ctx.needs_consent:
            whens.append((l2.c.consent_marketing.is_(False), "no_consent"))
    reason = sa.case(*[(c, sa.literal(r, sa.String) if isinstance(r, str) else r) for c, r in whens],
                     else_=sa.literal("not_bound", sa.String))
    q = (sa.select(l2.c.owner_id, l2.c.house_id, l2.c.houses, l2.c.phone, wi.c.openid,
                   sa.case((wechat, 1), else_=0).label("wechat"), sa.case((sms, 1), else_=0).label("sms"),
                   reason.label("reason"))
         .select_from(l2.outerjoin(wi, wi.c.owner_id == l2.c.owner_id))
         .where(l2.c.orank == 1))
    return q.subquery("aud")


@dataclass(slots=True)
class Preview:
    """What a campaign would do now: recipients per channel, exclusions with reasons, SMS cost, samples."""

    owners: int = 0
    """Owners the rule selects."""
    recipients: int = 0
    """Owners who get at least one message."""
    channels: dict[str, int] = field(default_factory=lambda: {"wechat": 0, "sms": 0})
    excluded: dict[str, int] = field(default_factory=dict)
    sms_segments: int = 0
    """Billed parts of the sample SMS (per message)."""
    sms_cost: Decimal = Decimal(0)
    """Estimated: parts of the sample × SMS recipients × price."""
    samples: dict[str, Any] = field(default_factory=dict)
    """One rendered sample per channel: ``{"wechat": {"text", "fields"}, "sms": {"text", "chars", "segments"}}``."""
    needs_approval: bool = False
    threshold: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"owners": self.owners, "recipients": self.recipients, "channels": dict(self.channels),
                "excluded": dict(self.excluded), "sms_segments": self.sms_segments,
                "sms_cost": str(self.sms_cost), "samples": self.samples, "needs_approval": self.needs_approval,
                "approval_threshold": self.threshold}

    def lines(self) -> list[str]:
        """The preview as the CLI prints it."""
        out = [f"受众 {self.owners} 户业主，将通知 {self.recipients} 人：微信 {self.channels.get('wechat', 0)}，"
               f"短信 {self.channels.get('sms', 0)}"]
        if self.excluded:
            out.append("不发送：" + "，".join(f"{REASONS.get(k, k)} {v}" for k, v in sorted(self.excluded.items())))
        if self.channels.get("sms"):
            out.append(f"短信每条计 {self.sms_segments} 条，预计费用约 {self.sms_cost} 元")
        for channel, sample in self.samples.items():
            out.append(f"样例（{'微信模板消息' if channel == 'wechat' else '短信'}）：{sample['text']}")
        if self.needs_approval:
            out.append(f"超过 {self.threshold} 人，需主管审批后发送")
        return out


async def preview(s: AsyncSession, ctx: Ctx, audience: Mapping[str, Any], threshold: int) -> Preview:
    aud = classified(ctx, audience)
    row = (await s.execute(sa.select(
        sa.func.count(), sa.func.coalesce(sa.func.sum(aud.c.wechat), 0), sa.func.coalesce(sa.func.sum(aud.c.sms), 0),
        sa.func.coalesce(sa.func.sum(sa.case((sa.or_(aud.c.wechat == 1, aud.c.sms == 1), 1), else_=0)), 0),
    ).select_from(aud))).one()
    p = Preview(owners=int(row[0]), channels={"wechat": int(row[1]), "sms": int(row[2])}, recipients=int(row[3]))
    reasons = (await s.execute(sa.select(aud.c.reason, sa.func.count()).select_from(aud)
                               .where(aud.c.reason.is_not(None)).group_by(aud.c.reason))).all()
    p.excluded = {str(r): int(n) for r, n in reasons}
    for channel in ("wechat", "sms"):
        col = aud.c.wechat if channel == "wechat" else aud.c.sms
        first = (await s.execute(sa.select(aud.c.owner_id, aud.c.house_id, aud.c.houses).where(col == 1)
                                 .limit(1))).first()
        if first is None and not ((channel == "wechat" and ctx.can_wechat) or (channel == "sms" and ctx.can_sms)):
            continue
        owner = (await owner_details(s, [(first.owner_id, first.house_id, first.houses)]))[0] if first else None
        if channel == "wechat" and ctx.can_wechat:
            data = ctx.wechat_data(owner)
            p.samples["wechat"] = {"text": ctx.text(owner), "fields": data["fields"],
                                   "template_id": data["template_id"]}
        elif channel == "sms" and ctx.can_sms:
            text = ctx.sms_text(owner)
            length = measure(text, ctx.sms_price)
            p.samples["sms"] = {"text": text, "chars": length.chars, "segments": length.segments}
            p.sms_segments = length.segments
            p.sms_cost = (ctx.sms_price * length.segments * p.channels["sms"]).quantize(Decimal("0.01"))
    p.threshold = threshold
    p.needs_approval = p.recipients > threshold
    return p


async def excluded(s: AsyncSession, ctx: Ctx, audience: Mapping[str, Any], *, limit: int = 100, offset: int = 0
                   ) -> list[dict[str, Any]]:
    """Everyone the preview excludes, with the reason (the console's table; paged)."""
    aud = classified(ctx, audience)
    rows = (await s.execute(sa.select(aud.c.owner_id, aud.c.house_id, aud.c.houses, aud.c.reason)
                            .where(aud.c.reason.is_not(None)).order_by(aud.c.owner_id).limit(limit).offset(offset))).all()
    details = await owner_details(s, [(r.owner_id, r.house_id, r.houses) for r in rows])
    return [{**d, "reason": r.reason, "reason_label": REASONS.get(r.reason, r.reason)} for d, r in zip(details, rows, strict=True)]


async def owner_details(s: AsyncSession, rows: Sequence[tuple[int, int | None, int | None]]) -> list[dict[str, Any]]:
    """Name, phone, house label and certificate place/hours for ``(owner_id, house_id, houses)`` rows."""
    if not rows:
        return []
    o, h, b, cr = t(Owner), t(House), t(Building), t(CertificateRecord)
    owners = {r.id: r for r in (await s.execute(sa.select(o.c.id, o.c.name, o.c.phone)
                                                .where(o.c.id.in_({r[0] for r in rows})))).all()}
    house_ids = {r[1] for r in rows if r[1] is not None}
    houses = {r.id: r for r in (await s.execute(
        sa.select(h.c.id, b.c.name.label("building"), h.c.unit, h.c.room, cr.c.collect_place, cr.c.collect_hours)
        .join(b, b.c.id == h.c.building_id).outerjoin(cr, cr.c.house_id == h.c.id).where(h.c.id.in_(house_ids))
    )).all()} if house_ids else {}
    out = []
    for owner_id, house_id, count in rows:
        o_row, h_row = owners.get(owner_id), houses.get(house_id) if house_id is not None else None
        label = f"{h_row.building}栋{h_row.unit}单元{h_row.room}" if h_row is not None else ""
        if label and count and count > 1:
            label += f"等{count}套房屋"
        out.append({"owner_id": owner_id, "house_id": house_id, "name": o_row.name if o_row else "",
                    "phone": o_row.phone if o_row else "", "house": label,
                    "place": h_row.collect_place if h_row is not None else None,
                    "hours": h_row.collect_hours if h_row is not None else None})
    return out


# --- an uploaded list -------------------------------------------------------------------------------


@dataclass(slots=True)
class ListError:
    row: int
    value: str
    reason: str


@dataclass(slots=True)
class ListResult:
    houses: list[int] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)
    errors: list[ListError] = field(default_factory=list)
    rows: int = 0


HEADERS = {"楼栋": "building", "栋": "building", "单元": "unit", "房号": "room", "房间": "room",
           "手机号": "phone", "手机": "phone", "电话": "phone", "phone": "phone", "building": "building",
           "unit": "unit", "room": "room"}


async def read_list(s: AsyncSession, project_id: int, path: Path) -> ListResult:
    """Houses (楼栋 单元 房号) or owners (手机号) from an xlsx list; each bad row is reported with its row
    number (as the spreadsheet shows it) and the reason, and the good rows are kept."""
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise KindError(f"无法读取名单 {path.name}：{type(exc).__name__}") from None
    sheet = wb.active
    result = ListResult()
    rows = sheet.iter_rows(values_only=True) if sheet is not None else iter(())
    header = next(rows, None)
    if header is None:
        raise KindError(f"名单 {path.name} 是空的")
    cols = {HEADERS[str(c).strip()]: i for i, c in enumerate(header) if c is not None and str(c).strip() in HEADERS}
    if "phone" not in cols and not {"building", "unit", "room"} <= set(cols):
        raise KindError("名单需要“楼栋 单元 房号”三列或“手机号”一列")
    h, b, o = t(House), t(Building), t(Owner)
    house_index = {(r.building, r.unit, r.room): r.id for r in (await s.execute(
        sa.select(h.c.id, b.c.name.label("building"), h.c.unit, h.c.room).join(b, b.c.id == h.c.building_id)
        .where(b.c.project_id == project_id))).all()}
    wanted_phones: dict[str, int] = {}
    for number, values in enumerate(rows, start=2):
        if values is None or all(v is None or str(v).strip() == "" for v in values):
            continue
        result.rows += 1

        def cell(name: str, values: Any = values) -> str:
            i = cols.get(name)
            v = values[i] if i is not None and i < len(values) else None
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            return "" if v is None else str(v).strip()

        phone = cell("phone")
        if phone:
            digits = phone.replace(" ", "").replace("-", "")
            if not (digits.isdigit() and len(digits) == 11 and digits.startswith("1")):
                result.errors.append(ListError(number, phone, "手机号格式不正确"))
                continue
            wanted_phones[digits] = number
            continue
        key = (cell("building").removesuffix("栋"), cell("unit").removesuffix("单元"), cell("room"))
        if not all(key):
            result.errors.append(ListError(number, " ".join(key), "缺少楼栋、单元或房号"))
            continue
        house_id = house_index.get(key)
        if house_id is None:
            result.errors.append(ListError(number, f"{key[0]}栋{key[1]}单元{key[2]}", "本项目没有这个房屋"))
            continue
        result.houses.append(house_id)
    if wanted_phones:
        found = {r.phone: r.id for r in (await s.execute(
            sa.select(o.c.id, o.c.phone).where(o.c.phone.in_(list(wanted_phones))))).all()}
        for phone, number in wanted_phones.items():
            if phone in found:
                result.owners.append(found[phone])
            else:
                result.errors.append(ListError(number, phone, "没有这个手机号的业主"))
    result.errors.sort(key=lambda e: e.row)
    wb.close()
    return result


async def project_by_code(s: AsyncSession, code: str) -> Project:
    project = (await s.execute(sa.select(Project).where(sa.or_(Project.code == code, Project.name == code)))
               ).scalars().first()
    if project is None:
        raise KindError(f"没有项目 {code!r}")
    return project
