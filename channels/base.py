"""The small interface every channel adapter speaks (after Rasa's ``InputChannel``/``OutputChannel``).

Channels import nothing of ours but this module. Everything a channel needs from the rest of Yezhu
arrives as one of the protocols below, so the channel can be tested with no database, Redis or NLU.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

UNSAFE_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
"""Characters no owner types and no database stores: C0 controls but tab, newline and carriage return;
DEL; lone surrogates (PostgreSQL refuses NUL in text, and a surrogate cannot be encoded)."""

MessageKind = Literal["text", "voice", "image", "location", "link", "event", "video", "file", "unknown"]


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message from an owner, as the channel verified and parsed it.

    ``msg_id`` is the channel's own id (WeChat MsgId; for events, FromUserName + CreateTime), the key
    the engine de-duplicates on together with ``channel`` and ``account``.
    """

    channel: str
    account: str
    sender: str
    msg_id: str
    kind: MessageKind
    text: str = ""
    media: dict[str, Any] = field(default_factory=dict)
    event: str | None = None
    received_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One reply to an owner. Rich content falls back to ``text`` on channels that lack it."""

    text: str
    kind: Literal["text", "news", "image", "template"] = "text"
    """``template``: a channel's template message (WeChat 模板消息), ``data`` saying which and its fields."""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SendResult:
    """What a channel's outbound API said about one send."""

    ok: bool
    provider_id: str | None = None
    error_code: int | str | None = None
    error: str | None = None
    retryable: bool = False


class SendError(Exception):
    """A send that failed; ``retryable`` tells the job queue whether trying again can help."""

    def __init__(self, message: str, *, code: int | str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class TokenCache(Protocol):
    """A cache shared by every process for an API access token (WeChat's must not be fought over)."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl: int) -> None: ...

    async def delete(self, key: str, only_if: str | None = None) -> None: ...

    def lock(self, key: str, timeout: float) -> Any:
        """An async context manager serialising the refresh of ``key`` across processes."""
        ...


class NonceStore(Protocol):
    """Values remembered for a while by every process (the shared ``services`` cache satisfies it).

    The WeChat channel keeps each signed request's ``(timestamp, nonce)`` with a digest of its body here
    for the signature window, so a captured request cannot be replayed with another body.
    """

    async def set_if_absent(self, key: str, value: str, ttl: int) -> str | None:
        """Store ``value`` under ``key`` for ``ttl`` s unless a value is there already; return the value
        already stored, or ``None`` when ours was stored. Atomic across processes."""
        ...


@dataclass(frozen=True, slots=True)
class Accepted:
    """The engine committed an inbound message; ``replies`` resolves when the bot has answered."""

    replies: Awaitable[list[OutboundMessage]]
    defer: Callable[[], None]
    """Call when the channel can no longer reply inline: the engine then sends the replies itself."""


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The engine has seen this ``(channel, account, msg_id)`` already; nothing was stored."""


class MessageSink(Protocol):
    """What a channel hands a parsed message to (the engine)."""

    async def accept(self, message: InboundMessage) -> Accepted | Duplicate: ...


class OutputChannel(Protocol):
    """Sends a message to one recipient outside a request/response cycle."""

    name: str

    async def send(self, account: str, recipient: str, message: OutboundMessage) -> SendResult: ...


@dataclass(frozen=True, slots=True)
class ChannelCapabilities:
    """What a channel can carry, so callers ask "can I?" instead of "is it WeChat?"."""

    reply_window: dt.timedelta | None = None
    """Free messages reach the owner only this long after they last wrote (WeChat: 48 h); None: always."""
    max_length: int | None = None
    """Characters one message may carry."""
    templates_only: bool = False
    """Only provider-approved templates can be sent (SMS in China): no free text."""
    push: bool = True
    """The channel can reach the owner on its own (False: the owner's client reads the conversation)."""
    template_messages: bool = False
    """Approved template messages reach a follower whatever the reply window (WeChat 模板消息)."""
    sender_is_phone: bool = False
    """The sender's id is a phone number the carrier verified (SMS): it identifies a registered owner."""

    @property
    def free_text(self) -> bool:
        return self.push and not self.templates_only

    def window_open(self, last_inbound: dt.datetime | None, now: dt.datetime) -> bool:
        if self.reply_window is None:
            return True
        return last_inbound is not None and now - last_inbound < self.reply_window


WECHAT = ChannelCapabilities(reply_window=dt.timedelta(hours=48), max_length=2048, template_messages=True)
SMS = ChannelCapabilities(reply_window=None, max_length=500, templates_only=True, sender_is_phone=True)
PULL = ChannelCapabilities(push=False)
"""The JSON API and the terminal: replies are stored and read by the owner's client."""
BUILTIN_CAPABILITIES: dict[str, ChannelCapabilities] = {"wechat": WECHAT, "sms": SMS, "api": PULL, "terminal": PULL}


class ChannelRegistry:
    """Output channels by name, with their capabilities (after Rasa's ``BUILTIN_CHANNELS``)."""

    def __init__(self) -> None:
        self._caps: dict[str, ChannelCapabilities] = {}
        self._senders: dict[str, OutputChannel] = {}

    def register(self, name: str, caps: ChannelCapabilities, sender: OutputChannel | None = None) -> None:
        self._caps[name] = caps
        if sender is not None:
            self._senders[name] = sender

    def capabilities(self, name: str) -> ChannelCapabilities | None:
        return self._caps.get(name)

    def sender(self, name: str) -> OutputChannel | None:
        return self._senders.get(name)

    @property
    def senders(self) -> dict[str, OutputChannel]:
        return self._senders
