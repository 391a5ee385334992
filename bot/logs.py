"""Structured logging (structlog over the standard library) with personal data masked.

Phone numbers and WeChat openids never reach a log line in full, and verification codes not at all
(DOMAIN.md: owner data is stored securely and used only for service). Masking is the *last* step before
either renderer (console or JSON), after exceptions were turned into text, so it covers every field,
the message, nested values, objects logged with ``%r`` and exception tracebacks alike.

Tracebacks are the standard library's: they name files, lines and the exception, never local
variables (structlog's console renderer would otherwise use rich's traceback with ``show_locals``, which
printed owners' phones, openids and message text). In JSON mode the traceback is kept, as text, in the
``exception`` field. SQL parameters (message text) stay out of database errors: the engine is created
with ``hide_parameters`` (bot/store/db.py).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_OPENID = re.compile(r"(?<![A-Za-z0-9_-])(o[A-Za-z0-9_-]{3})[A-Za-z0-9_-]{4,}(?![A-Za-z0-9_-])")
# A verification code next to the word for it (an SMS text, an owner quoting it): never in a log.
_CODE = re.compile(r"((?:验证码|校验码|动态码|verification code)\D{0,8}?)\d{4,8}(?!\d)", re.IGNORECASE)
SENSITIVE_KEYS = {"sender", "openid", "phone", "touser", "recipient", "external_id", "from_user"}
SECRET_KEYS = {"verification_code", "password", "token", "secret", "app_secret", "aes_key"}


def mask(text: str) -> str:
    """Mask mobile numbers (138****0001), openid-like tokens (oDEM***) and verification codes in text."""
    return _CODE.sub(r"\1******", _OPENID.sub(r"\1***", _PHONE.sub(r"\1****\2", text)))


def mask_value(key: str, value: Any) -> Any:
    """``value`` of field ``key`` as it may be logged: strings masked, containers walked, other objects
    (an exception, a model row) rendered to text and masked, so their ``repr`` cannot leak."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_value(key, v) for v in value]
    text = value if isinstance(value, str) else str(value)
    if key in SECRET_KEYS:
        return "***"
    if key in SENSITIVE_KEYS:
        if _PHONE.fullmatch(text):
            return _PHONE.sub(r"\1****\2", text)
        return text[:4] + "***" if len(text) > 4 else "***"
    return mask(text)


_META = {"_record", "_from_structlog"}


def _mask_processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    return {k: v if k in _META else mask_value(k, v) for k, v in event_dict.items()}


class MaskingFilter(logging.Filter):
    """Masks the message and arguments of stdlib records (ours and libraries'), for any handler that
    does not use :func:`configure`'s formatter (pytest's capture, say)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask(record.msg)
        if record.args:
            if isinstance(record.args, dict):
                record.args = {k: mask_value(k, v) for k, v in record.args.items()}
            else:
                record.args = tuple(mask_value("", a) if isinstance(a, str) else a for a in record.args)
        return True


def configure(level: str = "INFO", json: bool = False) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            # exc_info → an ``exception`` string (the stdlib traceback: no locals), *then* mask it all
            structlog.processors.format_exc_info,
            _mask_processor,
            renderer,
        ],
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
