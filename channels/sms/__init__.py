"""SMS providers behind one interface (``channels.sms.base.SmsProvider``): ``dev``, ``aliyun``, ``tencent``.

``PUSHES`` names, per provider that pushes, how its receipts and uplinks are parsed and answered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels.sms import aliyun, tencent
from channels.sms.base import Answer, Receipt, Uplink


@dataclass(frozen=True, slots=True)
class PushFormat:
    receipt: Callable[[Any], Receipt]
    uplink: Callable[[Any], Uplink]
    ok: Answer
    refused: Answer
    uplink_object: bool
    """The provider pushes one uplink as a bare object (Tencent) rather than an array (Aliyun)."""


PUSHES: dict[str, PushFormat] = {
    "aliyun": PushFormat(aliyun.receipt_from, aliyun.uplink_from, aliyun.ANSWER, aliyun.REFUSED, False),
    "tencent": PushFormat(tencent.receipt_from, tencent.uplink_from, tencent.ANSWER, tencent.REFUSED, True),
}
