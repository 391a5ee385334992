"""JSON API for SMS (bearer token, like ``bot/api.py``): ``GET /api/v1/sms?phone=…`` lists every SMS to and
from a phone; ``GET /api/v1/owners?phone=…`` the owners with houses, bindings, ``sms_opt_out`` and the
consent history."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.orm import selectinload

from actions import optout
from bot.api import house_label, iso
from bot.runtime import RUNTIME
from bot.store.models import Building, House, Identity, Owner, OwnerHouse, SmsMessage
from channels.sms.base import cn_mobile

routes = web.RouteTableDef()
MAX_ROWS = 500


def _phone(request: web.Request) -> str:
    raw = request.query.get("phone", "").strip()
    phone = cn_mobile(raw)
    if not phone.isdigit() or not 5 <= len(phone) <= 20:
        raise web.HTTPBadRequest(text='{"error": "phone", "detail": "?phone= must be a phone number"}',
                                 content_type="application/json")
    return phone


def sms_json(m: SmsMessage) -> dict[str, Any]:
    return {
        "id": m.id, "direction": m.direction, "phone": m.phone, "kind": m.kind, "provider": m.provider,
        "template": m.template_code, "params": m.params, "text": m.text, "segments": m.segments,
        "status": m.status, "urgent": m.urgent, "provider_id": m.provider_id, "out_id": m.out_id,
        "error_code": m.error_code, "error": m.error, "attempts": m.attempts, "not_before": iso(m.not_before),
        "conversation_id": m.conversation_id, "created_at": iso(m.created_at), "sent_at": iso(m.sent_at),
        "delivered_at": iso(m.delivered_at),
    }


@routes.get("/api/v1/sms")
async def list_sms(request: web.Request) -> web.Response:
    phone = _phone(request)
    async with request.app[RUNTIME].db.session() as s:
        rows = (await s.execute(
            sa.select(SmsMessage).where(SmsMessage.phone == phone).order_by(SmsMessage.id.desc()).limit(MAX_ROWS)
        )).scalars().all()
    return web.json_response({"phone": phone, "sms": [sms_json(m) for m in rows]})


@routes.get("/api/v1/owners")
async def list_owners(request: web.Request) -> web.Response:
    phone = _phone(request)
    async with request.app[RUNTIME].db.session() as s:
        owners = (await s.execute(
            sa.select(Owner).where(Owner.phone == phone).options(
                selectinload(Owner.houses).selectinload(OwnerHouse.house).selectinload(House.building)
                .selectinload(Building.project))
        )).scalars().all()
        out = []
        for o in owners:
            identities = (await s.execute(sa.select(Identity).where(Identity.owner_id == o.id))).scalars().all()
            history = await optout.history(s, phone=o.phone, owner_id=o.id)
            out.append({
                "id": o.id, "name": o.name, "phone": o.phone,
                "houses": [house_label(oh.house) for oh in o.houses],
                "bindings": [{"channel": i.channel, "account": i.account, "external_id": i.external_id,
                              "bound_at": iso(i.bound_at)} for i in identities],
                "consent_service": o.consent_service, "consent_marketing": o.consent_marketing,
                "sms_opt_out": o.sms_opt_out,
                "sms_consent_history": [{"action": h.action, "source": h.source, "text": h.text, "at": iso(h.at)}
                                        for h in history],
            })
    return web.json_response({"phone": phone, "owners": out})
