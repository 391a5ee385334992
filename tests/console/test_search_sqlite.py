"""The console's search box in the embedded mode (SQLite): FTS5 trigram indexes (migration 0008) that
follow every insert, edit and delete, fill from the rows already there, and find what ``LIKE`` finds."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bot.runtime import RUNTIME
from bot.store.db import Database
from bot.store.fts import FTS_TABLES
from bot.store.models import Owner, Ticket
from tests.conftest import YezhuFactory
from tests.console.conftest import js, login, waiting_conversation

TRIGGERS = {f"{table}_{kind}" for table in FTS_TABLES for kind in ("ai", "ad", "au")}


def _found(page: str) -> tuple[set[int], set[int], set[int]]:
    """The tickets, owners and conversations a results page shows."""
    return ({int(i) for i in re.findall(r'data-ticket="(\d+)"', page)},
            {int(i) for i in re.findall(r'data-owner="(\d+)"', page)},
            {int(i) for i in re.findall(r'data-conversation="(\d+)"', page)})


async def _search(client: Any, q: str) -> tuple[set[int], set[int], set[int]]:
    resp = await client.get("/console/search", params={"q": q})
    assert resp.status == 200, q
    return _found(await resp.text())


async def _create(client: Any, csrf: str, **fields: Any) -> int:
    resp = await client.post("/console/tickets", data={"_csrf": csrf, **fields}, headers={"Accept": "application/json"})
    assert resp.status == 200, await resp.text()
    return int((await resp.json())["ticket_id"])


async def _sql(client: Any, statement: str) -> list[Any]:
    async with client.app[RUNTIME].db.session() as s, s.begin():
        result = await s.execute(sa.text(statement))
        return list(result.all()) if result.returns_rows else []


async def test_search_on_sqlite_goes_through_the_trigram_index_and_follows_edits_and_deletes(
        yezhu: YezhuFactory) -> None:
    client = await yezhu()
    assert {name for (name,) in await _sql(client, "SELECT name FROM sqlite_master WHERE type = 'trigger'")} >= TRIGGERS
    csrf = await login(client, "kefu")
    async with client.app[RUNTIME].db.session() as s:
        zhang = (await s.execute(sa.select(Owner).where(Owner.phone == "13800000001"))).scalar_one()
        house_id = (await s.execute(sa.text("SELECT house_id FROM owner_house WHERE owner_id = :o LIMIT 1"),
                                    {"o": zhang.id})).scalar_one()
    door = await _create(client, csrf, origin="phone", kind="repair", category="door_window", owner_id=zhang.id,
                         house_id=house_id, description="阳台推拉门滑轮脱落，关不上")
    gate = await _create(client, csrf, origin="walk_in", kind="repair", category="other", location="7栋地下车库入口",
                         contact_phone="139 1234 5678", description="道闸抬杆不起来")
    conv = await waiting_conversation(client, "crm-fts", "电梯按钮失灵好几天了，麻烦看一下")
    async with client.app[RUNTIME].db.session() as s:
        number = (await s.get_one(Ticket, gate)).number

    assert door in (await _search(client, "推拉门滑轮"))[0]          # words in the description
    assert gate in (await _search(client, "地下车库"))[0]            # the location
    assert gate in (await _search(client, "5678"))[0]                # last 4 digits of the contact phone
    assert gate in (await _search(client, "13912345678"))[0]         # the whole phone
    assert (await _search(client, number))[0] == {gate}              # the ticket number, whole
    assert gate in (await _search(client, number[:10].lower()))[0]  # and its start
    tickets, owners, _ = await _search(client, "0001")
    assert door in tickets and zhang.id in owners                    # the owner's phone
    tickets, owners, _ = await _search(client, "3-2-501")
    assert door in tickets and zhang.id in owners                    # the house
    tickets, owners, _ = await _search(client, "张三")               # two characters: no trigram, LIKE
    assert door in tickets and zhang.id in owners
    assert conv in (await _search(client, "按钮失灵"))[2]           # what the owner wrote in the chat
    for q in ('推拉"门', "推拉门*", "NEAR(推拉 滑轮)", "{location}: 推拉门"):  # text, not FTS5 query syntax
        assert (await _search(client, q)) == (set(), set(), set()), q

    # The console consults the index: empty it, and a 3+ character word finds nothing; rebuilt, it does.
    await _sql(client, "INSERT INTO ticket_fts(ticket_fts) VALUES ('delete-all')")
    assert door not in (await _search(client, "推拉门滑轮"))[0]
    assert door in (await _search(client, "张三"))[0]  # the two-character fallback does not need it
    await _sql(client, "INSERT INTO ticket_fts(ticket_fts) VALUES ('rebuild')")
    assert door in (await _search(client, "推拉门滑轮"))[0]

    # Edited through the console: the old words no longer find it, the new ones do.
    resp = await client.post(f"/console/tickets/{door}/edit", headers=js(csrf),
                             json={"description": "阳台窗户玻璃裂了一道缝"})
    assert resp.status == 200, await resp.text()
    assert door not in (await _search(client, "推拉门滑轮"))[0]
    assert door in (await _search(client, "玻璃裂了"))[0]
    # Deleted (as a purge would): gone from the results and from the index, which stays consistent.
    async with client.app[RUNTIME].db.session() as s, s.begin():
        await s.execute(sa.text("DELETE FROM ticket_event WHERE ticket_id = :t"), {"t": door})
        await s.execute(sa.delete(Ticket).where(Ticket.id == door))
    assert door not in (await _search(client, "玻璃裂了"))[0]
    assert await _sql(client, "SELECT rowid FROM ticket_fts WHERE ticket_fts MATCH '\"玻璃裂了\"'") == []
    for table in FTS_TABLES:  # 'integrity-check' fails if an index disagrees with its table
        await _sql(client, f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)")


PLACES = ["卫生间", "厨房", "主卧", "客厅", "阳台", "书房", "入户门", "地下车库", "电梯厅"]
PROBLEMS = ["地漏返水", "水管漏水", "天花板渗水", "插座没电", "门锁卡住打不开", "墙面开裂", "瓷砖空鼓",
            "空调不制冷", "下水堵塞", "马桶漏水", "对讲不通", "Wi-Fi面板不亮", "100%漏_水"]
QUERIES = ["漏水", "水管漏水", "天花板", "卫生间地漏", "门锁卡住", "地下车库", "开裂", "瓷砖空鼓", "wi-fi",
           "WI-FI面板", "100%", "%漏_", "不制冷", "0001", "0012", "5555001", "138000", "13800000003", "张三",
           "李四", "三", "BX", "-00", "不存在的问题描述"]


async def test_the_trigram_index_finds_what_like_finds(yezhu: YezhuFactory, tmp_path: Path) -> None:
    """The same questions, with the FTS5 tables and after dropping them as 0008's downgrade does (LIKE only)."""
    client = await yezhu()
    csrf = await login(client, "kefu")
    rng = random.Random(12)
    owners = [o for (o,) in await _sql(client, "SELECT id FROM owner ORDER BY id LIMIT 40")]
    for i in range(40):
        fields: dict[str, Any] = {"origin": "phone", "kind": "repair", "category": "other",
                                  "description": f"{rng.choice(PLACES)}{rng.choice(PROBLEMS)}"}
        if i % 2:
            fields.update(location=f"{rng.randint(1, 9)}栋{rng.choice(PLACES)}",
                          contact_phone=f"139{rng.randint(0, 99999999):08d}" if i % 4 != 1 else "13955550012")
        else:
            owner = owners[i]
            house = await _sql(client, f"SELECT house_id FROM owner_house WHERE owner_id = {owner} LIMIT 1")
            fields.update(owner_id=owner, house_id=house[0][0])
        await _create(client, csrf, **fields)
    for i in range(10):
        await waiting_conversation(client, f"crm-{i}", f"{rng.choice(PLACES)}{rng.choice(PROBLEMS)}，请尽快")
    indexed = {q: await _search(client, q) for q in QUERIES}
    empty = {q for q, found in indexed.items() if not any(found)}
    assert empty == {"BX", "-00", "不存在的问题描述"}, empty  # a real sample: the rest all find something
    # What migration 0008's downgrade does (a later migration's columns stay, so the app keeps running).
    for table in FTS_TABLES:
        for trigger in ("ai", "ad", "au"):
            await _sql(client, f"DROP TRIGGER IF EXISTS {table}_{trigger}")
        await _sql(client, f"DROP TABLE IF EXISTS {table}")
    assert await _sql(client, "SELECT name FROM sqlite_master WHERE name LIKE '%_fts%'") == []
    for q in QUERIES:
        assert await _search(client, q) == indexed[q], q


async def test_the_migration_indexes_the_rows_already_there(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        await db.migrate("0007")
        async with db.session() as s, s.begin():
            owner = Owner(name="欧阳明月", phone="13700001234")
            s.add(owner)
            await s.flush()
            # Core, not the ORM: the model has columns of later migrations that this schema lacks.
            await s.execute(sa.insert(Ticket).values(
                number="BX20261130-0001", kind="repair", status="new", priority="normal",
                owner_id=owner.id, description="厨房水槽下水管断裂", location="9栋物业前台"))
        await db.migrate()
        async with db.session() as s:
            for table, phrase in (("ticket_fts", "水管断裂"), ("ticket_fts", "物业前台"), ("ticket_fts", "0001"),
                                  ("owner_fts", "欧阳明"), ("owner_fts", "1234")):
                hits = (await s.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {table} MATCH :q"),
                                        {"q": f'"{phrase}"'})).scalar()
                assert hits == 1, (table, phrase)
            names = set((await s.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))).scalars())
            assert names >= TRIGGERS
    finally:
        await db.close()
