"""群发通知: the console's campaigns — the list, a campaign's live progress and its per-recipient table.

The campaign itself (audience, preview, approval, dispatch) belongs to the campaigns module; this page
only reads ``campaign`` and ``delivery`` rows and calls that module's public functions for actions.
Progress counts deliveries by status (sent, delivered, acknowledged, failed, skipped …); the page
polls ``/console/campaigns/{id}/progress`` while the campaign is sending.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from actions.labels import (
    CAMPAIGN_DELIVERY_LABELS,
    CAMPAIGN_KIND_LABELS,
    CAMPAIGN_STATUS_LABELS,
    CHANNEL_LABELS,
)
from bot import params
from bot.console.core import match_id, page_param, render, route, runtime_of, shown_phone, staff_of
from bot.store.models import Campaign, Delivery, House, Owner, Project, StaffUser

PAGE_SIZE = 100
PROGRESS = ("queued", "sending", "sent", "delivered", "acknowledged", "failed", "skipped")
LIVE = frozenset({"sending", "scheduled"})
"""Statuses whose progress page refreshes itself."""


async def counts(s: AsyncSession, campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per campaign: deliveries by status, plus ``total`` and ``reached`` (sent, delivered or acknowledged)."""
    result: dict[int, dict[str, int]] = {cid: dict.fromkeys((*PROGRESS, "total", "reached"), 0) for cid in campaign_ids}
    if not campaign_ids:
        return result
    rows = (await s.execute(
        sa.select(Delivery.campaign_id, Delivery.status, sa.func.count())
        .where(Delivery.campaign_id.in_(campaign_ids)).group_by(Delivery.campaign_id, Delivery.status)
    )).all()
    for cid, status, n in rows:
        c = result[cid]
        c[status] = c.get(status, 0) + int(n)
        c["total"] += int(n)
        if status in ("sent", "delivered", "acknowledged"):
            c["reached"] += int(n)
    return result


@route("GET", "/campaigns", "campaigns")
async def campaign_list(request: web.Request) -> web.StreamResponse:
    status = request.query.get("status", "")
    if status and status not in CAMPAIGN_STATUS_LABELS:
        raise params.BadParameter("status", "unknown status", "状态参数无效")
    page = page_param(request)
    query = sa.select(Campaign, Project.name).outerjoin(Project, Project.id == Campaign.project_id)
    if status:
        query = query.where(Campaign.status == status)
    async with runtime_of(request).db.session() as s:
        rows = (await s.execute(query.order_by(Campaign.id.desc()).offset((page - 1) * 50).limit(51))).all()
        by_id = await counts(s, [c.id for c, _ in rows[:50]])
    return render(request, "campaigns.html", title="群发通知", page="campaigns", rows=rows[:50], counts=by_id,
                  more=len(rows) > 50, page_no=page, filter_status=status, KINDS=CAMPAIGN_KIND_LABELS,
                  STATUSES=CAMPAIGN_STATUS_LABELS, wizard=_wizard_available())


def _wizard_available() -> bool:
    from bot.console import campaign_wizard

    return campaign_wizard.AVAILABLE


async def _campaign(s: AsyncSession, campaign_id: int) -> tuple[Campaign, str | None]:
    row = (await s.execute(
        sa.select(Campaign, Project.name).outerjoin(Project, Project.id == Campaign.project_id)
        .where(Campaign.id == campaign_id)
    )).first()
    if row is None:
        raise web.HTTPNotFound(text="没有这个群发通知")
    return row[0], row[1]


@route("GET", "/campaigns/{id}", "campaigns")
async def campaign_page(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    campaign_id = match_id(request)
    status = request.query.get("status", "")
    if status and status not in CAMPAIGN_DELIVERY_LABELS:
        raise params.BadParameter("status", "unknown status", "状态参数无效")
    channel = request.query.get("channel", "")
    if channel and channel not in ("wechat", "sms"):
        raise params.BadParameter("channel", "unknown channel", "渠道参数无效")
    page = page_param(request)
    async with runtime_of(request).db.session() as s:
        campaign, project_name = await _campaign(s, campaign_id)
        progress = (await counts(s, [campaign.id]))[campaign.id]
        query = (sa.select(Delivery, Owner.name, House)
                 .outerjoin(Owner, Owner.id == Delivery.owner_id).outerjoin(House, House.id == Delivery.house_id)
                 .where(Delivery.campaign_id == campaign.id))
        if status:
            query = query.where(Delivery.status == status)
        if channel:
            query = query.where(Delivery.channel == channel)
        from sqlalchemy.orm import selectinload

        rows = (await s.execute(query.options(selectinload(House.building)).order_by(Delivery.id)
                                .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1))).all()
    recipients: list[dict[str, Any]] = []
    for d, owner_name, house in rows[:PAGE_SIZE]:
        recipient = shown_phone(staff, d.recipient) if d.channel == "sms" else _mask_openid(d.recipient)
        recipients.append({"d": d, "owner": owner_name or "", "house": house.label if house else "",
                           "recipient": recipient})
    from bot.console import campaign_wizard

    actions = campaign_wizard.actions_for(staff, campaign)
    preview = await campaign_wizard.preview_of(request, campaign)
    return render(request, "campaign.html", title=f"群发通知 · {campaign.name}", page="campaigns", c=campaign,
                  project_name=project_name, progress=progress, recipients=recipients, more=len(rows) > PAGE_SIZE,
                  page_no=page, filter_status=status, channel=channel, KINDS=CAMPAIGN_KIND_LABELS,
                  STATUSES=CAMPAIGN_STATUS_LABELS, DSTATUS=CAMPAIGN_DELIVERY_LABELS, CHANNELS=CHANNEL_LABELS,
                  live=campaign.status in LIVE, actions=actions, preview=preview,
                  staff_phone=await _staff_phone(request, staff.id))


def _mask_openid(value: str | None) -> str:
    return (value[:4] + "***") if value else ""


async def _staff_phone(request: web.Request, staff_id: int) -> str:
    async with runtime_of(request).db.session() as s:
        return str(await s.scalar(sa.select(StaffUser.phone).where(StaffUser.id == staff_id)) or "")


@route("GET", "/campaigns/{id}/progress", "campaigns")
async def campaign_progress(request: web.Request) -> web.StreamResponse:
    campaign_id = match_id(request)
    async with runtime_of(request).db.session() as s:
        campaign, _ = await _campaign(s, campaign_id)
        progress = (await counts(s, [campaign.id]))[campaign.id]
    return web.json_response({"id": campaign.id, "status": campaign.status,
                              "status_text": CAMPAIGN_STATUS_LABELS.get(campaign.status, ""), "counts": progress,
                              "live": campaign.status in LIVE})
