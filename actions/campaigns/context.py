"""What every step of a campaign needs to know about it: its kind's spec, project, templates and rules,
and how one owner's message is rendered on each channel."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from actions.campaigns.kinds import KindSpec, fill, spec_for, values
from bot.settings import Settings, SmsTemplate, WeChatTemplate
from bot.store.models import Campaign, Project
from channels.sms.base import PLACEHOLDER, TEXT_MAX, render

OPT_OUT_APPLIES = frozenset({"notice", "marketing"})


@dataclass(frozen=True, slots=True)
class Ctx:
    campaign_id: int
    spec: KindSpec
    project_id: int | None
    project_code: str | None
    project_name: str
    project_settings: Mapping[str, Any]
    params: Mapping[str, Any]
    channels: tuple[str, ...]
    both: bool
    urgent: bool
    account: str
    """The WeChat account whose followers get template messages (the project's, else ``default``)."""
    wechat: WeChatTemplate | None
    sms: SmsTemplate | None
    sms_code: str | None
    sms_sign: str
    sms_price: Decimal
    sms_window: str

    @property
    def can_wechat(self) -> bool:
        return "wechat" in self.channels and self.wechat is not None

    @property
    def can_sms(self) -> bool:
        return "sms" in self.channels and self.sms_code is not None

    @property
    def sms_category(self) -> str:
        if self.urgent:
            return "emergency"
        return self.sms.category if self.sms is not None else "notice"

    @property
    def opt_out_applies(self) -> bool:
        return self.sms_category in OPT_OUT_APPLIES

    @property
    def needs_consent(self) -> bool:
        return self.sms_category == "marketing"

    @property
    def quiet_hours_apply(self) -> bool:
        return self.sms_category in OPT_OUT_APPLIES

    # --- rendering -------------------------------------------------------------------------------

    def values(self, owner: Mapping[str, Any] | None = None) -> dict[str, str]:
        """The ``${names}`` for one owner (``name``, ``house``, ``place``/``hours`` of their record)."""
        extra: dict[str, Any] = {}
        if owner is not None:
            extra["name"] = owner.get("name") or "业主"
            extra["house"] = owner.get("house") or ""
            if self.spec.kind == "certificate_collection":
                if owner.get("place"):
                    extra["place"] = owner["place"]
                if owner.get("hours"):
                    extra["hours"] = owner["hours"]
        else:
            extra = {"name": "业主", "house": "X栋X单元XXX"}
        return values(self.spec, self.params, self.project_name, extra)

    def text(self, owner: Mapping[str, Any] | None = None) -> str:
        """The owner-facing text (what the console shows and a WeChat delivery records)."""
        return fill(self.spec.text, self.values(owner))

    def wechat_data(self, owner: Mapping[str, Any] | None, client_msg_id: str | None = None) -> dict[str, Any]:
        """The template message: ``template_id``, ``fields`` (each value within WeChat's limit), ``url``."""
        assert self.wechat is not None
        v = self.values(owner)
        fields = {}
        for name, pattern in self.wechat.fields.items():
            value = " ".join(PLACEHOLDER.sub(lambda m: v.get(m.group(1), ""), pattern).split())
            limit = self.wechat.value_max
            fields[name] = value if len(value) <= limit else value[: limit - 1] + "…"
        data: dict[str, Any] = {"template_id": self.wechat.template_id, "fields": fields}
        url = self.params.get("url") or self.wechat.url
        if url:
            data["url"] = str(url)
        if client_msg_id:
            data["client_msg_id"] = client_msg_id
        return data

    def sms_params(self, owner: Mapping[str, Any] | None) -> dict[str, str]:
        assert self.sms is not None
        v = self.values(owner)
        limit = self.sms.param_max
        out = {}
        for name in self.sms.params:
            value = " ".join(str(v.get(name, "")).split())
            out[name] = value if len(value) <= limit else value[: limit - 1] + "…"
        return out

    def sms_text(self, owner: Mapping[str, Any] | None) -> str:
        assert self.sms is not None
        return render(self.sms.text, self.sms_params(owner), self.sms_sign)[:TEXT_MAX]


async def context(s: AsyncSession, settings: Settings, campaign: Campaign) -> Ctx:
    project = await s.get(Project, campaign.project_id) if campaign.project_id is not None else None
    psettings = dict(project.settings or {}) if project is not None else {}
    spec = spec_for(campaign.kind, settings.campaigns_config, project.code if project else None,
                    urgent=campaign.urgent)
    channels = tuple(c for c in (campaign.channels or spec.channels) if c in ("wechat", "sms"))
    account = "default"
    for name, acc in settings.wechat_accounts.items():
        if project is not None and acc.project == project.code:
            account = name
            break
    # An account without AppID/AppSecret (the embedded demo) can never send a template message: its
    # followers are reached by SMS instead, and the preview says so, rather than every delivery failing.
    chosen = settings.wechat_accounts.get(account)
    wechat_ready = chosen is not None and bool(chosen.app_id and chosen.app_secret.get_secret_value())
    sms = settings.sms_templates.get(spec.template_kind("sms"))
    price = settings.sms_price
    if psettings.get("sms_price") not in (None, ""):
        try:
            price = Decimal(str(psettings["sms_price"]))
        except ArithmeticError:
            pass
    window = (sms.window if sms is not None and sms.window else None) or str(
        (psettings.get("sms_windows") or {}).get(sms.kind if sms else "", "") or psettings.get("sms_window")
        or settings.sms_window)
    return Ctx(
        campaign_id=campaign.id, spec=spec, project_id=campaign.project_id,
        project_code=project.code if project else None, project_name=project.name if project else "",
        project_settings=psettings, params=dict(campaign.params or {}), channels=channels,
        both=spec.both or bool((campaign.params or {}).get("both")), urgent=campaign.urgent or spec.urgent,
        account=account,
        wechat=settings.wechat_templates.get(spec.template_kind("wechat")) if wechat_ready else None,
        sms=sms, sms_code=sms.code_for(settings.sms_provider) if sms is not None else None,
        sms_sign=str(psettings.get("sms_sign") or settings.sms_sign_name), sms_price=price, sms_window=window,
    )


def today_china(now: dt.datetime | None = None) -> dt.date:
    from channels.sms.base import CHINA

    return (now or dt.datetime.now(dt.UTC)).astimezone(CHINA).date()
