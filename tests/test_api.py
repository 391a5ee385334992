"""The JSON channel and the read API through the real app and engine."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import sqlalchemy as sa

from tests.conftest import YezhuFactory, auth


async def test_json_channel_answers_and_stores_the_conversation(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    resp = await client.post("/api/v1/messages", json={"sender": "crm-42", "text": "你好"}, headers=auth())
    assert resp.status == 200
    body = await resp.json()
    assert body["replies"] and "您好" in body["replies"][0]["text"]

    resp = await client.get("/api/v1/conversations", params={"channel": "api", "sender": "crm-42"}, headers=auth())
    convs = (await resp.json())["conversations"]
    assert len(convs) == 1 and convs[0]["mode"] == "bot"
    msgs = convs[0]["messages"]
    assert [m["direction"] for m in msgs] == ["in", "out"]
    assert msgs[0]["text"] == "你好" and msgs[1]["text"] == body["replies"][0]["text"]


async def test_json_channel_is_idempotent_on_msg_id(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    payload = {"sender": "crm-1", "text": "你好", "msg_id": "crm-msg-1"}
    results = await asyncio.gather(
        *(client.post("/api/v1/messages", json=payload, headers=auth()) for _ in range(3))
    )
    bodies = [await r.json() for r in results]
    assert sum(1 for b in bodies if b["replies"]) == 1
    resp = await client.get("/api/v1/conversations", params={"channel": "api", "sender": "crm-1"}, headers=auth())
    msgs = (await resp.json())["conversations"][0]["messages"]
    assert [m["direction"] for m in msgs] == ["in", "out"]


async def test_api_refuses_requests_without_the_token(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    for method, path in [("POST", "/api/v1/messages"), ("GET", "/api/v1/tickets"), ("GET", "/api/v1/tickets/1"),
                         ("GET", "/api/v1/conversations"), ("POST", "/api/v1/nlu/parse")]:
        resp = await client.request(method, path, json={})
        assert resp.status == 401, path
        resp = await client.request(method, path, json={}, headers=auth("wrong"))
        assert resp.status == 401, path


async def test_bad_json_bodies_get_400_and_store_nothing(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    for body in (b"not json", b"[]", b'{"sender": "", "text": "x"}', b'{"sender": "a"}',
                 ('{"sender": "a", "text": "' + "长" * 3000 + '"}').encode()):
        resp = await client.post("/api/v1/messages", data=body, headers={**auth(), "Content-Type": "application/json"})
        assert resp.status == 400
        assert "detail" in await resp.json()
    resp = await client.get("/api/v1/conversations", params={"channel": "api", "sender": "a"}, headers=auth())
    assert (await resp.json())["conversations"] == []


async def test_ticket_read_api_404_and_filters(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    resp = await client.get("/api/v1/tickets/BX20260101-0001", headers=auth())
    assert resp.status == 404
    resp = await client.get("/api/v1/tickets", params={"owner_phone": "13800000001"}, headers=auth())
    assert resp.status == 200 and (await resp.json())["tickets"] == []
    resp = await client.get("/api/v1/conversations", headers=auth())
    assert resp.status == 400


async def test_healthz_and_metrics(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["database"] == "ok"
    await client.post("/api/v1/messages", json={"sender": "m1", "text": "你好"}, headers=auth())
    text = await (await client.get("/metrics")).text()
    assert 'yezhu_messages_in_total{channel="api"} 1.0' in text
    assert "yezhu_message_latency_seconds_bucket" in text


async def test_healthz_on_redis_and_when_redis_dies(yezhu: YezhuFactory, redis_url: str) -> None:
    import redis.asyncio as aioredis

    from bot.runtime import RUNTIME

    client = await yezhu(redis_url=redis_url)
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["redis"] == "ok"
    rt = client.app[RUNTIME]
    alive, rt.services.redis = rt.services.redis, aioredis.Redis(port=1, socket_connect_timeout=0.5)
    resp = await client.get("/healthz")
    await rt.services.redis.aclose()
    rt.services.redis = alive
    # the process still stores and answers messages without Redis: degraded, not out of service
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "degraded" and body["database"] == "ok" and body["redis"].startswith("down")


async def test_nlu_parse_endpoint_and_parse_stored_with_the_message(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    resp = await client.post("/api/v1/nlu/parse", json={"text": "三号楼二单元501卫生间漏水"}, headers=auth())
    assert resp.status == 200
    body = await resp.json()
    assert body["intent"] == "repair" and 0 < body["confidence"] <= 1
    house = next(e for e in body["entities"] if e["entity"] == "house")
    assert house["extra"] == {"building": "3", "unit": "2", "room": "501"} or house["value"].startswith("3")
    assert (await client.post("/api/v1/nlu/parse", json={"x": 1}, headers=auth())).status == 400

    await client.post("/api/v1/messages", json={"sender": "nlu-1", "text": "我要找人工"}, headers=auth())
    resp = await client.get("/api/v1/conversations", params={"channel": "api", "sender": "nlu-1"}, headers=auth())
    first = (await resp.json())["conversations"][0]["messages"][0]
    assert first["intent"] == "human" and first["confidence"] > 0.5


# --- hostile parameters and bodies: a 4xx with a clear error, nothing stored, on both databases ------------

BAD_NUMBERS = ["-1", "0", "501", "²", "１０", "1²", "99999999999999999999", "2147483648", "abc", "1.5", "1e3", " ",
               "0x10"]


async def _tickets(client: Any, n: int) -> None:
    from bot.runtime import RUNTIME
    from bot.store.models import Ticket

    async with client.app[RUNTIME].db.session() as s, s.begin():
        s.add_all(Ticket(number=f"ZX20260101-{k:04d}", kind="inquiry", description=f"咨询{k}") for k in range(n))


async def test_ticket_list_limit_is_bounded_and_checked(yezhu: YezhuFactory, db_url: str) -> None:
    client = await yezhu(database_url=db_url, demo=False)
    await _tickets(client, 3)
    resp = await client.get("/api/v1/tickets", params={"limit": "2"}, headers=auth())
    assert resp.status == 200 and len((await resp.json())["tickets"]) == 2
    resp = await client.get("/api/v1/tickets", headers=auth())
    assert len((await resp.json())["tickets"]) == 3
    for value in BAD_NUMBERS:
        resp = await client.get("/api/v1/tickets", params={"limit": value}, headers=auth())
        if value == " ":  # blank is "not given"
            assert resp.status == 200
            continue
        assert resp.status == 400, value
        body = await resp.json()
        assert body["parameter"] == "limit" and "from 1 to 500" in body["detail"], value


async def test_ticket_ids_that_cannot_exist_are_404(yezhu: YezhuFactory, db_url: str) -> None:
    client = await yezhu(database_url=db_url, demo=False)
    await _tickets(client, 1)
    resp = await client.get("/api/v1/tickets/1", headers=auth())
    assert resp.status == 200 and (await resp.json())["number"] == "ZX20260101-0000"
    assert (await client.get("/api/v1/tickets/ZX20260101-0000", headers=auth())).status == 200
    for ref in ["²", "１", "99999999999999999999", "2147483648", "0", "-1", "1.0", "x" * 500]:
        resp = await client.get(f"/api/v1/tickets/{ref}", headers=auth())
        assert resp.status == 404, ref
        assert (await resp.json())["error"] == "not_found"


async def test_control_characters_in_parameters_are_400(yezhu: YezhuFactory, db_url: str) -> None:
    client = await yezhu(database_url=db_url, demo=False)
    for path, params in [("/api/v1/tickets", {"kind": "repair\x00"}), ("/api/v1/tickets", {"owner_phone": "\x00"}),
                         ("/api/v1/conversations", {"channel": "api", "sender": "a\x00b"}),
                         ("/api/v1/tickets", {"status": "x" * 1001})]:
        resp = await client.get(path, params=params, headers=auth())
        assert resp.status == 400, params
        assert (await resp.json())["error"] == "bad_request"
    assert (await client.get("/api/v1/tickets/%00", headers=auth())).status in (400, 404)


async def test_hostile_json_bodies_are_400_and_store_nothing(yezhu: YezhuFactory, db_url: str) -> None:
    from bot.runtime import RUNTIME
    from bot.store.models import Identity, Message

    client = await yezhu(database_url=db_url, demo=False)
    deep_array = b"[" * 30_000 + b"]" * 30_000
    deep_object = b'{"a":' * 10_000 + b"1" + b"}" * 10_000  # within the 64 KB body limit
    bodies = [
        deep_array,
        deep_object,
        b'{"sender": "crm-1", "text": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        json.dumps({"sender": "crm-1", "text": "你好\x00"}).encode(),
        json.dumps({"sender": "crm\x00-1", "text": "你好"}).encode(),
        b'{"sender": "crm-1", "text": "\\ud800"}',  # an unpaired surrogate
        json.dumps({"sender": "crm-1", "text": "你好", "msg_id": "m" * 101}).encode(),
        json.dumps({"sender": "c" * 101, "text": "你好"}).encode(),
        b'{"sender": "crm-1", "text": "\xff\xfe"}',  # not UTF-8
    ]
    for body in bodies:
        resp = await client.post("/api/v1/messages", data=body,
                                 headers={**auth(), "Content-Type": "application/json"})
        assert resp.status == 400, body[:60]
        assert (await resp.json())["detail"]
    async with client.app[RUNTIME].db.session() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Message))).scalar_one() == 0
        assert (await s.execute(sa.select(sa.func.count()).select_from(Identity))).scalar_one() == 0
