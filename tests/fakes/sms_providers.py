"""Local fake SMS providers that speak Aliyun's and Tencent Cloud's documented APIs (and a WeCom robot).

The official SDKs talk to these exactly as to the real services (``YEZHU_SMS_ENDPOINT=http://127.0.0.1:PORT``):

* **Aliyun** (Dysmsapi 2017-05-25, RPC): ``POST /?<query>`` with ``x-acs-action`` ``SendSms`` |
  ``SendBatchSms`` | ``QuerySendDetails``; the ``ACS3-HMAC-SHA256`` ``Authorization`` is verified with the
  AccessKey secret (``SignatureDoesNotMatch`` 400 otherwise). Refusals come back as documented: HTTP 200
  with ``Code`` ``isv.MOBILE_NUMBER_ILLEGAL``, ``isv.SMS_TEMPLATE_ILLEGAL``, ``isv.SMS_SIGNATURE_ILLEGAL``,
  ``isv.TEMPLATE_MISSING_PARAMETERS``, ``isv.BUSINESS_LIMIT_CONTROL``.
* **Tencent Cloud** (SMS 2021-01-11): ``POST /`` with ``X-TC-Action`` ``SendSms`` |
  ``PullSmsSendStatusByPhoneNumber`` and a JSON body; the ``TC3-HMAC-SHA256`` signature is verified
  (``AuthFailure.SignatureFailure``); per-number ``SendStatusSet`` codes (``Ok``,
  ``InvalidParameterValue.IncorrectPhoneNumber``, ``LimitExceeded.PhoneNumberDailyLimit`` …).
* Behaviours a test can set: ``refuse[phone] = code`` (a per-number refusal), ``delay`` (seconds before
  answering: a timeout), ``server_error`` (HTTP 500: the outcome is unknown to the client).
* ``receipts_aliyun()`` / ``receipts_tencent()`` build the pushes each provider would send for what it sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

from aiohttp import web

CHINA = dt.timezone(dt.timedelta(hours=8))
VAR = re.compile(r"\$\{(\w+)\}")


def tc_json(data: dict[str, Any]) -> web.Response:
    return web.Response(body=json.dumps(data, ensure_ascii=False).encode(), headers={"Content-Type": "application/json"})


@dataclass
class Sent:
    provider: str
    phone: str
    sign: str
    template: str
    params: dict[str, str] | list[str]
    out_id: str | None
    provider_id: str
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass
class FakeSmsProviders:
    """Both providers on one local server (the action header tells which API a request is for)."""

    access_key_id: str = "LTAI-test-key"
    access_key_secret: str = "aliyun-test-secret"
    secret_id: str = "AKID-test-id"
    secret_key: str = "tencent-test-secret"
    sdk_app_id: str = "1400000001"
    sign_names: tuple[str, ...] = ("物业客服",)
    templates: dict[str, list[str]] = field(default_factory=dict)
    """Approved template code/id → its parameter names (Tencent: their count matters)."""
    sent: list[Sent] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    server_error: bool = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if "x-acs-action" in request.headers:
            response = await self._aliyun(request)
        elif "X-TC-Action" in request.headers:
            response = await self._tencent(request)
        else:
            response = web.json_response({"error": "unknown API"}, status=400)
        if self.delay:  # the provider acted on the request; only its answer is late (a client timeout)
            await asyncio.sleep(self.delay)
        return response

    # --- Aliyun ----------------------------------------------------------------------------------

    def _aliyun_signature_ok(self, request: web.Request, body: bytes) -> bool:
        auth = request.headers.get("Authorization", "")
        m = re.match(r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=(\w+)$", auth)
        if not m or m.group(1) != self.access_key_id:
            return False
        signed = m.group(2).split(";")
        query = dict(parse_qsl(request.query_string, keep_blank_values=True))
        canon_query = "&".join(f"{k}={quote(query[k], safe='~')}" for k in sorted(query))
        canon_headers = "".join(f"{h}:{request.headers.get(h, '').strip()}\n" for h in signed)
        payload = hashlib.sha256(body).hexdigest()
        if request.headers.get("x-acs-content-sha256") != payload:
            return False
        canonical = f"{request.method}\n{request.path}\n{canon_query}\n{canon_headers}\n{';'.join(signed)}\n{payload}"
        to_sign = f"ACS3-HMAC-SHA256\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        expected = hmac.new(self.access_key_secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, m.group(3))

    async def _aliyun(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        action = request.headers["x-acs-action"]
        rid = uuid.uuid4().hex.upper()
        if not self._aliyun_signature_ok(request, body):
            return web.json_response({"RequestId": rid, "Code": "SignatureDoesNotMatch",
                                      "Message": "Specified signature is not matched with our calculation."},
                                     status=400)
        q = dict(parse_qsl(request.query_string, keep_blank_values=True))
        if body and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            q.update(parse_qsl(body.decode(), keep_blank_values=True))  # SendBatchSms: JSON arrays in the form
        self.requests.append({"provider": "aliyun", "action": action, **q})
        if self.server_error:
            return web.json_response({"RequestId": rid, "Code": "InternalError", "Message": "The request processing has failed due to some unknown error."}, status=500)
        if action == "QuerySendDetails":
            return web.json_response(self._aliyun_details(q, rid))
        if action == "SendSms":
            phones = q.get("PhoneNumbers", "").split(",")
            signs = [q.get("SignName", "")] * len(phones)
            params = [json.loads(q.get("TemplateParam") or "{}")] * len(phones)
        elif action == "SendBatchSms":
            phones = json.loads(q.get("PhoneNumberJson", "[]"))
            signs = json.loads(q.get("SignNameJson", "[]"))
            params = json.loads(q.get("TemplateParamJson", "[]"))
        else:
            return web.json_response({"RequestId": rid, "Code": "InvalidAction.NotFound", "Message": action}, status=404)
        template = q.get("TemplateCode", "")
        code = self._aliyun_check(phones, signs, template, params)
        if code is not None:
            return web.json_response({"RequestId": rid, "Code": code, "Message": code})
        biz_id = f"{uuid.uuid4().int % 10**18:018d}^0"
        for phone, sign, p in zip(phones, signs, params, strict=True):
            self.sent.append(Sent("aliyun", phone, sign, template, p, q.get("OutId"), biz_id))
        return web.json_response({"RequestId": rid, "Code": "OK", "Message": "OK", "BizId": biz_id})

    def _aliyun_check(self, phones: list[str], signs: list[str], template: str, params: list[Any]) -> str | None:
        if not phones or any(not re.fullmatch(r"1[3-9]\d{9}", p) for p in phones):
            return "isv.MOBILE_NUMBER_ILLEGAL"
        if any(s not in self.sign_names for s in signs):
            return "isv.SMS_SIGNATURE_ILLEGAL"
        if template not in self.templates:
            return "isv.SMS_TEMPLATE_ILLEGAL"
        for p in params:
            if not isinstance(p, dict) or any(not p.get(name) for name in self.templates[template]):
                return "isv.TEMPLATE_MISSING_PARAMETERS"
        for p in phones:
            if p in self.refuse:
                return self.refuse[p]
        return None

    def _aliyun_details(self, q: dict[str, str], rid: str) -> dict[str, Any]:
        rows = [s for s in self.sent if s.provider == "aliyun" and s.phone == q.get("PhoneNumber")
                and (not q.get("BizId") or s.provider_id == q.get("BizId"))]
        dtos = [{"PhoneNum": s.phone, "SendStatus": 3, "ErrCode": "DELIVERED", "TemplateCode": s.template,
                 "Content": "", "SendDate": s.at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
                 "ReceiveDate": s.at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"), "OutId": s.out_id}
                for s in rows]
        return {"RequestId": rid, "Code": "OK", "Message": "OK", "TotalCount": len(dtos),
                "SmsSendDetailDTOs": {"SmsSendDetailDTO": dtos}}

    def receipts_aliyun(self, delivered: bool = True) -> list[dict[str, Any]]:
        now = dt.datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        return [{"phone_number": s.phone, "send_time": now, "report_time": now, "success": delivered,
                 "err_code": "DELIVERED" if delivered else "MK:0001", "err_msg": "用户接收成功" if delivered else "空号",
                 "sms_size": "1", "biz_id": s.provider_id, "out_id": s.out_id or ""}
                for s in self.sent if s.provider == "aliyun"]

    # --- Tencent ---------------------------------------------------------------------------------

    def _tencent_signature_ok(self, request: web.Request, body: bytes) -> bool:
        auth = request.headers.get("Authorization", "")
        m = re.match(r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/(\w+)/tc3_request, "
                     r"SignedHeaders=content-type;host, Signature=(\w+)$", auth)
        if not m or m.group(1) != self.secret_id:
            return False
        date, service = m.group(2), m.group(3)
        canonical = (f"POST\n/\n\ncontent-type:{request.headers.get('Content-Type')}\nhost:{request.headers.get('Host')}\n"
                     f"\ncontent-type;host\n{hashlib.sha256(body).hexdigest()}")
        to_sign = (f"TC3-HMAC-SHA256\n{request.headers.get('X-TC-Timestamp')}\n{date}/{service}/tc3_request\n"
                   f"{hashlib.sha256(canonical.encode()).hexdigest()}")

        def mac(key: bytes, msg: str) -> bytes:
            return hmac.new(key, msg.encode(), hashlib.sha256).digest()

        key = mac(mac(mac(("TC3" + self.secret_key).encode(), date), service), "tc3_request")
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, m.group(4))

    async def _tencent(self, request: web.Request) -> web.StreamResponse:
        # Tencent answers ``Content-Type: application/json`` exactly (the SDK checks for errors only then).
        return await self._tencent_inner(request)

    async def _tencent_inner(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        action = request.headers["X-TC-Action"]
        rid = str(uuid.uuid4())

        def error(code: str, message: str) -> web.Response:
            return tc_json({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": rid}})

        if not self._tencent_signature_ok(request, body):
            return error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        data = json.loads(body or b"{}")
        self.requests.append({"provider": "tencent", "action": action, **data})
        if self.server_error:
            return error("InternalError.Timeout", "Request timed out.")
        if data.get("SmsSdkAppId") != self.sdk_app_id:
            return error("UnauthorizedOperation.SmsSdkAppIdVerifyFail", "SmsSdkAppId verify fail.")
        if action == "PullSmsSendStatusByPhoneNumber":
            phone = str(data.get("PhoneNumber", "")).removeprefix("+86")
            items = [{"UserReceiveTime": int(s.at.timestamp()), "CountryCode": "86", "SubscriberNumber": s.phone,
                      "PhoneNumber": "+86" + s.phone, "SerialNo": s.provider_id, "ReportStatus": "SUCCESS",
                      "Description": "DELIVRD", "SessionContext": s.out_id or ""}
                     for s in self.sent if s.provider == "tencent" and s.phone == phone]
            return tc_json({"Response": {"PullSmsSendStatusSet": items, "RequestId": rid}})
        if action != "SendSms":
            return error("InvalidAction", f"{action} not found")
        if data.get("SignName") not in self.sign_names:
            return error("FailedOperation.SignatureIncorrectOrUnapproved", "signature incorrect or unapproved")
        template = str(data.get("TemplateId", ""))
        if template not in self.templates:
            return error("FailedOperation.TemplateIncorrectOrUnapproved", "template incorrect or unapproved")
        params = list(data.get("TemplateParamSet") or [])
        if len(params) != len(self.templates[template]):
            return error("InvalidParameterValue.TemplateParameterFormatError", "template parameter count mismatch")
        statuses = []
        for e in data.get("PhoneNumberSet") or []:
            phone = str(e).removeprefix("+86")
            serial = f"2433:{uuid.uuid4().int % 10**20:020d}"
            if not re.fullmatch(r"1[3-9]\d{9}", phone):
                code, msg = "InvalidParameterValue.IncorrectPhoneNumber", "incorrect phone number"
            elif phone in self.refuse:
                code, msg = self.refuse[phone], "refused"
            else:
                code, msg = "Ok", "send success"
                self.sent.append(Sent("tencent", phone, data["SignName"], template, params,
                                      data.get("SessionContext"), serial))
            statuses.append({"SerialNo": serial if code == "Ok" else "", "PhoneNumber": e, "Fee": 1 if code == "Ok" else 0,
                             "SessionContext": data.get("SessionContext") or "", "Code": code, "Message": msg,
                             "IsoCode": "CN"})
        return tc_json({"Response": {"SendStatusSet": statuses, "RequestId": rid}})

    def receipts_tencent(self, delivered: bool = True) -> list[dict[str, Any]]:
        now = dt.datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        return [{"user_receive_time": now, "nationcode": "86", "mobile": s.phone,
                 "report_status": "SUCCESS" if delivered else "FAIL", "errmsg": "DELIVRD" if delivered else "MK:0005",
                 "description": "用户短信送达成功" if delivered else "用户手机关机", "sid": s.provider_id}
                for s in self.sent if s.provider == "tencent"]


@dataclass
class FakeWeComRobot:
    """WeCom group robot webhook: ``POST /cgi-bin/webhook/send?key=KEY`` with a markdown message."""

    key: str = "robot-key"
    messages: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/cgi-bin/webhook/send", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        if request.query.get("key") != self.key:
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        data = await request.json()
        if data.get("msgtype") != "markdown" or not (data.get("markdown") or {}).get("content"):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        self.messages.append(data)
        return web.json_response({"errcode": 0, "errmsg": "ok"})
