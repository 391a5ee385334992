"""Structured logs never carry a full phone number or openid (DOMAIN.md: owner data kept securely)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from bot import logs


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
