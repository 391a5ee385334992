"""办证签收: the counter's signed collection record of property certificates.

Staff open a batch (or search a house, an owner's name or phone), and for each certificate record who
collected it — the owner, a proxy (代领) with the owner's 委托书 and both ID cards checked, or by mail —
with the logged-in staff member as the one who handed it over. The rules and the register are in
:mod:`actions.collection`; every record and every export is in the audit log.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from actions.collection import (
    Collection,
    CollectionRefused,
    batches,
    record_collection,
    register,
    register_xlsx,
)
from actions.labels import COLLECTOR_RELATION_LABELS
from actions.workflow import CHINA
from bot.console.core import (
    Refused,
    audit,
    console_of,
    done,
    form,
    match_id,
    render,
    route,
    runtime_of,
    staff_of,
)
from bot.console.owners import HOUSE_RE
from bot.store.models import Building, CertificateRecord, House, Owner, OwnerHouse, utcnow

BASE = "/console/certificates"


def _page(batch: str | None, q: str) -> str:
    if q:
        return f"{BASE}?q={quote(q)}"
    return f"{BASE}?batch={quote(batch)}" if batch is not None else BASE


async def _search_houses(s: AsyncSession, q: str) -> list[int]:
    query = sa.select(House.id).join(Building, Building.id == House.building_id)
    if m := HOUSE_RE.match(q):
        building, unit, room = m.groups()
        query = query.where(Building.name == building, House.unit == unit, House.room == room)
    else:
        owners = sa.select(OwnerHouse.house_id).join(Owner, Owner.id == OwnerHouse.owner_id)
        owners = owners.where(Owner.phone.contains(q)) if q.isdigit() else owners.where(Owner.name.contains(q))
        query = query.where(House.id.in_(owners))
    return list((await s.execute(query.limit(200))).scalars())


@route("GET", "/certificates", "certificates")
async def certificates_page(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    batch = request.query.get("batch")
    q = request.query.get("q", "").strip()[:50]
    rows = None
    async with runtime_of(request).db.session() as s, s.begin():
        all_batches = await batches(s)
        if q:
            rows = await register(s, house_ids=await _search_houses(s, q), mask=not staff.can("phones"))
            audit(s, staff, "owner.search", None, query=q, results=len(rows))
        elif batch is not None:
            rows = await register(s, batch=batch, mask=not staff.can("phones"))
    current = next((b for b in all_batches if batch is not None and b["batch"] == batch), None)
    return render(request, "certificates.html", title="办证签收", page="certificates", batches=all_batches,
                  batch=batch, current=current, q=q, rows=rows, RELATIONS=COLLECTOR_RELATION_LABELS,
                  back=_page(batch, q))


@route("POST", "/certificates/{id}/collect", "certificates")
async def collect(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    record_id = match_id(request)
    data = await form(request)
    back = data.get("back", "")
    back = back if back.startswith(BASE) else BASE
    what = Collection(relation=data.get("relation", ""), collector_name=data.get("collector_name", ""),
                      proxy_letter=data.get("proxy_letter") in ("1", "on", "true"),
                      id_checked=data.get("id_checked") in ("1", "on", "true"))
    at = _when(data.get("collected_at", ""), back)
    async with runtime_of(request).db.session() as s, s.begin():
        try:
            record = await record_collection(s, record_id, what, staff=staff.username, at=at)
        except CollectionRefused as exc:
            raise Refused(str(exc), back=back) from None
        house, name, relation = record.house.label, record.collector_name, record.collector_relation
    words = COLLECTOR_RELATION_LABELS.get(relation or "", "")
    return done(request, back, f"已登记：{house} 的证书由{name}（{words}）领取，经办人{staff.display_name}。",
                record_id=record_id)


def _when(value: str, back: str) -> dt.datetime | None:
    """The time typed at the counter (recording a paper signature later), Beijing time; empty = now."""
    value = value.strip()
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Refused("领取时间格式不正确，例如 2026-12-01 10:30", back=back) from None
    when = (when if when.tzinfo else when.replace(tzinfo=CHINA)).astimezone(dt.UTC)
    if when > utcnow() + dt.timedelta(minutes=5):
        raise Refused("领取时间不能晚于现在", back=back)
    return when


@route("GET", "/certificates/register.xlsx", "certificates")
async def register_export(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    batch = request.query.get("batch", "")
    async with runtime_of(request).db.session() as s, s.begin():
        known = await s.scalar(sa.select(sa.func.count()).select_from(CertificateRecord)
                               .where(CertificateRecord.batch == batch))
        if not known:
            raise web.HTTPNotFound(text="没有这个批次")
        rows = await register(s, batch=batch)
        audit(s, staff, "certificate.register", f"batch:{batch}", rows=len(rows))
    body = register_xlsx(rows, title=batch, names=console_of(request).names)
    name = quote(f"签收登记表-{batch}.xlsx")
    return web.Response(body=body, headers={
        "Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "Content-Disposition": f"attachment; filename=\"register.xlsx\"; filename*=UTF-8''{name}",
    })
