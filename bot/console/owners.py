"""Owners (业主): search by name, phone or house, and a profile with everything the desk knows.

Every search and every profile view is written to the audit log (DOMAIN.md: every staff action on
owner data is logged). Engineers have no owner search: they see owners only through their tickets.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.orm import selectinload

from actions import optout
from actions.labels import CERT_LABELS, CHANNEL_LABELS
from actions.workflow import is_overdue
from bot.console.core import audit, match_id, render, route, runtime_of, shown_phone, staff_of
from bot.store.models import (
    Building,
    CertificateRecord,
    Conversation,
    House,
    Identity,
    Owner,
    OwnerHouse,
    SmsMessage,
    Ticket,
    utcnow,
)

HOUSE_RE = re.compile(r"^\s*([0-9A-Za-z]+)\s*(?:栋|幢|号楼|座|-|/|\s)\s*([0-9]+)\s*(?:单元|-|/|\s)\s*([0-9]+)\s*室?\s*$")



@route("GET", "/owners", "owners")
async def owner_search(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    q = request.query.get("q", "").strip()[:50]
    results: list[dict[str, object]] = []
    if q:
        query = (sa.select(Owner).options(selectinload(Owner.houses).selectinload(OwnerHouse.house)
                                          .selectinload(House.building)).limit(50))
        if m := HOUSE_RE.match(q):
            building, unit, room = m.groups()
            query = (query.join(OwnerHouse, OwnerHouse.owner_id == Owner.id).join(House, House.id == OwnerHouse.house_id)
                     .join(Building, Building.id == House.building_id)
                     .where(Building.name == building, House.unit == unit, House.room == room))
        elif q.isdigit():
            query = query.where(Owner.phone.contains(q))
        else:
            query = query.where(Owner.name.contains(q))
        async with runtime_of(request).db.session() as s, s.begin():
            owners = list((await s.execute(query.order_by(Owner.id))).scalars().unique())
            audit(s, staff, "owner.search", None, query=q, results=len(owners))
        results = [{"o": o, "phone": shown_phone(staff, o.phone), "houses": [oh.house.label for oh in o.houses]}
                   for o in owners]
    return render(request, "owners.html", title="业主", page="owners", q=q, results=results)


@route("GET", "/owners/{id}", "owners")
async def owner_profile(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    owner_id = match_id(request)
    async with runtime_of(request).db.session() as s, s.begin():
        owner = (await s.execute(
            sa.select(Owner).where(Owner.id == owner_id).options(
                selectinload(Owner.houses).selectinload(OwnerHouse.house).selectinload(House.building)
                .selectinload(Building.project))
        )).scalar_one_or_none()
        if owner is None:
            raise web.HTTPNotFound(text="业主不存在")
        houses = [oh.house for oh in owner.houses]
        identities = list((await s.execute(sa.select(Identity).where(Identity.owner_id == owner.id))).scalars())
        conversations = list((await s.execute(
            sa.select(Conversation).where(Conversation.owner_id == owner.id).order_by(Conversation.id.desc()).limit(30)
        )).scalars())
        tickets = list((await s.execute(
            sa.select(Ticket).options(selectinload(Ticket.assignee)).where(Ticket.owner_id == owner.id)
            .order_by(Ticket.id.desc()).limit(50)
        )).scalars())
        certs = list((await s.execute(
            sa.select(CertificateRecord).options(selectinload(CertificateRecord.house).selectinload(House.building))
            .where(CertificateRecord.house_id.in_([h.id for h in houses]))
        )).scalars()) if houses else []
        consent = await optout.history(s, phone=owner.phone, owner_id=owner.id)
        sms = list((await s.execute(
            sa.select(SmsMessage).where(SmsMessage.phone == owner.phone).order_by(SmsMessage.id.desc()).limit(20)
        )).scalars())
        audit(s, staff, "owner.view", f"owner:{owner.id}")
    return render(
        request, "owner.html", title=f"业主 · {owner.name}", page="owner", owner=owner,
        phone=shown_phone(staff, owner.phone), houses=houses, identities=identities, conversations=conversations,
        tickets=tickets, certs=certs, CERT_LABELS=CERT_LABELS, CHANNEL_LABELS=CHANNEL_LABELS,
        is_overdue=is_overdue, now=utcnow(), consent=consent, sms=sms, SMS_STATUS=SMS_STATUS_LABELS,
    )


SMS_STATUS_LABELS = {"queued": "待发送", "deferred": "顺延", "sending": "发送中", "sent": "已发送", "delivered": "已送达",
                     "failed": "失败", "skipped": "未发送", "unknown": "结果待确认", "received": "收到"}
