"""Request parameters -- query strings, path segments, form fields -- parsed into bounded values.

The one parser the JSON API (:mod:`bot.api`) and the console (:mod:`bot.console`) share, so a value a
route cannot use is the client's error (400 with a clear message; 404 for an id in the path), never a
500 from Python or the database:

* **numbers** are ASCII digits only: ``str.isdigit()`` and ``int()`` also accept ``²`` and full-width
  ``１２``, and an unbounded number overflows PostgreSQL's ``integer`` (and SQLite's 64 bits), so every
  number has a range (``limit=-1`` would mean "no limit" to SQLite);
* **text** may not carry NUL, other control characters or lone surrogates (PostgreSQL refuses NUL in
  text; a surrogate cannot be encoded), and has a length limit.

Each route says what it expects (``int_param(request.query, "page", default=1, minimum=1)``); the API's
and the console's middleware turn :class:`BadParameter` into their own kind of answer (JSON or a page)
and check every query value and path segment with :func:`check_request` before a handler runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from aiohttp import web

from channels.base import UNSAFE_TEXT

MAX_ID = 2**31 - 1
"""The largest id a table holds (PostgreSQL ``integer``): a larger one cannot exist."""
MAX_PAGE = 100_000
MAX_QUERY_VALUE = 1000
"""Characters in one query-string value or path segment (search boxes cut theirs shorter)."""
MAX_FORM_VALUE = 100_000
"""Characters in one form field (a note, a knowledge-base answer); the body limit applies as well."""

_DIGITS = re.compile(r"[0-9]{1,18}")


class BadParameter(ValueError):
    """A parameter the route cannot use: ``name`` and what was expected (English for the API, Chinese
    for the console's staff)."""

    def __init__(self, name: str, detail: str, detail_zh: str) -> None:
        super().__init__(detail)
        self.name = name
        self.detail = detail
        self.detail_zh = detail_zh


def int_param(
    values: Mapping[str, str],
    name: str,
    *,
    default: int,
    minimum: int = 0,
    maximum: int = MAX_ID,
) -> int:
    """``values[name]`` as a whole number in ``[minimum, maximum]``; ``default`` when absent or empty."""
    raw = values.get(name)
    if raw is None or not raw.strip():
        return default
    value = parse_int(raw, minimum=minimum, maximum=maximum)
    if value is None:
        raise BadParameter(
            name,
            f"'{name}' must be a whole number from {minimum} to {maximum}",
            f"参数 {name} 应为 {minimum} 到 {maximum} 之间的整数",
        )
    return value


def parse_int(raw: str | None, *, minimum: int = 0, maximum: int = MAX_ID) -> int | None:
    """``raw`` (ASCII digits, surrounding spaces ignored) as an int in range, else ``None``."""
    if raw is None:
        return None
    raw = raw.strip()
    if not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if minimum <= value <= maximum else None


def parse_id(raw: str | None) -> int | None:
    """A row id (1 … :data:`MAX_ID`) or ``None``: anything else names no row."""
    return parse_int(raw, minimum=1)


def path_id(request: web.Request, name: str = "id") -> int:
    """The id in the path, or 404: an id that cannot exist is simply not found."""
    value = parse_id(request.match_info.get(name))
    if value is None:
        raise web.HTTPNotFound(text="not found")
    return value


def check_text(value: str, name: str, *, max_length: int = MAX_QUERY_VALUE) -> str:
    """``value`` unchanged if it is text a route may store or search for, else :class:`BadParameter`."""
    if len(value) > max_length:
        raise BadParameter(name, f"'{name}' is longer than {max_length} characters",
                           f"参数 {name} 超过 {max_length} 个字符")
    if UNSAFE_TEXT.search(value):
        raise BadParameter(name, f"'{name}' contains control characters",
                           f"参数 {name} 含有无法处理的控制字符")
    return value


def check_request(request: web.Request) -> None:
    """Check every query value and path segment of ``request`` (see :func:`check_text`)."""
    for key, value in request.query.items():
        check_text(key, "query", max_length=100)
        check_text(value, key[:40])
    for key, value in request.match_info.items():
        check_text(value, key)


def check_form(values: Mapping[str, str]) -> dict[str, str]:
    """A form's text fields, checked (newlines and tabs are fine in a note)."""
    return {key: check_text(value, key[:40], max_length=MAX_FORM_VALUE) for key, value in values.items()}
