"""Photos on tickets and paid-repair quotes, from the desk and from the engineer's phone.

* **Photos**: the engineer (or the desk) uploads before/after photos from a phone's camera
  (``POST /console/tickets/{id}/photos``, multipart); they are kept in the ``photo`` table so every web
  process serves them. Owners' WeChat images attached to a ticket (in the repair form or later,
  ``actions.tickets.attach_owner_photo``) are fetched once from WeChat's ``PicUrl`` and cached there too.
* **Quotes**: a paid repair (out of warranty, or a usage problem) gets a price the owner must accept in
  chat before the work starts (``actions/quotes.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from actions import quotes
from actions.workflow import CLOSED, TicketWorkflow, WorkflowError
from bot import events
from bot.console.core import (
    PREFIX,
    Refused,
    Staff,
    audit,
    close_files,
    done,
    form,
    locked_ticket,
    match_id,
    route,
    runtime_of,
    staff_of,
)
from bot.events import EventBatch
from bot.store.models import Message, Photo, Ticket, TicketEvent, utcnow

log = logging.getLogger("yezhu.console.repairs")

MAX_PHOTO = 10 * 1024 * 1024
MAX_PHOTOS = 6
"""Photos per upload (a phone's multi-select)."""
FETCH_TIMEOUT = 8.0
STAGES = {"before": "施工前", "after": "施工后"}
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF8", "image/gif"),
)


def sniff(data: bytes) -> str | None:
    """The image type from the file's first bytes (never from the name or the browser's word)."""
    for magic, kind in SIGNATURES:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def may_work(staff: Staff, t: Ticket) -> bool:
    """The responsible engineer, or the desk and supervisors."""
    return t.assignee_id == staff.id or staff.can("tickets.dispatch")


def gallery(t: Ticket, photos: Iterable[Photo], images: Iterable[Message]) -> list[dict[str, Any]]:
    """Every photo of a ticket, oldest first: the owner's (form, chat) and the engineer's before/after."""
    items: list[dict[str, Any]] = []
    seen: set[int] = set()
    for n, entry in enumerate(t.media or []):
        if not isinstance(entry, dict):
            continue
        mid = entry.get("message_id")
        url = f"{PREFIX}/media/message/{mid}" if mid else f"{PREFIX}/media/ticket/{t.id}/{n}"
        if mid:
            seen.add(int(mid))
        items.append({"url": url, "label": "业主照片", "at": entry.get("at") or ""})
    for m in images:
        if m.id not in seen:
            items.append({"url": f"{PREFIX}/media/message/{m.id}", "label": "业主照片", "at": m.at.isoformat()})
    for p in photos:
        if p.message_id is None:
            items.append({"url": f"{PREFIX}/media/photo/{p.id}", "label": STAGES.get(p.kind, "照片"),
                          "at": p.at.isoformat()})
    return items


async def ticket_gallery(s: AsyncSession, t: Ticket) -> list[dict[str, Any]]:
    photos = (await s.execute(sa.select(Photo).where(Photo.ticket_id == t.id).order_by(Photo.id))).scalars()
    images: list[Message] = []
    if t.conversation_id is not None:  # images the owner sent in the chat the ticket came from, since then
        since = (t.created_at or utcnow()) - dt.timedelta(hours=1)
        until = t.closed_at or utcnow()
        images = list((await s.execute(
            sa.select(Message).where(Message.conversation_id == t.conversation_id, Message.direction == "in",
                                     Message.kind == "image", Message.at >= since, Message.at <= until)
            .order_by(Message.id)
        )).scalars())
    return gallery(t, photos, images)


def _read_photos(data: Any, back: str) -> tuple[list[tuple[bytes, str]], str]:
    stage = str(data.get("stage") or "before")
    if stage not in STAGES:
        raise Refused("请选择施工前或施工后", back=back)
    files = [f for f in data.getall("photo", []) if isinstance(f, web.FileField)]
    if not files:
        raise Refused("请选择照片后上传", back=back)
    if len(files) > MAX_PHOTOS:
        raise Refused(f"一次最多上传{MAX_PHOTOS}张照片", back=back)
    blobs: list[tuple[bytes, str]] = []
    for f in files:
        blob = f.file.read(MAX_PHOTO + 1)
        if len(blob) > MAX_PHOTO:
            raise Refused(f"照片“{f.filename}”超过{MAX_PHOTO // 1024 // 1024}MB，请压缩后再传", status=413, back=back)
        kind = sniff(blob)
        if kind is None:
            raise Refused(f"“{f.filename}”不是照片（支持 JPG、PNG、WEBP、GIF）", status=415, back=back)
        blobs.append((blob, kind))
    return blobs, stage


