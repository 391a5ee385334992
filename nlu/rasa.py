"""Client for a Rasa server's HTTP API (``POST {url}/model/parse``), for the optional Rasa backend.

This module owns the wire format. Rasa's documented answer is::

    {"text": "…", "intent": {"name": "repair", "confidence": 0.97},
     "entities": [{"entity": "house", "value": "3栋2单元501", "start": 0, "end": 9, "extractor": …}],
     "intent_ranking": [{"name": "repair", "confidence": 0.97}, …]}

Calls are async (aiohttp) with a short total timeout: the hot path must not stall on a slow NLU
server — the interpreter falls back to its own model instead. Every failure (connection refused,
timeout, non-2xx status, malformed JSON, a missing intent) becomes :class:`RasaUnavailable`.
"""

from __future__ import annotations

from typing import Any

import aiohttp

__all__ = ["RasaClient", "RasaUnavailable"]


class RasaUnavailable(Exception):
    """The Rasa server could not give a usable answer."""


class RasaClient:
    """Calls ``POST {url}/model/parse``.

    Pass a shared ``session`` in production (connection reuse); without one, each call opens and
    closes its own session, which is always safe across event loops (tests, CLI) at the cost of a
    new connection per message.
    """

    def __init__(self, url: str, *, timeout: float = 1.5, session: aiohttp.ClientSession | None = None,
                 token: str | None = None) -> None:
        if not url:
            raise ValueError("the Rasa backend needs a server URL")
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._token = token

    @property
    def parse_url(self) -> str:
        return f"{self.url}/model/parse"

    async def parse(self, text: str) -> dict[str, Any]:
        """Rasa's parse result for ``text`` (validated to have an intent name and confidence)."""
        params = {"token": self._token} if self._token else None
        try:
            if self._session is not None:
                data = await self._post(self._session, text, params)
            else:
                async with aiohttp.ClientSession(timeout=self.timeout) as session:
                    data = await self._post(session, text, params)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RasaUnavailable(f"{self.parse_url}: {type(exc).__name__}: {exc}") from exc
        return _validate(data, self.parse_url)

    async def _post(self, session: aiohttp.ClientSession, text: str, params: dict[str, str] | None) -> Any:
        async with session.post(self.parse_url, json={"text": text}, params=params,
                                timeout=self.timeout) as response:
            if response.status >= 300:
                body = (await response.text())[:200]
                raise RasaUnavailable(f"{self.parse_url}: HTTP {response.status}: {body}")
            return await response.json(content_type=None)


def _validate(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RasaUnavailable(f"{where}: answer is not a JSON object")
    intent = data.get("intent")
    if not isinstance(intent, dict) or not isinstance(intent.get("name"), str) or not intent["name"]:
        raise RasaUnavailable(f"{where}: answer has no intent name")
    try:
        confidence = float(intent.get("confidence", 0.0))
    except (TypeError, ValueError) as exc:
        raise RasaUnavailable(f"{where}: intent confidence is not a number") from exc
    if not 0.0 <= confidence <= 1.0:
        raise RasaUnavailable(f"{where}: intent confidence {confidence} out of range")
    return data
