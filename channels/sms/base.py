"""The small interface every SMS provider speaks, and what SMS messages have in common.

Chinese SMS providers send only pre-approved templates: a signature (签名, shown as 【…】), a template
code and its parameters. A provider here therefore sends an :class:`SmsRequest` (never free text) and
answers with an :class:`SmsResult` whose ``status`` says what is known:

- ``sent``: the provider accepted it (its id is in ``provider_id``); the receipt says whether it arrived;
- ``failed``: the provider refused it (``error_code``); sending the same again would fail again;
- ``retry``: it certainly did not reach the provider (no connection), or the provider asked us to slow
  down: it may be sent again later;
- ``unknown``: the request may or may not have been acted on (a timeout, a 5xx): the providers have no
  idempotency, so it must **not** be sent again; its receipt or the provider's query API resolves it.

Providers also parse their own pushes (delivery receipts and uplinks) into :class:`Receipt` and
:class:`Uplink`; the web route stores them before answering (``bot/sms_routes.py``).

Like every module in ``channels/``, nothing here touches the database, Redis or NLU.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")
SINGLE_MAX = 70
"""Characters of a one-part SMS, the signature with its 【】 included."""
PART_MAX = 67
"""Characters per part of a longer SMS (the rest carries the concatenation header)."""
TEXT_MAX = 500
"""The providers' limit for one message, signature included."""

SendStatus = Literal["sent", "failed", "retry", "unknown"]


def segments(text: str) -> int:
    """How many SMS the operator bills for ``text`` (signature included): 70 fit in one, then 67 each."""
    n = len(text)
    if n <= SINGLE_MAX:
        return 1
    return math.ceil(n / PART_MAX)


@dataclass(frozen=True, slots=True)
class Length:
    """What one SMS costs: characters as the phone shows them, billed parts, and the price of those."""

    chars: int
    segments: int
    cost: Decimal

    @property
    def too_long(self) -> bool:
        return self.chars > TEXT_MAX

    def label(self) -> str:
        """``共86字 · 计2条 · 约0.09元`` (the compose box and the console's confirmation)."""
        return f"共{self.chars}字 · 计{self.segments}条 · 约{yuan(self.cost)}元"


def yuan(amount: Decimal) -> str:
    """An amount in 元 to the thousandth (prices are quoted like 0.045 元 a part), no trailing zeros."""
    exact = amount.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
    return f"{exact:.3f}".rstrip("0").rstrip(".")


def measure(text: str, price: Decimal) -> Length:
    """The length, billed parts (:func:`segments`) and cost of ``text`` as sent, at ``price`` per part."""
    parts = segments(text)
    return Length(len(text), parts, price * parts)


def cn_mobile(phone: str) -> str:
    """An 11-digit mainland mobile number from ``+8613800000000``, ``8613800000000`` or ``13800000000``."""
    digits = re.sub(r"[\s-]", "", phone)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return digits


def e164(phone: str) -> str:
    return "+86" + cn_mobile(phone)


PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def render(template_text: str, params: Mapping[str, str], sign_name: str) -> str:
    """The text as the owner's phone shows it: 【signature】 and the template with its parameters."""
    body = PLACEHOLDER.sub(lambda m: str(params.get(m.group(1), "")), template_text)
    return f"【{sign_name}】{body}"


@dataclass(frozen=True, slots=True)
class SmsRequest:
    """One templated SMS to one phone."""

    phone: str
    sign_name: str
    template_code: str
    params: Mapping[str, str]
    """Named parameters (Aliyun's ``TemplateParam`` JSON)."""
    param_order: Sequence[str] = ()
    """The order of the parameters in the template (Tencent's ``TemplateParamSet`` is positional)."""
    out_id: str = ""
    """Our id for it, echoed in the receipt (Aliyun ``OutId``, Tencent ``SessionContext``)."""


@dataclass(frozen=True, slots=True)
class SmsResult:
    status: SendStatus
    provider_id: str | None = None
    error_code: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery report: did the SMS reach the phone."""

    provider_id: str
    phone: str
    delivered: bool
    error_code: str | None = None
    error: str | None = None
    out_id: str | None = None
    at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Uplink:
    """An SMS the owner sent to us (a reply to one of ours)."""

    phone: str
    text: str
    msg_id: str
    """A stable id for de-duplication (the provider's sequence id, else a digest of the push)."""
    at: dt.datetime | None = None
    extend_code: str | None = None


@dataclass(slots=True)
class Parsed:
    """What a push carried: the items understood, and a note per item that was not."""

    items: list[dict[str, Any]] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)


class PushError(ValueError):
    """A push body that is not what the provider sends (answered 400, nothing stored)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The exact HTTP answer a provider requires to consider a push received."""

    status: int
    body: bytes
    content_type: str = "application/json"


class SmsProvider(Protocol):
    """An SMS provider's API: send, query, and the shape of its pushes."""

    name: str
    batch_max: int
    """Numbers one batch call may carry (per-number parameters)."""

    async def send(self, request: SmsRequest) -> SmsResult: ...

    async def send_batch(self, requests: Sequence[SmsRequest]) -> list[SmsResult]:
        """Several numbers, one template, per-number parameters; one result per request, in order."""
        ...

    async def query(
        self, phone: str, provider_id: str | None, out_id: str | None, sent_at: dt.datetime
    ) -> Receipt | None:
        """The provider's record of one send (to resolve an ``unknown``), found by its id or, when the
        send timed out before an id came back, by our ``out_id``; None while it has no verdict."""
        ...

    async def close(self) -> None: ...


def push_items(body: bytes, *, allow_object: bool = False) -> list[Any]:
    """The JSON array a provider pushes (or a single object, where it pushes one)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PushError(f"not JSON: {exc}") from exc
    if isinstance(data, dict) and allow_object:
        return [data]
    if not isinstance(data, list):
        raise PushError("expected a JSON array")
    return data


def digest(*parts: Any) -> str:
    """A stable id for a push item that carries none of its own."""
    raw = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:40]


def china_time(value: str | None) -> dt.datetime | None:
    """``2017-01-01 11:11:11`` in Beijing time, as an aware UTC datetime (None if unparseable)."""
    if not value:
        return None
    try:
        return dt.datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA).astimezone(dt.UTC)
    except ValueError:
        return None