@route("POST", "/tickets/{id}/photos", "tickets.view")
async def upload_photos(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    ticket_id = match_id(request)
    back = f"{PREFIX}/tickets/{ticket_id}"
    if request.content_type != "multipart/form-data":
        raise Refused("请选择照片后上传", back=back)
    data = await request.post()
    try:
        blobs, stage = _read_photos(data, back)
    finally:
        close_files(data)
    rt = runtime_of(request)
    batch = EventBatch()
    now = utcnow()
    async with rt.db.session() as s, s.begin():
        t = await s.get(Ticket, ticket_id)
        if t is None:
            raise web.HTTPNotFound(text="工单不存在")
        if not may_work(staff, t):
            raise Refused("只有负责该工单的工程师或客服可以上传照片", status=403, back=back)
        if t.status == CLOSED:
            raise Refused("工单已关闭，不能再上传照片", status=409, back=back)
        ids = []
        for blob, kind in blobs:
            photo = Photo(ticket_id=t.id, kind=stage, content_type=kind, data=blob, author=staff.username, at=now)
            s.add(photo)
            await s.flush()
            ids.append(photo.id)
        t.updated_at = now
        s.add(TicketEvent(ticket_id=t.id, kind="photo", actor=staff.username, at=now,
                          data={"kind": stage, "photo_ids": ids, "count": len(ids)}))
        batch.emit(events.TICKET_UPDATED, ticket_id=t.id, number=t.number, kind="photo", status=t.status,
                   assignee_id=t.assignee_id, actor=staff.username)
        audit(s, staff, "ticket.photo", f"ticket:{t.number}", owner_id=t.owner_id, rows=len(ids))
    await batch.publish(rt.services.pubsub)
    return done(request, back, f"已上传{len(ids)}张{STAGES[stage]}照片", photo_ids=ids)


def _image_response(data: bytes, content_type: str) -> web.Response:
    return web.Response(body=data, content_type=content_type,
                        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"})


@route("GET", "/media/photo/{id}", "tickets.view")
async def photo(request: web.Request) -> web.StreamResponse:
    async with runtime_of(request).db.session() as s:
        p = await s.get(Photo, match_id(request))
    if p is None:
        raise web.HTTPNotFound()
    return _image_response(p.data, p.content_type)


async def _fetch(url: str) -> tuple[bytes, str] | None:
    """Download an owner's image from WeChat's ``PicUrl`` (http(s) only, size-capped, sniffed)."""
    if not url.startswith(("http://", "https://")):
        return None
    try:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
            if resp.status != 200:
                return None
            blob = await resp.content.read(MAX_PHOTO + 1)
    except (aiohttp.ClientError, TimeoutError):
        log.warning("could not fetch an owner's image")
        return None
    kind = sniff(blob)
    return (blob, kind) if kind and len(blob) <= MAX_PHOTO else None


@route("GET", "/media/message/{id}", "tickets.view")
async def message_image(request: web.Request) -> web.StreamResponse:
    message_id = match_id(request)
    rt = runtime_of(request)
    async with rt.db.session() as s:
        cached = (await s.execute(sa.select(Photo).where(Photo.message_id == message_id))).scalar_one_or_none()
        if cached is not None:
            return _image_response(cached.data, cached.content_type)
        m = await s.get(Message, message_id)
    if m is None or m.kind != "image" or m.direction != "in":
        raise web.HTTPNotFound()
    got = await _fetch(str((m.media or {}).get("pic_url") or ""))
    if got is None:
        raise web.HTTPNotFound(text="图片暂时无法获取")
    blob, kind = got
    try:
        async with rt.db.session() as s, s.begin():
            s.add(Photo(message_id=m.id, kind="owner", content_type=kind, data=blob, author="owner", at=m.at))
    except sa.exc.IntegrityError:
        pass  # another request cached it first
    return _image_response(blob, kind)


@route("GET", "/media/ticket/{id}/{n}", "tickets.view")
async def ticket_media(request: web.Request) -> web.StreamResponse:
    """A photo the owner sent inside the repair form (kept as WeChat's ``PicUrl`` on the ticket)."""
    n = match_id(request, "n")
    async with runtime_of(request).db.session() as s:
        t = await s.get(Ticket, match_id(request))
    media = (t.media or []) if t is not None else []
    if n >= len(media) or not isinstance(media[n], dict):
        raise web.HTTPNotFound()
    got = await _fetch(str(media[n].get("pic_url") or ""))
    if got is None:
        raise web.HTTPNotFound(text="图片暂时无法获取")
    return _image_response(*got)


@route("POST", "/tickets/{id}/quote", "tickets.view")
async def quote(request: web.Request) -> web.StreamResponse:
    """Put a price on a paid repair; the owner is asked in their chat to accept it."""
    staff = staff_of(request)
    ticket_id = match_id(request)
    back = f"{PREFIX}/tickets/{ticket_id}"
    data = await form(request)
    rt = runtime_of(request)
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        t = await locked_ticket(s, rt, ticket_id)
        if not may_work(staff, t):
            raise Refused("只有负责该工单的工程师或客服可以报价", status=403, back=back)
        try:
            ids = await quotes.propose(s, batch, TicketWorkflow(rt), t, amount=data.get("amount", ""),
                                       items=data.get("items", ""), actor=staff.username)
        except WorkflowError as exc:
            raise Refused(str(exc), status=409, back=back) from None
        audit(s, staff, "ticket.quote", f"ticket:{t.number}", owner_id=t.owner_id, amount=(t.quote or {}).get("amount"))
    await rt.engine.after_commit(batch, ids)
    return done(request, back, "报价已发送给业主，待业主确认后再施工")

