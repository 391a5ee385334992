"""Both providers' official SDKs against the local fake provider: send, batch, refusals, bad credentials,
timeouts and server errors (never ``sent`` twice: ``unknown``), a dead endpoint (``retry``), the query API."""

from __future__ import annotations

import datetime as dt
import socket

import pytest

from channels.sms.aliyun import AliyunSmsProvider
from channels.sms.base import SmsRequest, segments
from channels.sms.tencent import TencentSmsProvider
from tests.fakes.sms_providers import FakeSmsProviders


def make(name: str, fake: FakeSmsProviders, endpoint: str, *, secret: str | None = None, timeout: float = 2.0):
    if name == "aliyun":
        return AliyunSmsProvider(fake.access_key_id, secret or fake.access_key_secret, endpoint=endpoint, timeout=timeout)
    return TencentSmsProvider(fake.secret_id, secret or fake.secret_key, fake.sdk_app_id, endpoint=endpoint,
                              timeout=timeout)


def code(name: str) -> str:
    return "SMS_460001001" if name == "aliyun" else "1900001"


def req(name: str, phone: str = "13800000001", **kw: str) -> SmsRequest:
    return SmsRequest(phone=phone, sign_name="物业客服", template_code=code(name), params={"code": "123456"},
                      param_order=("code",), out_id=kw.get("out_id", "yz-out-1"))


@pytest.mark.parametrize("name", ["aliyun", "tencent"])
async def test_send_reaches_the_provider_signed_and_complete(name: str, fake: tuple[FakeSmsProviders, str]) -> None:
    provider, endpoint = fake
    result = await make(name, provider, endpoint).send(req(name))
    assert result.status == "sent" and result.provider_id
    sent = provider.sent[-1]
    assert sent.phone == "13800000001" and sent.sign == "物业客服" and sent.out_id == "yz-out-1"
    assert sent.params == ({"code": "123456"} if name == "aliyun" else ["123456"])


@pytest.mark.parametrize("name", ["aliyun", "tencent"])
async def test_wrong_secret_is_refused_not_retried(name: str, fake: tuple[FakeSmsProviders, str]) -> None:
    provider, endpoint = fake
    result = await make(name, provider, endpoint, secret="wrong").send(req(name))
    assert result.status == "failed" and result.error_code in ("SignatureDoesNotMatch", "AuthFailure.SignatureFailure"), result
    assert provider.sent == []


@pytest.mark.parametrize("name", ["aliyun", "tencent"])
async def test_refusals_and_flow_control(name: str, fake: tuple[FakeSmsProviders, str]) -> None:
    provider, endpoint = fake
    p = make(name, provider, endpoint)
    bad = await p.send(req(name, phone="12345"))
    assert bad.status == "failed" and bad.error_code in ("isv.MOBILE_NUMBER_ILLEGAL",
                                                          "InvalidParameterValue.IncorrectPhoneNumber")
    provider.refuse["13800000002"] = ("isv.BUSINESS_LIMIT_CONTROL" if name == "aliyun"
                                      else "LimitExceeded.PhoneNumberDailyLimit")
    limited = await p.send(req(name, phone="13800000002"))
    assert limited.status == "retry"
    unknown_template = await p.send(SmsRequest("13800000001", "物业客服", "SMS_NOPE", {"code": "1"}, ("code",)))
    assert unknown_template.status == "failed"


@pytest.mark.parametrize("name", ["aliyun", "tencent"])
async def test_a_timeout_is_unknown_never_sent_again(name: str, fake: tuple[FakeSmsProviders, str]) -> None:
    provider, endpoint = fake
    provider.delay = 2.5
    result = await make(name, provider, endpoint, timeout=1.0).send(req(name))
    assert result.status == "unknown"
    provider.delay = 0
    provider.server_error = True
    result = await make(name, provider, endpoint).send(req(name))
    assert result.status == "unknown"


@pytest.mark.parametrize("name", ["aliyun", "tencent"])
async def test_a_dead_endpoint_sent_nothing_and_may_be_retried(name: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await make(name, FakeSmsProviders(), f"http://127.0.0.1:{port}").send(req(name))
    assert result.status == "retry"


@pytest.mark.parametrize("name", ["aliyun", "tencent"])
async def test_batch_and_query(name: str, fake: tuple[FakeSmsProviders, str]) -> None:
    provider, endpoint = fake
    p = make(name, provider, endpoint)
    phones = [f"1380000{i:04d}" for i in range(1, 6)]
    results = await p.send_batch([req(name, phone=ph) for ph in phones])
    assert [r.status for r in results] == ["sent"] * 5
    assert sorted(s.phone for s in provider.sent) == phones
    receipt = await p.query(phones[0], results[0].provider_id, None, dt.datetime.now(dt.UTC))
    assert receipt is not None and receipt.delivered
    # A timed-out send has no provider id: found by our out_id (OutId / SessionContext).
    by_out = await p.query(phones[0], None, "yz-out-1", dt.datetime.now(dt.UTC))
    assert by_out is not None and by_out.delivered


def test_segments_follow_the_70_67_rule() -> None:
    assert segments("【物业客服】" + "好" * 64) == 1  # 70 with the signature
    assert segments("【物业客服】" + "好" * 65) == 2  # 71 → two parts of 67
    assert segments("x" * 134) == 2 and segments("x" * 135) == 3
