"""The knowledge base (知识库): browse, add and edit entries; turn unanswered questions into entries.

Edits take effect for the bot at once: after the commit this process reloads ``runtime.knowledge``
(when the knowledge issue has built it) and publishes ``knowledge.changed`` so every other web and
worker process reloads too (the console's event hub does that on receipt).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from bot import events
from bot.console.core import (
    PREFIX,
    Refused,
    Staff,
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
from bot.console.live import reload_knowledge
from bot.events import EventBatch
from bot.store.models import KnowledgeEntry, UnansweredQuestion, utcnow

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.replace("\r\n", "\n").split("\n") if line.strip()]


def _words(value: str) -> list[str]:
    return [w for w in re.split(r"[,，、\s]+", value) if w]


def _validated(data: dict[str, str], projects: dict[str, str] | None = None) -> dict[str, Any]:
    """The form's values; projects may be given by name (shown) or code (stored)."""
    by_name = {name: code for code, name in (projects or {}).items()}
    question, answer = data.get("question", "").strip(), data.get("answer", "").strip()
    if not question or len(question) > 200:
        raise Refused("请填写标准问题（200字以内）")
    if not answer or len(answer) > 4000:
        raise Refused("请填写答案（4000字以内）")
    return {
        "question": question, "answer": answer, "alternatives": _lines(data.get("alternatives", ""))[:100],
        "tags": _words(data.get("tags", ""))[:20], "projects": [by_name.get(w, w) for w in _words(data.get("projects", ""))][:20],
    }


async def _changed(request: web.Request, slug: str, change: str) -> None:
    """After the commit: reload here, and tell the other processes."""
    rt = runtime_of(request)
    await reload_knowledge(rt)
    batch = EventBatch()
    batch.emit(events.KNOWLEDGE_CHANGED, slug=slug, change=change, origin=console_of(request).hub.origin)
    await batch.publish(rt.services.pubsub)


@route("GET", "/knowledge", "knowledge")
async def entries(request: web.Request) -> web.StreamResponse:
    q = request.query.get("q", "").strip()[:50]
    query = sa.select(KnowledgeEntry).order_by(KnowledgeEntry.slug)
    if q:
        like = f"%{q}%"
        query = query.where(sa.or_(KnowledgeEntry.question.like(like), KnowledgeEntry.answer.like(like),
                                   KnowledgeEntry.slug.like(like)))
    async with runtime_of(request).db.session() as s:
        rows = list((await s.execute(query.limit(500))).scalars())
        open_questions = int((await s.execute(
            sa.select(sa.func.count()).select_from(UnansweredQuestion).where(UnansweredQuestion.resolved.is_(False))
        )).scalar_one())
    return render(request, "knowledge.html", title="知识库", page="knowledge", entries=rows, q=q,
                  open_questions=open_questions,
                  live=getattr(runtime_of(request), "knowledge", None) is not None)


@route("GET", "/knowledge/new", "knowledge")
async def new_entry(request: web.Request) -> web.StreamResponse:
    return render(request, "knowledge_edit.html", title="新增词条", page="knowledge", entry=None,
                  prefill={"question": request.query.get("question", "")[:200]})


@route("GET", "/knowledge/{id}", "knowledge")
async def edit_entry(request: web.Request) -> web.StreamResponse:
    async with runtime_of(request).db.session() as s:
        entry = await s.get(KnowledgeEntry, match_id(request))
    if entry is None:
        raise web.HTTPNotFound(text="词条不存在")
    return render(request, "knowledge_edit.html", title="编辑词条", page="knowledge", entry=entry,
                  prefill={})


async def _unique_slug(s: Any, wanted: str) -> str:
    slug = wanted.strip().lower()
    if slug:
        if not SLUG_RE.match(slug):
            raise Refused("词条编号只能使用小写字母、数字、- 和 _（例如 fee-payment）")
        if (await s.execute(sa.select(KnowledgeEntry.id).where(KnowledgeEntry.slug == slug))).first():
            raise Refused(f"词条编号 {slug} 已存在")
        return slug
    while True:
        slug = f"kb-{secrets.token_hex(3)}"
        if not (await s.execute(sa.select(KnowledgeEntry.id).where(KnowledgeEntry.slug == slug))).first():
            return slug


async def create(s: Any, staff: Staff, data: dict[str, str], projects: dict[str, str] | None = None) -> KnowledgeEntry:
    values = _validated(data, projects)
    entry = KnowledgeEntry(slug=await _unique_slug(s, data.get("slug", "")), updated_by=staff.username,
                           updated_at=utcnow(), **values)
    s.add(entry)
    await s.flush()
    audit(s, staff, "knowledge.create", f"knowledge:{entry.slug}")
    return entry


