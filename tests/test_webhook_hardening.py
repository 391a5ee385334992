"""The WeChat webhook through the real app, engine and databases against replay, downgrade and ids no
WeChat message has (issue 9, items 4, 5 and 8): refused with a 4xx, nothing stored, nothing disclosed."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from bot.runtime import RUNTIME
from bot.store.models import Identity, Message
from tests.conftest import AES_KEY, WECHAT, YezhuFactory
from tests.fakes.wechat_client import Mode, WeChatOwner, cdata

OPENID = "oDEMO0001"  # 张三, bound in the demo data; his certificate is ready for collection


def owner(client: TestClient[Any, Any], mode: Mode = "plain", openid: str = OPENID) -> WeChatOwner:
    return WeChatOwner(client, token=WECHAT["wechat_token"], app_id=WECHAT["wechat_app_id"],
                       aes_key=AES_KEY if mode != "plain" else None, openid=openid, mode=mode)


async def post(client: TestClient[Any, Any], query: dict[str, str], body: bytes) -> tuple[int, str]:
    async with client.post("/wechat/default", params=query, data=body,
                           headers={"Content-Type": "text/xml"}) as response:
        return response.status, await response.text()


async def inbound_texts(client: TestClient[Any, Any]) -> list[str]:
    async with client.app[RUNTIME].db.session() as s:
        rows = await s.execute(sa.select(Message.text).where(Message.direction == "in").order_by(Message.id))
        return list(rows.scalars())


@pytest.fixture
async def two_processes(yezhu: YezhuFactory, db_url: str, request: pytest.FixtureRequest
                        ) -> tuple[TestClient[Any, Any], TestClient[Any, Any]]:
    """Two web processes on one database; on PostgreSQL they share Redis, as in production. (SQLite is
    the embedded single-process mode: there the second "process" is the same one.)"""
    if "postgres" in db_url:
        redis_url = request.getfixturevalue("redis_url")
        first = await yezhu(database_url=db_url, redis_url=redis_url, demo=True)
        second = await yezhu(database_url=db_url, redis_url=redis_url, demo=False)
        return first, second
    first = await yezhu(database_url=db_url, demo=True)
    return first, first


async def test_a_captured_plaintext_push_cannot_be_replayed_with_another_body(
    two_processes: tuple[TestClient[Any, Any], TestClient[Any, Any]],
) -> None:
    first, second = two_processes
    zhang = owner(first)
    query, body = zhang.signed_request(zhang.text_xml("你好"))
    status, _ = await post(first, query, body)
    assert status == 200
    # Someone who saw the push URL (a proxy log, say) sends their own body under it, to another process.
    forger = owner(second)
    forged_query, forged = forger.signed_request(forger.text_xml("我的房产证办好了吗"),
                                                 timestamp=query["timestamp"], nonce=query["nonce"])
    assert forged_query["signature"] == query["signature"]  # the URL is all they need to reuse
    status, text = await post(second, forged_query, forged)
    assert (status, text) == (403, "replayed_nonce")
    assert "领取" not in text and "客服中心" not in text  # no certificate status disclosed
    # WeChat's own retry of the original push (identical body) still gets through: a duplicate
    status, text = await post(second, query, body)
    assert (status, text) == (200, "success")
    assert await inbound_texts(first) == ["你好"]


async def test_an_account_with_an_aes_key_refuses_plaintext_unless_compatible(
    yezhu: YezhuFactory, db_url: str
) -> None:
    client = await yezhu(database_url=db_url, wechat_aes_key=AES_KEY)
    response = await owner(client, "plain").post(owner(client, "plain").text_xml("我的房产证办好了吗"))
    assert (response.status, response.body) == (403, "plaintext_refused")
    assert await inbound_texts(client) == []
    assert (await owner(client, "safe").post(owner(client, "safe").text_xml("你好"))).status == 200
    assert await inbound_texts(client) == ["你好"]

    compatible = await yezhu(database_url=db_url, wechat_aes_key=AES_KEY, wechat_mode="compatible", demo=False)
    for mode in ("plain", "compat", "safe"):
        o = owner(compatible, mode, openid=f"oCOMPAT{mode}")
        assert (await o.post(o.text_xml(f"{mode}模式"))).status == 200, mode
    assert (await inbound_texts(compatible))[-3:] == ["plain模式", "compat模式", "safe模式"]


IDS = [("FromUserName", "o" + "x" * 100), ("FromUserName", "o" * 300), ("MsgId", "9" * 101), ("MsgId", "9" * 300),
       ("FromUserName", "业主张三"), ("MsgId", "１２３４")]


async def test_overlong_or_foreign_ids_are_400_and_store_nothing(yezhu: YezhuFactory, db_url: str) -> None:
    client = await yezhu(database_url=db_url, demo=False)
    o = owner(client)
    for field, value in IDS:
        xml = o.text_xml("你好", msg_id=424242)
        if field == "FromUserName":
            xml = xml.replace(cdata(OPENID), cdata(value))
        else:
            xml = xml.replace("<MsgId>424242</MsgId>", f"<MsgId>{value}</MsgId>")
        for _ in range(2):  # WeChat would retry a 5xx for ever; a 400 ends it
            response = await o.post(xml)
            assert (response.status, response.body) == (400, "malformed_message"), (field, value)
    assert await inbound_texts(client) == []
    async with client.app[RUNTIME].db.session() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Identity))).scalar_one() == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"YEZHU_WECHAT_MODE": "safe"}, "safe mode needs an EncodingAESKey"),
        ({"YEZHU_WECHAT_MODE": "compatible"}, "compatible mode needs an EncodingAESKey"),
        ({"YEZHU_WECHAT_MODE": "plaintext", "YEZHU_WECHAT_AES_KEY": AES_KEY}, "choose safe"),
        ({"YEZHU_WECHAT_MODE": "secure"}, "YEZHU_WECHAT_MODE"),
        ({"YEZHU_TRUSTED_PROXIES": "proxy.internal"}, "YEZHU_TRUSTED_PROXIES"),
    ],
)
def test_settings_that_cannot_work_stop_the_cli_with_one_line(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    monkeypatch.setenv("YEZHU_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/y.db")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["migrate"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
