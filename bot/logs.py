"""Structured logging (structlog over the standard library) with personal data masked.

Phone numbers and WeChat openids never reach a log line in full (DOMAIN.md: owner data is stored
securely and used only for service): a processor masks them in every event field and message.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_OPENID = re.compile(r"(?<![A-Za-z0-9_-])(o[A-Za-z0-9_-]{3})[A-Za-z0-9_-]{4,}(?![A-Za-z0-9_-])")
SENSITIVE_KEYS = {"sender", "openid", "phone", "touser", "recipient", "external_id", "from_user"}


def mask(text: str) -> str:
    """Mask mobile numbers (138****0001) and openid-like tokens (oDEM***) inside free text."""
    return _OPENID.sub(r"\1***", _PHONE.sub(r"\1****\2", text))


def mask_value(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in SENSITIVE_KEYS:
        if _PHONE.fullmatch(value):
            return _PHONE.sub(r"\1****\2", value)
        return value[:4] + "***" if len(value) > 4 else "***"
    return mask(value)


def _mask_processor(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: mask_value(k, v) for k, v in event_dict.items()}


class MaskingFilter(logging.Filter):
    """Masks records from stdlib loggers (ours and libraries') that do not go through structlog."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask(record.msg)
        if record.args:
            if isinstance(record.args, dict):
                record.args = {k: mask_value(k, v) for k, v in record.args.items()}
            else:
                record.args = tuple(mask(a) if isinstance(a, str) else a for a in record.args)
        return True


def configure(level: str = "INFO", json: bool = False) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_processor,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: Any = structlog.processors.JSONRenderer(ensure_ascii=False) if json else structlog.dev.ConsoleRenderer(
        colors=False
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=shared,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "jieba", "taskiq", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
