"""The JSON channel (``POST /api/v1/messages``): integrations and tests talk to the bot as an owner.

Request ``{"sender": "...", "text": "...", "msg_id": "optional, for idempotent retries"}``; the reply is
``{"replies": [{"text": ...}, ...]}`` once the bot has answered. Authentication (bearer token) is the
app's concern; this adapter only parses and validates.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import web

from channels.base import UNSAFE_TEXT, Accepted, InboundMessage, MessageSink

MAX_TEXT = 2000


class ApiChannel:
    name = "api"

    def __init__(self, sink: MessageSink, *, reply_timeout: float = 30.0) -> None:
        self.sink = sink
        self.reply_timeout = reply_timeout

    @staticmethod
    def parse(body: Any, account: str = "default") -> InboundMessage:
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        sender, text = body.get("sender"), body.get("text")
        if not isinstance(sender, str) or not sender.strip() or len(sender) > 100:
            raise ValueError("'sender' must be a non-empty string of at most 100 characters")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("'text' must be a non-empty string")
        if len(text) > MAX_TEXT:
            raise ValueError(f"'text' is longer than {MAX_TEXT} characters")
        msg_id = body.get("msg_id") or uuid.uuid4().hex
        if not isinstance(msg_id, str) or len(msg_id) > 100:
            raise ValueError("'msg_id' must be a string of at most 100 characters")
        for name, value in (("sender", sender), ("text", text), ("msg_id", msg_id)):
            if UNSAFE_TEXT.search(value):
                raise ValueError(f"'{name}' contains control characters or unpaired surrogates")
        return InboundMessage(channel="api", account=account, sender=sender.strip(), msg_id=msg_id, kind="text",
                              text=text)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=json.loads)
            message = self.parse(body)
        except RecursionError:  # e.g. 30,000 nested arrays: the parser gives up; the request is bad
            return web.json_response({"error": "bad_request", "detail": "JSON nested too deeply"}, status=400)
        except (ValueError, json.JSONDecodeError) as exc:
            return web.json_response({"error": "bad_request", "detail": str(exc)}, status=400)
        result = await self.sink.accept(message)
        if not isinstance(result, Accepted):
            return web.json_response({"replies": [], "duplicate": True})
        try:
            replies = await asyncio.wait_for(asyncio.shield(result.replies), self.reply_timeout)
        except TimeoutError:
            result.defer()
            return web.json_response({"replies": [], "queued": True}, status=202)
        return web.json_response(
            {"msg_id": message.msg_id, "replies": [{"text": r.text, "kind": r.kind, **r.data} for r in replies]}
        )
