"""Structured logs never carry a full phone number or openid (DOMAIN.md: owner data kept securely)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from bot import logs
from tests.conftest import run_sync


@pytest.fixture
def captured() -> io.StringIO:
    logs.configure("INFO", json=True)
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)  # type: ignore[attr-defined]
    yield stream
    logging.getLogger().handlers.clear()


def test_structlog_fields_and_text_are_masked(captured: io.StringIO) -> None:
    logs.get_logger("yezhu.test").info("bound owner 13800000001 via oDEMO0001abc", sender="oDEMO0001abc",
                                        phone="13800000001", ticket="BX20261123-0001")
    record = json.loads(captured.getvalue().strip().splitlines()[-1])
    dumped = json.dumps(record, ensure_ascii=False)
    assert "13800000001" not in dumped and "oDEMO0001abc" not in dumped
    assert record["phone"] == "138****0001" and record["sender"] == "oDEM***"
    assert "138****0001" in record["event"] and record["ticket"] == "BX20261123-0001"


def test_stdlib_loggers_are_masked_too(captured: io.StringIO) -> None:
    logging.getLogger("yezhu.binding").info("dev SMS to %s: code for %s", "13912345678", "oAbCdEfGhIjK")
    line = captured.getvalue()
    assert "13912345678" not in line and "139****5678" in line and "oAbC***" in line


def test_mask_keeps_ordinary_numbers() -> None:
    assert logs.mask("工单 BX20261123-0007 金额 1200 元") == "工单 BX20261123-0007 金额 1200 元"


# --- tracebacks, both renderers, verification codes (issue 9, item 7) ----------------------------------

PHONE, OPENID, TEXT = "13912345678", "oAbCdEfGhIjKlMnOp", "我家3栋2单元501卫生间漏水"


def _fail_with_owner_data() -> None:
    phone, openid, text = PHONE, OPENID, TEXT  # locals a rich traceback would print
    owner = {"phone": phone, "openid": openid, "text": text}
    raise ValueError(f"could not bind {owner['openid']} to {owner['phone']}")


def _configured(json_mode: bool) -> io.StringIO:
    logs.configure("INFO", json=json_mode)
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
    return stream


@pytest.mark.parametrize("json_mode", [False, True])
def test_tracebacks_keep_the_stack_but_no_owner_data(json_mode: bool) -> None:
    stream = _configured(json_mode)
    try:
        for log_exception in (
            lambda: logging.getLogger("yezhu.engine").exception("turn failed for %s", OPENID),
            lambda: logs.get_logger("yezhu.engine").exception("turn failed", sender=OPENID),
        ):
            try:
                _fail_with_owner_data()
            except ValueError:
                log_exception()
    finally:
        logging.getLogger().handlers.clear()
    output = stream.getvalue()
    assert PHONE not in output and OPENID not in output and TEXT not in output
    assert output.count("Traceback (most recent call last)") == 2  # the stack is there, in both modes
    assert output.count("_fail_with_owner_data") >= 2 and "ValueError: could not bind oAbC*** to 139****5678" in output
    if json_mode:
        records = [json.loads(line) for line in output.strip().splitlines()]
        assert len(records) == 2 and all("Traceback" in r["exception"] for r in records)
        assert records[1]["sender"] == "oAbC***"


@pytest.mark.parametrize("json_mode", [False, True])
def test_objects_and_nested_values_are_masked(json_mode: bool) -> None:
    stream = _configured(json_mode)
    try:
        logging.getLogger("yezhu.x").warning("failed: %r", RuntimeError(f"owner {PHONE}"))
        logs.get_logger("yezhu.x").info("sent", recipients=[PHONE, {"openid": OPENID}], error=KeyError(OPENID),
                                        password="hunter2-secret")
    finally:
        logging.getLogger().handlers.clear()
    output = stream.getvalue()
    assert PHONE not in output and OPENID not in output and "hunter2" not in output
    assert "139****5678" in output


def test_verification_codes_are_never_logged() -> None:
    from channels.sms.base import SmsRequest
    from channels.sms.dev import DevSmsProvider

    stream = _configured(False)
    request = SmsRequest(phone=PHONE, sign_name="业主服务", template_code="SMS_CODE", params={"code": "482913"},
                         out_id="sms-7")

    try:
        result = run_sync(DevSmsProvider().send(request))
        logging.getLogger("yezhu.x").info("owner wrote: 验证码是482913")
    finally:
        logging.getLogger().handlers.clear()
    output = stream.getvalue()
    assert result.status == "sent"  # the developer still finds the code in sms_message
    assert "dev SMS" in output and "482913" not in output and PHONE not in output
    assert logs.mask("您的验证码为：123456，请勿泄露") == "您的验证码为：******，请勿泄露"
    assert logs.mask("errcode 40001, 工单 BX20261123-0007") == "errcode 40001, 工单 BX20261123-0007"


def test_database_errors_do_not_quote_owner_data(db_url: str) -> None:
    import sqlalchemy as sa

    from bot.store.db import Database
    from bot.store.models import Owner

    async def clash() -> str:
        db = Database(db_url)
        try:
            async with db.session() as s, s.begin():
                s.add(Owner(name="张三", phone=PHONE))
            try:
                async with db.session() as s, s.begin():
                    await s.execute(sa.insert(Owner).values(name=TEXT, phone=PHONE))
            except sa.exc.IntegrityError as exc:
                return str(exc)
            raise AssertionError("the unique phone did not clash")
        finally:
            await db.close()

    message = run_sync(clash())
    assert "unique" in message.lower() or "duplicate" in message.lower()
    assert TEXT not in message and "parameters hidden" in message.lower()