@route("POST", "/knowledge", "knowledge")
async def create_entry(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    async with runtime_of(request).db.session() as s, s.begin():
        entry = await create(s, staff_of(request), data, console_of(request).projects)
    await _changed(request, entry.slug, "created")
    return done(request, f"{PREFIX}/knowledge/{entry.id}", "词条已保存，机器人已即时生效", id=entry.id, slug=entry.slug)


@route("POST", "/knowledge/{id}", "knowledge")
async def update_entry(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    async with runtime_of(request).db.session() as s, s.begin():
        entry = await s.get(KnowledgeEntry, match_id(request))
        if entry is None:
            raise web.HTTPNotFound(text="词条不存在")
        values = _validated(data, console_of(request).projects)
        before = {k: getattr(entry, k) for k in values}
        for k, v in values.items():
            setattr(entry, k, v)
        entry.updated_by, entry.updated_at = staff_of(request).username, utcnow()
        audit(s, staff_of(request), "knowledge.update", f"knowledge:{entry.slug}",
              changed=[k for k, v in values.items() if before[k] != v])
    await _changed(request, entry.slug, "updated")
    return done(request, f"{PREFIX}/knowledge/{entry.id}", "词条已更新，机器人已即时生效")


@route("POST", "/knowledge/{id}/delete", "knowledge.delete")
async def delete_entry(request: web.Request) -> web.StreamResponse:
    async with runtime_of(request).db.session() as s, s.begin():
        entry = await s.get(KnowledgeEntry, match_id(request))
        if entry is None:
            raise web.HTTPNotFound(text="词条不存在")
        slug = entry.slug
        await s.delete(entry)
        audit(s, staff_of(request), "knowledge.delete", f"knowledge:{slug}", question=entry.question)
    await _changed(request, slug, "deleted")
    return done(request, f"{PREFIX}/knowledge", f"词条 {slug} 已删除")


# --- unanswered questions -----------------------------------------------------------------------


@route("GET", "/knowledge-unanswered", "knowledge")
async def unanswered(request: web.Request) -> web.StreamResponse:
    show_all = request.query.get("all") == "1"
    query = sa.select(UnansweredQuestion).order_by(UnansweredQuestion.id.desc()).limit(200)
    if not show_all:
        query = query.where(UnansweredQuestion.resolved.is_(False))
    async with runtime_of(request).db.session() as s:
        rows = list((await s.execute(query)).scalars())
        slugs = list((await s.execute(sa.select(KnowledgeEntry.slug, KnowledgeEntry.question)
                                      .order_by(KnowledgeEntry.slug))).all())
    return render(request, "unanswered.html", title="未答问题", page="knowledge", rows=rows, show_all=show_all,
                  slugs=slugs)


@route("POST", "/knowledge-unanswered/{id}/entry", "knowledge")
async def unanswered_to_entry(request: web.Request) -> web.StreamResponse:
    """One step: a new entry (or a new phrasing of an existing one) from an unanswered question."""
    staff = staff_of(request)
    data = await form(request)
    async with runtime_of(request).db.session() as s, s.begin():
        question = await s.get(UnansweredQuestion, match_id(request))
        if question is None:
            raise web.HTTPNotFound(text="问题不存在")
        if question.resolved:
            raise Refused("该问题已处理", status=409)
        attach = data.get("attach_to", "").strip()
        if attach:
            entry = (await s.execute(sa.select(KnowledgeEntry).where(KnowledgeEntry.slug == attach))).scalar_one_or_none()
            if entry is None:
                raise Refused("所选词条不存在")
            if question.text not in entry.alternatives:
                entry.alternatives = [*entry.alternatives, question.text.strip()[:200]]
            entry.updated_by, entry.updated_at = staff.username, utcnow()
            audit(s, staff, "knowledge.add_alternative", f"knowledge:{entry.slug}", unanswered_id=question.id)
            change = "updated"
        else:
            if not data.get("question", "").strip():
                data["question"] = question.text
            entry = await create(s, staff, data, console_of(request).projects)
            change = "created"
        question.resolved, question.entry_slug = True, entry.slug
    await _changed(request, entry.slug, change)
    return done(request, f"{PREFIX}/knowledge-unanswered", f"已生成词条 {entry.slug}，机器人已即时生效",
                slug=entry.slug, id=entry.id)


@route("POST", "/knowledge-unanswered/{id}/dismiss", "knowledge")
async def dismiss(request: web.Request) -> web.StreamResponse:
    async with runtime_of(request).db.session() as s, s.begin():
        question = await s.get(UnansweredQuestion, match_id(request))
        if question is None:
            raise web.HTTPNotFound(text="问题不存在")
        question.resolved = True
        audit(s, staff_of(request), "knowledge.dismiss_unanswered", f"unanswered:{question.id}")
    return done(request, f"{PREFIX}/knowledge-unanswered", "已忽略")
