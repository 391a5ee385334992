"""The dialogue policy interface: given one turn, decide what the bot says and does.

The engine owns storage, locking and delivery; a policy only reads the turn and returns replies (and
may change the conversation through the verbs in ``bot.conversation`` and run actions). The NLU and
conversation issues plug their policies in here; until then :class:`WelcomePolicy` answers honestly
with what Yezhu can do, without pretending to understand.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import EventBatch
from bot.store.models import Conversation, Identity, Owner
from channels.base import InboundMessage, OutboundMessage

if TYPE_CHECKING:  # typing only: bot.runtime imports the policy, and nlu is loaded by the runtime
    from bot.runtime import Runtime
    from nlu.types import ParseResult

__all__ = ["HELP", "NON_TEXT", "WELCOME", "OutboundMessage", "Policy", "Turn", "WelcomePolicy"]
# OutboundMessage is re-exported: actions build replies with it without importing a channel module.

WELCOME = (
    "您好，欢迎关注！我是业主服务助手，24小时在线。\n"
    "您可以直接留言告诉我：\n"
    "1. 报修：如“卫生间漏水”“楼道灯不亮”\n"
    "2. 投诉与建议\n"
    "3. 咨询：物业费、装修、停车、门禁卡等\n"
    "4. 办证：房产证办理进度、所需材料\n"
    "需要人工客服请回复“人工”。"
)

HELP = (
    "您好，我是业主服务助手。请用一句话告诉我您要办的事，例如：\n"
    "· 报修：“3栋2单元501卫生间漏水”\n"
    "· 投诉：“楼上装修太吵”\n"
    "· 咨询：“物业费怎么交”\n"
    "· 办证：“我的房产证办好了吗”\n"
    "需要人工客服请回复“人工”。"
)

NON_TEXT = "已收到您发送的内容。为了更快帮您处理，请用文字简单描述一下您的问题，谢谢！"


@dataclass(slots=True)
class Turn:
    """Everything a policy may look at and change for one inbound message."""

    inbound: InboundMessage
    message_id: int
    """The stored inbound message (already committed, with its NLU parse)."""
    conversation: Conversation
    identity: Identity
    owner: Owner | None
    parse: ParseResult | None
    """The NLU result for text messages; None for events and media (or when NLU failed)."""
    session: AsyncSession
    events: EventBatch
    now: dt.datetime
    runtime: Runtime
    extra: dict[str, Any] = field(default_factory=dict)


class Policy(Protocol):
    async def respond(self, turn: Turn) -> list[OutboundMessage]: ...


class WelcomePolicy:
    """The platform's policy: welcome on subscribe, help text otherwise, silence on unsubscribe."""

    async def respond(self, turn: Turn) -> list[OutboundMessage]:
        msg = turn.inbound
        if msg.kind == "event":
            if msg.event in ("subscribe", "scan"):
                return [OutboundMessage(WELCOME)]
            if msg.event in ("unsubscribe", "view", "location", "templatesendjobfinish"):
                return []
            return [OutboundMessage(HELP)]
        if msg.kind in ("text", "voice") and msg.text.strip():
            return [OutboundMessage(HELP)]
        if msg.kind == "unknown":
            return [OutboundMessage("抱歉，暂时无法识别这类消息。" + HELP)]
        return [OutboundMessage(NON_TEXT)]
