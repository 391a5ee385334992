"""The seven campaign kinds: text template, audience rule, channels and urgency, per project configurable.

Each kind is a :class:`KindSpec` here (the defaults), overridden by the YAML config's ``campaigns:``
section (``kinds.<kind>``, then ``projects.<code>.<kind>``). The owner-facing text uses the same
``${name}`` parameters as the kind's SMS template (``sms.templates``) and WeChat template
(``wechat_templates``), which are what the providers actually carry; the per-owner names are filled at
send time:

* ``${name}`` the owner's name, ``${house}`` their house (``3栋2单元501``, ``…等2套`` for several),
  ``${project}`` the project's name;
* certificate collection: ``${place}``/``${hours}`` are the owner's own certificate record's
  ``collect_place``/``collect_hours`` when set, else the campaign's params (shared contract).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from channels.sms.base import CHINA, PLACEHOLDER

KINDS: tuple[str, ...] = ("certificate_collection", "handover", "outage", "construction_progress",
                          "warranty_expiry", "survey", "notice")
CHANNELS: tuple[str, ...] = ("wechat", "sms")
UTILITIES = {"water": "水", "power": "电", "gas": "燃气"}


class KindError(ValueError):
    """A campaign that cannot be made as asked (unknown kind, a missing or bad param): one clear line."""


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: str
    label: str
    """The kind in Chinese (console, CLI, audit)."""
    text: str
    """The owner-facing text with ``${names}``."""
    channels: tuple[str, ...] = CHANNELS
    both: bool = False
    """Send WeChat *and* SMS to each owner (else SMS only where WeChat cannot reach them)."""
    urgent: bool = False
    required: tuple[str, ...] = ()
    """Params the campaign must carry (after the config's defaults)."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Default params (the config's ``params`` add to and override these)."""
    audience: Mapping[str, Any] = field(default_factory=dict)
    """The kind's own audience rule, merged under the campaign's (e.g. ``stage: 准业主``)."""
    sms_template: str = ""
    wechat_template: str = ""

    def template_kind(self, channel: str) -> str:
        return (self.wechat_template if channel == "wechat" else self.sms_template) or self.kind


DEFAULTS: dict[str, KindSpec] = {
    "certificate_collection": KindSpec(
        "certificate_collection", "办证通知",
        "尊敬的${name}，您${house}的不动产权证书已可领取。领取地点：${place}；领取时间：${hours}；"
        "请携带：${documents}。${proxy}。${mail}回复“收到”确认，如有疑问请直接回复。",
        required=("place", "hours"), audience={"certificate": "ready"},
        params={"documents": "业主本人身份证原件、购房合同", "proxy": "", "mail": ""},
    ),
    "handover": KindSpec(
        "handover", "交付通知",
        "尊敬的${name}，${project}${house}将于${date}交付，请携带购房合同、身份证原件到${place}办理收房手续。",
        required=("date", "place"), audience={"stage": "准业主"},
    ),
    "outage": KindSpec(
        "outage", "停水停电停气通知",
        "${project}通知：因${reason}，${area}将于${time}停${what}，请提前做好准备，给您带来不便敬请谅解。",
        required=("utility", "start", "area"),
    ),
    "construction_progress": KindSpec(
        "construction_progress", "工程进展",
        "${project}${month}工程进展：${content}${photos}", channels=("wechat",),
        required=("content",), audience={"stage": "准业主"},
    ),
    "warranty_expiry": KindSpec(
        "warranty_expiry", "保修到期提醒",
        "尊敬的${name}，您${house}的${item}保修期将于${date}到期，如发现相关问题，请于到期前报修。",
        required=("item",),
    ),
    "survey": KindSpec(
        "survey", "满意度调查邀请",
        "${project}诚邀您参加${survey}，只有几道题，约需2分钟，直接回复即可作答。", required=("template",),
    ),
    "notice": KindSpec("notice", "通知", "${project}通知：${content}", required=("content",)),
}


def spec_for(kind: str, config: Mapping[str, Any], project_code: str | None, *, urgent: bool = False) -> KindSpec:
    """The kind's spec after the YAML config (``kinds.<kind>``, then ``projects.<code>.<kind>``).

    An urgent outage (a sudden cut) is sent on both channels, at any hour, to opted-out owners too: it is
    safety information (DOMAIN.md), through the ``outage_urgent`` templates."""
    if kind not in DEFAULTS:
        raise KindError(f"未知的通知类型 {kind!r}（可选：{', '.join(KINDS)}）")
    spec = DEFAULTS[kind]
    layers = [((config.get("kinds") or {}).get(kind) or {})]
    if project_code:
        layers.append((((config.get("projects") or {}).get(project_code) or {}).get(kind)) or {})
    for layer in layers:
        if not isinstance(layer, Mapping):
            raise KindError(f"campaigns 配置中 {kind} 必须是映射")
        changes: dict[str, Any] = {}
        for key in ("text", "label", "sms_template", "wechat_template"):
            if key in layer:
                changes[key] = str(layer[key])
        for key in ("both", "urgent"):
            if key in layer:
                changes[key] = bool(layer[key])
        if "channels" in layer:
            changes["channels"] = tuple(c for c in layer["channels"] if c in CHANNELS)
        if "params" in layer:
            changes["params"] = {**spec.params, **dict(layer["params"] or {})}
        if "audience" in layer:
            changes["audience"] = {**spec.audience, **dict(layer["audience"] or {})}
        spec = replace(spec, **changes)
    if kind == "outage" and urgent:
        # a sudden cut has started: no start time is needed, only when it should be back (end)
        spec = replace(spec, both=True, urgent=True, required=("utility", "area"),
                       sms_template=spec.sms_template or "outage_urgent",
                       wechat_template=spec.wechat_template or "outage_urgent",
                       text="${project}紧急通知：因${reason}，${area}现停${what}，预计${time}恢复，请做好准备。")
    return spec


def fmt_time(value: str) -> str:
    """``2026-12-03T09:00`` → ``12月3日 09:00`` (Beijing time; a value that is not ISO 8601 is kept)."""
    try:
        t = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return str(value)
    if t.tzinfo is not None:
        t = t.astimezone(CHINA)
    return f"{t.month}月{t.day}日 {t:%H:%M}"


def campaign_params(spec: KindSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """The campaign's params: the kind's defaults, then what staff gave; the required ones checked."""
    params = {**dict(spec.params), **{k: v for k, v in given.items() if v is not None}}
    missing = [k for k in spec.required if params.get(k) in (None, "")]
    if missing:
        raise KindError(f"{spec.label}缺少参数：{', '.join(missing)}（用 --param 名称=值 给出）")
    if spec.kind == "outage":
        if params["utility"] not in UTILITIES:
            raise KindError("utility 只能是 water、power 或 gas")
        for key in ("start", "end"):
            if params.get(key):
                try:
                    dt.datetime.fromisoformat(str(params[key]))
                except ValueError:
                    raise KindError(f"{key} 必须是 ISO 8601 时间，例如 2026-12-03T09:00") from None
        if params.get("start") and params.get("end"):
            start, end = (dt.datetime.fromisoformat(str(params[k])) for k in ("start", "end"))
            if (start.tzinfo is None) == (end.tzinfo is None) and end <= start:
                raise KindError(f"恢复时间 end（{params['end']}）须晚于开始时间 start（{params['start']}）")
    if spec.kind == "construction_progress" and isinstance(params.get("photos"), str):
        params["photos"] = [u.strip() for u in params["photos"].split(",") if u.strip()]
    return params


def values(spec: KindSpec, params: Mapping[str, Any], project_name: str, extra: Mapping[str, Any] | None = None
           ) -> dict[str, str]:
    """Every ``${name}`` the kind's texts use, from the campaign's params (per-owner values in ``extra``)."""
    v: dict[str, str] = {k: str(x) for k, x in params.items() if not isinstance(x, list | dict)}
    v["project"] = project_name
    if spec.kind == "outage":
        v["what"] = UTILITIES.get(str(params.get("utility")), str(params.get("utility", "")))
        start, end = str(params.get("start") or ""), str(params.get("end") or "")
        v["time"] = fmt_time(start) + (f"至{fmt_time(end)}" if end and not spec.urgent else "")
        if spec.urgent:
            v["time"] = fmt_time(end) if end else "尽快"
        v.setdefault("reason", "设备检修")
    if spec.kind == "construction_progress":
        photos = params.get("photos") or []
        v["photos"] = ("（现场照片：" + " ".join(photos) + "）") if photos else ""
        v.setdefault("month", f"{dt.datetime.now(CHINA).month}月")
    if spec.kind == "certificate_collection":
        for key in ("proxy", "mail"):
            v[key] = str(params.get(key) or "").rstrip("。")
        v["proxy"] = v["proxy"] or "如需他人代领请携带委托书"
        v["mail"] = (v["mail"] + "。") if v["mail"] else ""
    if spec.kind == "warranty_expiry":
        v["item"] = str(params.get("item_label") or params.get("item") or "")
        v.setdefault("date", "")
    if spec.kind == "notice":
        v.setdefault("title", "通知")
    v.update({k: str(x) for k, x in (extra or {}).items() if x is not None})
    return v


def fill(text: str, v: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: v.get(m.group(1), ""), text)
