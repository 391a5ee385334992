"""The development SMS provider (the embedded default): sends nothing, needs no account.

Every SMS is still stored (``sms_message``) with its text as the owner would see it, so staff and tests
read it there. The log line names the message, never its text (verification codes stay out of logs).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from channels.sms.base import Receipt, SmsRequest, SmsResult

log = logging.getLogger("yezhu.sms.dev")


class DevSmsProvider:
    name = "dev"
    batch_max = 1000

    async def send(self, request: SmsRequest) -> SmsResult:
        log.info("dev SMS %s (template %s) recorded, not sent", request.out_id, request.template_code)
        return SmsResult("sent", provider_id=f"dev-{request.out_id}")

    async def send_batch(self, requests: Sequence[SmsRequest]) -> list[SmsResult]:
        return [await self.send(r) for r in requests]

    async def query(
        self, phone: str, provider_id: str | None, out_id: str | None, sent_at: dt.datetime
    ) -> Receipt | None:
        return None

    async def close(self) -> None:
        return None
