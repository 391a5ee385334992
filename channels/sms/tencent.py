"""Tencent Cloud SMS (腾讯云短信, API 2021-01-11) through the official SDK, off the event loop.

``tencentcloud-sdk-python-sms``'s ``SmsClient`` is synchronous (``requests``); every call runs in a
worker thread (``asyncio.to_thread``) so the event loop never blocks on it. (The SDK also ships an
``httpx``-based async client; the synchronous one is the SDK's documented, stable interface.)

- ``SendSms``: ``PhoneNumberSet`` (E.164, up to 200), ``SmsSdkAppId``, ``SignName``, ``TemplateId``,
  ``TemplateParamSet`` (positional: the template's ``{1}``, ``{2}`` …), ``SessionContext`` (ours, echoed).
  Signed ``TC3-HMAC-SHA256`` by the SDK. The answer has one ``SendStatusSet`` item per number with its
  own ``Code`` (``Ok``, ``LimitExceeded.PhoneNumberDailyLimit``, ``InvalidParameterValue.IncorrectPhoneNumber``
  …) and ``SerialNo``; a request-level error comes back as ``Response.Error`` (raised by the SDK).
- ``PullSmsSendStatusByPhoneNumber``: a number's receipts since a time (resolves an ``unknown`` send).

Pushes (configured in the console; Tencent does not sign them):

- status (短信下发状态通知): ``[{"user_receive_time", "nationcode", "mobile", "report_status":
  "SUCCESS"|"FAIL", "errmsg", "description", "sid"}]`` (``sid`` is the ``SerialNo``);
- reply (短信回复): ``{"extend", "mobile", "nationcode", "sign", "text", "time"}`` (one object; arrays
  are accepted too).

Both are answered ``{"result": 0, "errmsg": "OK"}``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models as tc
from tencentcloud.sms.v20210111.sms_client import SmsClient

from channels.sms.base import (
    Answer,
    Receipt,
    SmsRequest,
    SmsResult,
    Uplink,
    china_time,
    cn_mobile,
    digest,
    e164,
)

log = logging.getLogger("yezhu.sms.tencent")

DEFAULT_ENDPOINT = "sms.tencentcloudapi.com"
RETRY_CODES = frozenset({
    "LimitExceeded.PhoneNumberDailyLimit",
    "LimitExceeded.PhoneNumberOneHourLimit",
    "LimitExceeded.PhoneNumberThirtySecondLimit",
    "LimitExceeded.DeliveryFrequencyLimit",
    "LimitExceeded.AppDailyLimit",
    "LimitExceeded.AppGlobalDailyLimit",
    "FailedOperation.InsufficientBalanceInSmsPackage",
    "RequestLimitExceeded",
})
ANSWER = Answer(200, json.dumps({"result": 0, "errmsg": "OK"}).encode())
REFUSED = Answer(400, json.dumps({"result": 1, "errmsg": "bad request"}).encode())


class TencentSmsProvider:
    name = "tencent"
    batch_max = 200

    def __init__(
        self, secret_id: str, secret_key: str, sdk_app_id: str, *, region: str = "ap-guangzhou",
        endpoint: str | None = None, timeout: float = 5.0,
    ) -> None:
        protocol, host = "https", endpoint or DEFAULT_ENDPOINT
        if host.startswith(("http://", "https://")):  # a local fake provider in the tests
            protocol, host = host.split("://", 1)
        self._make = lambda: SmsClient(
            credential.Credential(secret_id, secret_key), region,
            ClientProfile(httpProfile=HttpProfile(protocol=protocol, endpoint=host.rstrip("/"),
                                                  reqTimeout=max(1, round(timeout)))),
        )
        self._local = threading.local()
        self.sdk_app_id = sdk_app_id

    @property
    def client(self) -> SmsClient:
        """This worker thread's client: the SDK's HTTP session is not meant to be shared across threads."""
        client: SmsClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._make()
        return client

    async def send(self, request: SmsRequest) -> SmsResult:
        return (await self.send_batch([request]))[0]

    async def send_batch(self, requests: Sequence[SmsRequest]) -> list[SmsResult]:
        if not requests:
            return []
        first = requests[0]
        if any(r.template_code != first.template_code or r.params != first.params for r in requests):
            # One SendSms carries one parameter set: per-number parameters are one call per number.
            return [r for req in requests for r in await self.send_batch([req])]
        req = tc.SendSmsRequest()
        req.PhoneNumberSet = [e164(r.phone) for r in requests]
        req.SmsSdkAppId = self.sdk_app_id
        req.SignName = first.sign_name
        req.TemplateId = first.template_code
        req.TemplateParamSet = [str(first.params.get(k, "")) for k in first.param_order]
        req.SessionContext = first.out_id or None
        try:
            resp = await asyncio.to_thread(lambda: self.client.SendSms(req))
        except TencentCloudSDKException as exc:
            return [_failure(exc)] * len(requests)
        by_phone = {cn_mobile(s.PhoneNumber or ""): s for s in resp.SendStatusSet or []}
        results = []
        for r in requests:
            status = by_phone.get(cn_mobile(r.phone))
            if status is None:
                results.append(SmsResult("unknown", error_code="missing", error="no status for this number"))
            elif status.Code == "Ok":
                results.append(SmsResult("sent", provider_id=status.SerialNo))
            else:
                results.append(SmsResult("retry" if status.Code in RETRY_CODES else "failed",
                                         error_code=status.Code, error=(status.Message or "")[:200]))
        return results

    async def query(
        self, phone: str, provider_id: str | None, out_id: str | None, sent_at: dt.datetime
    ) -> Receipt | None:
        req = tc.PullSmsSendStatusByPhoneNumberRequest()
        req.BeginTime = int(sent_at.timestamp()) - 60
        req.Offset = 0
        req.Limit = 100
        req.PhoneNumber = e164(phone)
        req.SmsSdkAppId = self.sdk_app_id
        resp = await asyncio.to_thread(lambda: self.client.PullSmsSendStatusByPhoneNumber(req))
        for item in resp.PullSmsSendStatusSet or []:
            if (provider_id and item.SerialNo == provider_id) or (
                    not provider_id and out_id and item.SessionContext == out_id):
                return Receipt(provider_id=item.SerialNo, phone=cn_mobile(phone), delivered=item.ReportStatus == "SUCCESS",
                               error_code=item.Description, out_id=item.SessionContext,
                               at=dt.datetime.fromtimestamp(item.UserReceiveTime, dt.UTC) if item.UserReceiveTime else None)
        return None

    async def close(self) -> None:
        return None


def _failure(exc: TencentCloudSDKException) -> SmsResult:
    code = str(exc.get_code() or "")
    message = str(exc.get_message() or "")
    if code == "ClientNetworkError":
        if "Connection refused" in message or "Failed to establish a new connection" in message \
                or "Name or service not known" in message:
            return SmsResult("retry", error_code="connect", error=message[:200])
        log.warning("Tencent SendSms outcome unknown (%s): not repeating it; the receipt or a query will tell",
                    message[:200])
        return SmsResult("unknown", error_code="timeout", error=message[:200])
    if code.startswith("InternalError"):  # Tencent's side failed after it had the request
        return SmsResult("unknown", error_code=code, error=message[:200])
    return SmsResult("retry" if code in RETRY_CODES else "failed", error_code=code, error=message[:200])


def receipt_from(item: Any) -> Receipt:
    if not isinstance(item, dict) or not item.get("sid") or not item.get("mobile"):
        raise ValueError("a status item needs sid and mobile")
    status = item.get("report_status")
    if status not in ("SUCCESS", "FAIL"):
        raise ValueError("report_status must be SUCCESS or FAIL")
    return Receipt(
        provider_id=str(item["sid"]), phone=cn_mobile(str(item["mobile"])), delivered=status == "SUCCESS",
        error_code=str(item.get("errmsg") or "") or None, error=str(item.get("description") or "")[:200] or None,
        out_id=str(item.get("session_context") or "") or None, at=china_time(item.get("user_receive_time")),
    )


def uplink_from(item: Any) -> Uplink:
    if not isinstance(item, dict) or not item.get("mobile") or not isinstance(item.get("text"), str):
        raise ValueError("a reply item needs mobile and text")
    at = None
    if isinstance(item.get("time"), int):
        at = dt.datetime.fromtimestamp(item["time"], dt.UTC)
    return Uplink(phone=cn_mobile(str(item["mobile"])), text=item["text"],
                  msg_id=digest(item.get("mobile"), item.get("time"), item.get("text"), item.get("extend")),
                  at=at, extend_code=str(item.get("extend") or "") or None)
