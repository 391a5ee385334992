"""Aliyun SMS (阿里云短信服务, Dysmsapi 2017-05-25) through the official async SDK.

Sending (``alibabacloud_dysmsapi20170525``, RPC style, ``ACS3-HMAC-SHA256`` signed by the SDK):

- ``SendSms``: ``PhoneNumbers``, ``SignName``, ``TemplateCode``, ``TemplateParam`` (JSON object),
  ``OutId`` (ours, echoed in the receipt). Answer ``{"Code": "OK", "BizId": …, "RequestId": …}``; any
  other ``Code`` is a refusal (``isv.MOBILE_NUMBER_ILLEGAL``, ``isv.TEMPLATE_MISSING_PARAMETERS``,
  ``isv.SMS_SIGNATURE_ILLEGAL`` …), except the flow controls below, which are worth a later try.
- ``SendBatchSms``: up to 100 numbers with per-number signature and parameters (JSON arrays), one BizId.
- ``QuerySendDetails``: ``PhoneNumber``, ``BizId``, ``SendDate`` (yyyyMMdd) → ``SmsSendDetailDTOs``
  with ``SendStatus`` 1 waiting, 2 failed, 3 delivered and the operator's ``ErrCode``.

Aliyun has no idempotency: a request that timed out may have been sent. It is reported ``unknown`` and
never repeated here. A refused connection certainly sent nothing and is ``retry``.

Pushes (消息回执 via HTTP batch push): a JSON array per request, at most a few hundred items.

- ``SmsReport``: ``[{"phone_number", "send_time", "report_time", "success", "err_code", "err_msg",
  "sms_size", "biz_id", "out_id"}]``;
- ``SmsUp``: ``[{"phone_number", "send_time", "content", "sign_name", "dest_code", "sequence_id"}]``.

Both must be answered HTTP 200 ``{"code": 0, "msg": "接收成功"}`` within Aliyun's timeout (700 ms);
otherwise Aliyun pushes again after 1, 5 and 10 minutes. Aliyun does not sign its pushes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from typing import Any

from alibabacloud_dysmsapi20170525 import models as ali
from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_tea_openapi import models as openapi
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
from darabonba.runtime import RuntimeOptions

from channels.sms.base import (
    Answer,
    Receipt,
    SendStatus,
    SmsRequest,
    SmsResult,
    Uplink,
    china_time,
    cn_mobile,
    digest,
)

log = logging.getLogger("yezhu.sms.aliyun")

DEFAULT_ENDPOINT = "dysmsapi.aliyuncs.com"
RETRY_CODES = frozenset({
    "isv.BUSINESS_LIMIT_CONTROL",  # per-number flow control (per minute/hour/day)
    "isv.DAY_LIMIT_CONTROL",
    "isv.AMOUNT_NOT_ENOUGH",  # the account ran dry: sending works again once it is topped up
    "Throttling.User",
    "Throttling",
    "ServiceUnavailable",
})
ANSWER = Answer(200, json.dumps({"code": 0, "msg": "接收成功"}, ensure_ascii=False).encode())
REFUSED = Answer(400, json.dumps({"code": 1, "msg": "格式错误"}, ensure_ascii=False).encode())


class AliyunSmsProvider:
    name = "aliyun"
    batch_max = 100

    def __init__(
        self, access_key_id: str, access_key_secret: str, *, endpoint: str | None = None, timeout: float = 5.0
    ) -> None:
        protocol = "https"
        host = endpoint or DEFAULT_ENDPOINT
        if host.startswith(("http://", "https://")):  # a local fake provider in the tests
            protocol, host = host.split("://", 1)
        config = openapi.Config(
            access_key_id=access_key_id,
            access_key_secret=access_key_secret,
            endpoint=host.rstrip("/"),
            protocol=protocol,
            read_timeout=int(timeout * 1000),
            connect_timeout=int(min(timeout, 3.0) * 1000),
        )
        self.client = Client(config)
        self.runtime = RuntimeOptions(read_timeout=int(timeout * 1000), connect_timeout=int(min(timeout, 3.0) * 1000))

    async def send(self, request: SmsRequest) -> SmsResult:
        req = ali.SendSmsRequest(
            phone_numbers=cn_mobile(request.phone),
            sign_name=request.sign_name,
            template_code=request.template_code,
            template_param=json.dumps(dict(request.params), ensure_ascii=False),
            out_id=request.out_id or None,
        )
        try:
            resp = await self.client.send_sms_with_options_async(req, self.runtime)
        except Exception as exc:
            return _failure(exc)
        body = resp.body
        return _verdict(body.code, body.message, body.biz_id)

    async def send_batch(self, requests: Sequence[SmsRequest]) -> list[SmsResult]:
        if not requests:
            return []
        template = requests[0].template_code
        if any(r.template_code != template for r in requests) or len(requests) > self.batch_max:
            raise ValueError("one SendBatchSms carries one template and at most 100 numbers")
        req = ali.SendBatchSmsRequest(
            phone_number_json=json.dumps([cn_mobile(r.phone) for r in requests]),
            sign_name_json=json.dumps([r.sign_name for r in requests], ensure_ascii=False),
            template_code=template,
            template_param_json=json.dumps([dict(r.params) for r in requests], ensure_ascii=False),
            out_id=requests[0].out_id or None,
        )
        try:
            resp = await self.client.send_batch_sms_with_options_async(req, self.runtime)
        except Exception as exc:
            return [_failure(exc)] * len(requests)
        body = resp.body
        return [_verdict(body.code, body.message, body.biz_id)] * len(requests)

    async def query(
        self, phone: str, provider_id: str | None, out_id: str | None, sent_at: dt.datetime
    ) -> Receipt | None:
        req = ali.QuerySendDetailsRequest(
            phone_number=cn_mobile(phone), biz_id=provider_id or None,
            send_date=sent_at.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y%m%d"),
            page_size=10, current_page=1,
        )
        resp = await self.client.query_send_details_with_options_async(req, self.runtime)
        body = resp.body
        if body.code != "OK" or body.sms_send_detail_dtos is None:
            return None
        for d in body.sms_send_detail_dtos.sms_send_detail_dto or []:
            if provider_id is None and (not out_id or d.out_id != out_id):
                continue
            if d.send_status in (2, 3):
                return Receipt(provider_id=provider_id or "", phone=cn_mobile(phone), delivered=d.send_status == 3,
                               error_code=d.err_code, out_id=d.out_id, at=china_time(d.receive_date))
        return None

    async def close(self) -> None:
        return None


def _verdict(code: str | None, message: str | None, biz_id: str | None) -> SmsResult:
    if code == "OK":
        return SmsResult("sent", provider_id=biz_id)
    status: SendStatus = "retry" if code in RETRY_CODES else "failed"
    return SmsResult(status, error_code=code or "unknown", error=(message or "")[:200])


def _failure(exc: Exception) -> SmsResult:
    """What an exception from the SDK means for this send."""
    if isinstance(exc, ThrottlingException):
        return SmsResult("retry", error_code=str(exc.code), error=str(exc.message)[:200])
    if isinstance(exc, ClientException):  # 4xx: the request was refused (bad signature, bad key, bad input)
        code = str(exc.code)
        return SmsResult("retry" if code in RETRY_CODES else "failed", error_code=code, error=str(exc.message)[:200])
    if isinstance(exc, ServerException):  # 5xx: Aliyun may or may not have acted on it
        return SmsResult("unknown", error_code=str(exc.code), error=str(exc.message)[:200])
    inner = getattr(exc, "inner_exception", None) or exc
    text = f"{type(inner).__name__}: {inner}"
    if "Cannot connect" in text or "Connection refused" in text or "Name or service not known" in text:
        return SmsResult("retry", error_code="connect", error=text[:200])
    log.warning("Aliyun SendSms outcome unknown (%s): not repeating it; the receipt or a query will tell", text)
    return SmsResult("unknown", error_code="timeout", error=text[:200])


def receipt_from(item: Any) -> Receipt:
    if not isinstance(item, dict) or not item.get("biz_id") or not item.get("phone_number"):
        raise ValueError("an SmsReport item needs biz_id and phone_number")
    success = item.get("success")
    if not isinstance(success, bool):
        raise ValueError("an SmsReport item needs success true|false")
    return Receipt(
        provider_id=str(item["biz_id"]), phone=cn_mobile(str(item["phone_number"])), delivered=success,
        error_code=str(item.get("err_code") or "") or None, error=str(item.get("err_msg") or "")[:200] or None,
        out_id=str(item.get("out_id") or "") or None, at=china_time(item.get("report_time")),
    )


def uplink_from(item: Any) -> Uplink:
    if not isinstance(item, dict) or not item.get("phone_number") or not isinstance(item.get("content"), str):
        raise ValueError("an SmsUp item needs phone_number and content")
    seq = item.get("sequence_id")
    msg_id = f"seq-{seq}" if seq not in (None, "") else digest(item.get("phone_number"), item.get("send_time"),
                                                               item.get("content"))
    return Uplink(phone=cn_mobile(str(item["phone_number"])), text=item["content"], msg_id=msg_id,
                  at=china_time(item.get("send_time")), extend_code=str(item.get("dest_code") or "") or None)
