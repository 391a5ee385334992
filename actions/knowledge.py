"""The knowledge base as the bot uses it: entries in the database, an in-memory index rebuilt on change.

The YAML format, retrieval and confidence live in ``knowledge/``; this module keeps the database
(``knowledge_entry``) and the index in step: ``import_items`` upserts by slug, ``reload`` rebuilds the
index (the console calls it after an edit, so edits take effect for the bot at once).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.db import Database
from bot.store.models import KnowledgeEntry, UnansweredQuestion, utcnow
from knowledge.retrieval import Answer, KnowledgeIndex
from knowledge.schema import KnowledgeItem, load_synonyms, load_yaml

log = logging.getLogger("yezhu.knowledge")

DATA = Path(__file__).resolve().parent.parent / "knowledge" / "data"
DEMO_KB = DATA / "demo.yml"
SYNONYMS = DATA / "synonyms.yml"


def item_of(row: KnowledgeEntry) -> KnowledgeItem:
    return KnowledgeItem(id=row.slug, question=row.question, alternatives=tuple(row.alternatives or ()),
                         answer=row.answer, tags=tuple(row.tags or ()), projects=tuple(row.projects or ()))


async def import_items(
    s: AsyncSession, items: list[KnowledgeItem], *, actor: str = "import", update: bool = True
) -> tuple[int, int]:
    """Upsert entries by slug (``update=False``: only add missing ones); returns (created, updated)."""
    existing = {e.slug: e for e in (await s.execute(sa.select(KnowledgeEntry))).scalars()}
    created = updated = 0
    for item in items:
        values = {"question": item.question, "alternatives": list(item.alternatives), "answer": item.answer,
                  "tags": list(item.tags), "projects": list(item.projects)}
        row = existing.get(item.id)
        if row is None:
            s.add(KnowledgeEntry(slug=item.id, updated_by=actor, updated_at=utcnow(), **values))
            created += 1
        elif update and any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_by, row.updated_at = actor, utcnow()
            updated += 1
    return created, updated


async def export_items(s: AsyncSession) -> list[KnowledgeItem]:
    rows = (await s.execute(sa.select(KnowledgeEntry).order_by(KnowledgeEntry.id))).scalars()
    return [item_of(r) for r in rows]


class KnowledgeService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.synonyms = load_synonyms(SYNONYMS) if SYNONYMS.exists() else []
        self.index: KnowledgeIndex | None = None
        self._lock = asyncio.Lock()

    async def reload(self) -> int:
        async with self._lock:
            async with self.db.session() as s:
                items = await export_items(s)
            # The first build tokenises every phrasing (seconds for thousands of entries): keep it off
            # the event loop so webhooks are answered meanwhile.
            self.index = await asyncio.to_thread(KnowledgeIndex.build, items, self.synonyms)
            log.info("knowledge index built with %d entries", len(items))
            return len(items)

    async def ensure(self) -> KnowledgeIndex:
        if self.index is None:
            await self.reload()
        assert self.index is not None
        return self.index

    async def answer(self, text: str, project: str | None) -> Answer:
        index = await self.ensure()
        return index.answer(text, project)

    async def get(self, slug: str) -> KnowledgeItem | None:
        index = await self.ensure()
        return next((i for i in index.items if i.id == slug), None)

    @staticmethod
    async def record_unanswered(
        s: AsyncSession, text: str, *, conversation_id: int | None, project: str | None
    ) -> UnansweredQuestion:
        row = UnansweredQuestion(text=text, conversation_id=conversation_id, project_code=project, created_at=utcnow())
        s.add(row)
        await s.flush()
        return row


async def load_demo_kb(s: AsyncSession) -> tuple[int, int]:
    # Only missing entries: re-running `yezhu demo` must not undo the staff's edits.
    return await import_items(s, load_yaml(DEMO_KB), actor="demo", update=False)
