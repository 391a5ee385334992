"""The terminal channel (``yezhu chat``): a person at a terminal talks to the bot as an owner.

It speaks as an existing channel identity (a WeChat openid or an SMS phone number), so the bot treats
the conversation exactly as it would on that channel, and it always waits for the full answer.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Callable
from typing import TextIO

from channels.base import Accepted, InboundMessage, MessageSink, OutboundMessage


class TerminalChannel:
    name = "terminal"

    def __init__(self, sink: MessageSink, *, channel: str, account: str, sender: str) -> None:
        self.sink, self.channel, self.account, self.sender = sink, channel, account, sender
        self._ids = itertools.count(1)
        self._session = f"term-{int(time.time() * 1000)}"

    async def say(self, text: str) -> list[OutboundMessage]:
        message = InboundMessage(
            channel=self.channel, account=self.account, sender=self.sender,
            msg_id=f"{self._session}-{next(self._ids)}", kind="text", text=text,
        )
        result = await self.sink.accept(message)
        if not isinstance(result, Accepted):
            return []
        return await result.replies

    async def repl(
        self, stdin: TextIO = sys.stdin, write: Callable[[str], object] = print, prompt: str = "业主> "
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if stdin.isatty():
                write(prompt)
            line = await loop.run_in_executor(None, stdin.readline)
            if not line:
                return
            text = line.strip()
            if not text:
                continue
            if text in ("/quit", "/exit"):
                return
            for reply in await self.say(text):
                write("客服> " + reply.text.replace("\n", "\n      "))
