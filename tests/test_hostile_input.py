"""Property-based tests (Hypothesis): whatever a client puts in the API's and the console's parameters
or in the WeChat webhook's fields, the answer is never a 5xx, and a refused request stores nothing.

Runs through the real app on both databases (SQLite and PostgreSQL). Each test keeps one app for all
its examples (building one per example would take minutes), so the health check about
function-scoped fixtures is suppressed on purpose.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.runtime import RUNTIME
from bot.store.models import Identity, Message
from tests.conftest import WECHAT, YezhuFactory, auth
from tests.console.conftest import fast_argon2, login  # noqa: F401 (fixture)
from tests.fakes.wechat_client import WeChatOwner, cdata

PROPERTY = settings(
    max_examples=50,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the worktree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Numbers as people and scripts get them wrong: negative, huge, superscript and full-width digits,
# Arabic-Indic digits, decimals, exponents, signs, spaces.
numberish = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(alphabet="0123456789²³¹０１２３４５６７８９٣-+. eEx", min_size=1, max_size=25),
)
value = st.one_of(numberish, st.text(max_size=40), st.just(""))


async def count(client: TestClient[Any, Any], model: Any) -> int:
    async with client.app[RUNTIME].db.session() as s:
        return int((await s.execute(sa.select(sa.func.count()).select_from(model))).scalar_one())


def segment(text: str) -> str:
    """``text`` as one path segment (slashes and all percent-encoded)."""
    return quote(text, safe="") or "x"


@pytest.fixture
async def api_client(yezhu: YezhuFactory, db_url: str) -> TestClient[Any, Any]:
    return await yezhu(database_url=db_url, demo=False)


@PROPERTY
@given(limit=value, kind=value, status=value, phone=value, project=value, ref=st.one_of(numberish, st.text(min_size=1)),
       channel=value, sender=value)
async def test_api_parameters_never_give_a_5xx(
    api_client: TestClient[Any, Any], limit: str, kind: str, status: str, phone: str, project: str, ref: str,
    channel: str, sender: str,
) -> None:
    client = api_client
    query = {"limit": limit, "kind": kind, "status": status, "owner_phone": phone, "project": project}
    resp = await client.get("/api/v1/tickets", params=query, headers=auth())
    assert resp.status in (200, 400), (query, resp.status)
    body = await resp.json()
    assert "tickets" in body if resp.status == 200 else body["detail"]
    resp = await client.get(f"/api/v1/tickets/{segment(ref)}", headers=auth())
    assert resp.status in (400, 404), (ref, resp.status)
    resp = await client.get("/api/v1/conversations", params={"channel": channel, "sender": sender}, headers=auth())
    assert resp.status in (200, 400), (channel, sender, resp.status)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@PROPERTY
@given(sender=st.one_of(st.text(max_size=120), json_values), text=st.one_of(st.text(max_size=60), json_values),
       msg_id=st.one_of(st.none(), st.text(max_size=120), json_values), depth=st.integers(0, 3000))
async def test_json_channel_bodies_never_give_a_5xx(
    api_client: TestClient[Any, Any], sender: Any, text: Any, msg_id: Any, depth: int
) -> None:
    client = api_client
    before = await count(client, Message)
    payload: dict[str, Any] = {"sender": sender, "text": text}
    if msg_id is not None:
        payload["msg_id"] = msg_id
    raw = json.dumps(payload, ensure_ascii=False)
    if depth:
        raw = raw[:-1] + ', "extra": ' + "[" * depth + "]" * depth + "}"
    resp = await client.post("/api/v1/messages", data=raw.encode("utf-8", "surrogatepass"),
                             headers={**auth(), "Content-Type": "application/json"})
    assert resp.status in (200, 202, 400), (payload, resp.status)
    if resp.status == 400:
        assert (await resp.json())["detail"]
        assert await count(client, Message) == before  # refused: nothing stored


@pytest.fixture
async def console_client(yezhu: YezhuFactory, db_url: str) -> TestClient[Any, Any]:
    client = await yezhu(database_url=db_url)
    await login(client, "admin")
    return client


@PROPERTY
@given(page=value, after=value, ident=st.one_of(numberish, st.text(min_size=1, max_size=30)), q=value, kind=value,
       status=value)
async def test_console_parameters_never_give_a_5xx(
    console_client: TestClient[Any, Any], page: str, after: str, ident: str, q: str, kind: str, status: str
) -> None:
    client = console_client
    pages = [
        ("/console/tickets", {"page": page, "kind": kind, "status": status, "q": q, "project": q, "building": kind}),
        ("/console/audit", {"page": page, "actor": q, "action": kind, "target": status}),
        ("/console/owners", {"q": q}),
        ("/console/knowledge", {"q": q}),
        (f"/console/api/conversations/{segment(ident)}/messages", {"after": after}),
        (f"/console/conversations/{segment(ident)}", {}),
        (f"/console/tickets/{segment(ident)}", {}),
        (f"/console/owners/{segment(ident)}", {}),
        (f"/console/knowledge/{segment(ident)}", {}),
    ]
    for path, query in pages:
        resp = await client.get(path, params=query, allow_redirects=False)
        assert resp.status < 500, (path, query, resp.status)
        if resp.status == 400:
            detail = (await resp.json())["detail"] if resp.content_type == "application/json" else await resp.text()
            assert "参数" in detail, detail


WEBHOOK_TEXT = st.one_of(
    st.text(max_size=120),
    st.text(alphabet="oDEMO0123456789_-", min_size=1, max_size=40),  # openid-like: mostly accepted
    st.text(alphabet="oDEMO0123456789_-", min_size=60, max_size=140),  # around the columns' 100 characters
    numberish,
)


@pytest.fixture
async def webhook_client(yezhu: YezhuFactory, db_url: str) -> TestClient[Any, Any]:
    return await yezhu(database_url=db_url, demo=False)


@PROPERTY
@given(sender=WEBHOOK_TEXT, msg_id=WEBHOOK_TEXT,
       # mostly well-formed, so the other fields get past the first checks often enough to be exercised
       create_time=st.one_of(st.integers(1, 4_000_000_000).map(str), st.integers(1, 4_000_000_000).map(str),
                             numberish),
       msg_type=st.sampled_from(["text", "text", "event", "location", "image", "voice", "link", "video",
                                 "shortvideo", "whatever"]) | st.text(max_size=20),
    content=st.text(max_size=200), event=st.sampled_from(["subscribe", "CLICK", "LOCATION", "VIEW", "SCAN"])
    | st.text(max_size=150), key=st.text(max_size=100), number=numberish)
async def test_webhook_fields_never_give_a_5xx(
    webhook_client: TestClient[Any, Any], sender: str, msg_id: str, create_time: str, msg_type: str, content: str,
    event: str, key: str, number: str,
) -> None:
    client = webhook_client
    owner = WeChatOwner(client, token=WECHAT["wechat_token"], app_id=WECHAT["wechat_app_id"])
    fields = {
        "ToUserName": "gh_0123456789ab", "FromUserName": sender, "CreateTime": create_time, "MsgType": msg_type,
        "Content": content, "MsgId": msg_id, "Event": event, "EventKey": key, "Location_X": number,
        "Location_Y": number, "Latitude": number, "Longitude": number, "Precision": number, "Scale": number,
        "Recognition": content, "Title": content, "Url": key, "MediaId": key,
    }
    xml = "<xml>" + "".join(f"<{k}>{cdata(v)}</{k}>" for k, v in fields.items()) + "</xml>"
    before = (await count(client, Message), await count(client, Identity))
    response = await owner.post(xml.encode("utf-8", "surrogatepass"))
    # 200 stored (or a duplicate), 400 malformed, 403 unverifiable: never a 5xx WeChat would retry for ever
    assert response.status in (200, 400, 403), (fields, response.status, response.body)
    if response.status != 200:
        assert (await count(client, Message), await count(client, Identity)) == before
