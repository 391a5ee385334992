"""Every WeChat message and event type, from WeChat's own samples, in plaintext, compatible and safe mode.

https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html
https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_event_pushes.html
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from wechatpy.crypto import WeChatCrypto
from wechatpy.crypto import base as crypto_base

from channels.wechat import WeChatAccountConfig, wechat_signature
from tests.fakes.wechat_client import WeChatOwner
from tests.wechat.conftest import OPENID, ChannelFactory, FakeSink, FrozenClock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wechat"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# (file, kind, text, media, event, msg_id)
SAMPLES: list[tuple[str, str, str, dict[str, Any], str | None, str]] = [
    ("text.xml", "text", "this is a test", {}, None, "1234567890123456"),
    (
        "image.xml",
        "image",
        "",
        {"pic_url": "this is a url", "media_id": "media_id"},
        None,
        "1234567890123456",
    ),
    ("voice.xml", "voice", "", {"media_id": "media_id", "format": "Format"}, None, "1234567890123456"),
    (
        "voice_recognition.xml",
        "voice",
        "腾讯微信团队",
        {"media_id": "media_id", "format": "Format"},
        None,
        "1234567890123456",
    ),
    (
        "video.xml",
        "video",
        "",
        {"media_id": "media_id", "thumb_media_id": "thumb_media_id", "type": "video"},
        None,
        "1234567890123456",
    ),
    (
        "shortvideo.xml",
        "video",
        "",
        {"media_id": "media_id", "thumb_media_id": "thumb_media_id", "type": "shortvideo"},
        None,
        "1234567890123456",
    ),
    (
        "location.xml",
        "location",
        "位置信息",
        {"lat": 23.134521, "lng": 113.358803, "scale": 20.0, "label": "位置信息"},
        None,
        "1234567890123456",
    ),
    ("link.xml", "link", "公众平台官网链接\n公众平台官网链接", {"url": "url"}, None, "1234567890123456"),
    ("event_subscribe.xml", "event", "", {}, "subscribe", "FromUser:123456789:subscribe"),
    (
        "event_subscribe_qrscene.xml",
        "event",
        "",
        {"event_key": "qrscene_123123", "ticket": "TICKET", "scene": "123123"},
        "subscribe",
        "FromUser:123456789:subscribe",
    ),
    ("event_unsubscribe.xml", "event", "", {}, "unsubscribe", "FromUser:123456789:unsubscribe"),
    (
        "event_scan.xml",
        "event",
        "",
        {"event_key": "SCENE_VALUE", "ticket": "TICKET", "scene": "SCENE_VALUE"},
        "scan",
        "FromUser:123456789:scan",
    ),
    (
        "event_location.xml",
        "event",
        "",
        {"lat": 23.137466, "lng": 113.352425, "precision": 119.38504},
        "location",
        "fromUser:123456789:location",
    ),
    ("event_click.xml", "event", "EVENTKEY", {"event_key": "EVENTKEY"}, "click", "FromUser:123456789:click"),
    (
        "event_view.xml",
        "event",
        "",
        {"event_key": "www.qq.com", "url": "www.qq.com", "menu_id": "MENUID"},
        "view",
        "FromUser:123456789:view",
    ),
    ("miniprogrampage.xml", "unknown", "", {}, None, "1234567890123456"),
    ("unknown_type.xml", "unknown", "", {}, None, "fromUser:1700000000:hologram"),
]


@pytest.mark.parametrize(
    ("name", "kind", "text", "media", "event", "msg_id"),
    SAMPLES,
    ids=[s[0].removesuffix(".xml") for s in SAMPLES],
)
async def test_documented_samples_in_every_mode(
    owner: WeChatOwner,
    sink: FakeSink,
    name: str,
    kind: str,
    text: str,
    media: dict[str, Any],
    event: str | None,
    msg_id: str,
) -> None:
    sink.replies = []
    response = await owner.post(fixture(name))

    assert response.status == 200
    assert response.is_success
    message = sink.last
    assert (message.channel, message.account) == ("wechat", "default")
    assert message.kind == kind
    assert message.text == text
    assert message.media == media
    assert message.event == event
    assert message.msg_id == msg_id
    assert message.sender.lower() == "fromuser"
    assert message.received_at.tzinfo is dt.UTC
    assert message.raw["ToUserName"] == "toUser"
    assert "Encrypt" not in message.raw  # compatible and safe mode: the decrypted payload is used


async def test_received_at_is_create_time_in_utc(owner: WeChatOwner, sink: FakeSink) -> None:
    await owner.post(fixture("text.xml"))
    assert sink.last.received_at == dt.datetime(2012, 9, 28, 11, 31, tzinfo=dt.UTC)


async def test_raw_keeps_what_wechat_sent_for_a_qrscene_subscription(
    owner: WeChatOwner, sink: FakeSink
) -> None:
    # wechatpy's parser rewrites Event/EventKey in place ("subscribe_scan", scene without prefix)
    await owner.post(fixture("event_subscribe_qrscene.xml"))
    assert sink.last.raw["Event"] == "subscribe"
    assert sink.last.raw["EventKey"] == "qrscene_123123"


async def test_two_events_in_the_same_second_get_different_ids(owner: WeChatOwner, sink: FakeSink) -> None:
    sink.replies = []
    await owner.post(owner.event_xml("subscribe", event_key="qrscene_7", ticket="T", create_time=1700000000))
    await owner.post(owner.event_xml("SCAN", event_key="7", ticket="T", create_time=1700000000))
    assert [m.msg_id for m in sink.messages] == [
        f"{OPENID}:1700000000:subscribe",
        f"{OPENID}:1700000000:scan",
    ]


async def test_owner_helpers_build_what_the_channel_understands(owner: WeChatOwner, sink: FakeSink) -> None:
    sink.replies = []
    assert await owner.send_voice("三号楼电梯坏了") is None
    assert (sink.last.kind, sink.last.text) == ("voice", "三号楼电梯坏了")
    await owner.send_image("http://mmbiz.qpic.cn/leak.jpg", "MEDIA1")
    assert sink.last.media == {"pic_url": "http://mmbiz.qpic.cn/leak.jpg", "media_id": "MEDIA1"}
    await owner.send_location(31.2304, 121.4737, "示范花园3栋")
    assert sink.last.media["lat"] == pytest.approx(31.2304)
    assert sink.last.text == "示范花园3栋"
    await owner.send_link("装修须知", "物业通知", "https://example.com/notice")
    assert (sink.last.kind, sink.last.media["url"]) == ("link", "https://example.com/notice")
    await owner.subscribe("house-42")
    assert (sink.last.event, sink.last.media["scene"]) == ("subscribe", "house-42")
    await owner.click("MENU_REPAIR")
    assert (sink.last.event, sink.last.text) == ("click", "MENU_REPAIR")
    await owner.unsubscribe()
    assert sink.last.event == "unsubscribe"
    assert {m.sender for m in sink.messages} == {OPENID}
    assert len({m.msg_id for m in sink.messages}) == len(sink.messages)


async def test_text_with_cdata_terminator_and_markup_is_read_exactly(
    owner: WeChatOwner, sink: FakeSink
) -> None:
    text = "水管]]>漏水 <b>&amp; 急</b> \U0001f4a7"
    await owner.send_text(text)
    assert sink.last.text == text


async def test_plaintext_only_account(
    make_client: ChannelFactory, sink: FakeSink, clock: FrozenClock
) -> None:
    client = await make_client()
    owner = WeChatOwner(client, token="plain-token", app_id="wxplain000000000", account="plain", clock=clock)
    assert await owner.send_text("你好") == "收到"
    assert sink.last.account == "plain"


# -- the known safe-mode vector (wechatpy tests/test_crypto.py) ------------------------------------

VECTOR = json.loads((FIXTURES / "crypto_vector.json").read_text(encoding="utf-8"))


def test_signature_matches_the_known_vectors() -> None:
    token = VECTOR["token"]
    inbound, outbound = VECTOR["inbound"], VECTOR["outbound"]
    encrypt_in = inbound["body"].split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    assert (
        wechat_signature(token, inbound["timestamp"], inbound["nonce"], encrypt_in)
        == inbound["msg_signature"]
    )
    assert (
        wechat_signature(token, outbound["timestamp"], outbound["nonce"], outbound["encrypt"])
        == outbound["msg_signature"]
    )


def test_reply_encryption_matches_the_known_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    outbound = VECTOR["outbound"]
    monkeypatch.setattr(
        crypto_base.BasePrpCrypto, "get_random_string", lambda self: outbound["random_prefix"]
    )
    crypto = WeChatCrypto(VECTOR["token"], VECTOR["encoding_aes_key"], VECTOR["app_id"])
    encrypted = crypto.encrypt_message(outbound["plaintext"], outbound["nonce"], outbound["timestamp"])
    assert f"<Encrypt><![CDATA[{outbound['encrypt']}]]></Encrypt>" in encrypted
    assert f"<MsgSignature><![CDATA[{outbound['msg_signature']}]]></MsgSignature>" in encrypted


async def test_known_vector_decrypts_through_the_channel(
    make_client: ChannelFactory, sink: FakeSink, clock: FrozenClock
) -> None:
    inbound = VECTOR["inbound"]
    account = WeChatAccountConfig(
        name="vector",
        token=VECTOR["token"],
        app_id=VECTOR["app_id"],
        app_secret="-",
        aes_key=VECTOR["encoding_aes_key"],
    )
    clock.now = float(inbound["timestamp"])
    client = await make_client(accounts={"vector": account})
    sink.replies = []
    response = await client.post(
        "/wechat/vector",
        params={
            "timestamp": inbound["timestamp"],
            "nonce": inbound["nonce"],
            "encrypt_type": "aes",
            "msg_signature": inbound["msg_signature"],
        },
        data=inbound["body"].encode(),
    )
    assert response.status == 200
    assert await response.text() == "success"
    expected = inbound["expected"]
    assert (sink.last.sender, sink.last.text, sink.last.msg_id) == (
        expected["FromUserName"],
        expected["Content"],
        expected["MsgId"],
    )
    assert sink.last.received_at == dt.datetime.fromtimestamp(int(expected["CreateTime"]), dt.UTC)
