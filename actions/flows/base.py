"""Flows and the router that picks one for each message (in the spirit of aiogram's routers and Rasa's forms).

A **flow** is one piece of the desk's work (a repair, a complaint, binding, …). It declares

* ``intents``: the NLU intents that start it (``start``);
* ``forms``: the names of the forms it owns; while one is active (``state["form"]["name"]``) the
  router hands the owner's messages to the flow's ``step`` first (``None`` = "not mine, route it");
* ``intercept`` (with ``priority``): a filter that claims a message before any form, e.g. an emergency,
  or "我的报修" asked in the middle of a repair form;
* ``opening``: how it is started from outside a turn (a survey after a ticket closes, a campaign
  reply), see :meth:`Router.begin`.

A form's slots are :class:`Slot` objects: a question, an example, and a validator that turns the
message into a value, rejects it with a reason, or finds nothing for the slot in it.

The router's order, which every flow relies on (highest first):

1. intercepts by priority (an open emergency 100, a new emergency 90, progress of tickets 50,
   a request for a person 40, a pick among offered knowledge-base answers 10);
2. cancel of an active form (the form's flow may say goodbye its own way);
3. the active form's flow (``step``);
4. the flow registered for the message's intent (``start``);
5. the fallback flow (did not understand).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from actions.flows.context import Ctx, State

FORM_TIMEOUT = dt.timedelta(minutes=30)
MIND_CHANGE = re.compile(r"还是|改成|改到|改为|换成|换到|不过|但是|要不|那就")
""""算了 还是周六吧": a change of mind, not a cancel."""
CERTIFICATE = re.compile(r"房产证|房本|产权证|不动产证|不动产权|大产证|小产证|(?:房|的)本子(?:.{0,4})(?:拿|领|下来|办)|办证|领证"
                         r"|(?:房子|房)的证(?:.{0,4})(?:办|拿|领|下来|出来|好)")
CONFIDENT = 0.5

CANCEL = re.compile(
    r"^(算了|取消|不用了|不需要了|不报了|退出|结束|不修了|先不用|不弄了|不搞了|cancel)[了吧啊呗。！!,，\s]*$"
    r"|算了|取消报修|取消投诉|不用报了|不报了|不修了|先不报|不用修了|不用来了|不用麻烦了"
    r"|不用了.{0,4}(?:自己|弄好|修好|好了|没事)|(?:自己|已经)(?:弄|修|搞)好了|已经好了|没事了不用"
)


@dataclass(frozen=True, slots=True)
class Filled:
    """A validator's verdict: these slot values (a slot may set companions, e.g. the ISO visit time)."""

    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A validator's verdict: the message was meant for the slot but cannot be accepted; say why."""

    reason: str


Verdict = Filled | Rejected | None
Validator = Callable[[Ctx, dict[str, Any]], Awaitable[Verdict]]


@dataclass(frozen=True, slots=True)
class Slot:
    """One slot of a form: what to ask, an example of a good answer, and how to read one.

    ``validate(ctx, slots)`` reads the current message: :class:`Filled` with the new values,
    :class:`Rejected` with a reason, or ``None`` when the message has nothing for this slot. A
    correction ("不对，是卧室") is the same validator run on a slot already filled: a ``Filled`` verdict
    replaces the old value.
    """

    name: str
    question: str
    example: str
    validate: Validator
    corrects: bool = True
    """Whether a later message may replace the value (a correction); False for derived slots."""

    def ask(self) -> str:
        return f"{self.question}（例如：{self.example}）" if self.example else self.question

    def reask(self, reason: str) -> str:
        """The question again after a refusal: why, then the question with its example."""
        return f"{reason}{self.ask()}"


class Flow:
    """Base class: a flow handles nothing until it says so."""

    name: ClassVar[str] = ""
    intents: ClassVar[frozenset[str]] = frozenset()
    forms: ClassVar[frozenset[str]] = frozenset()
    priority: ClassVar[int] = 0
    """Order of ``intercept`` among flows (higher first); 0 = no intercept."""
    timeout: ClassVar[dt.timedelta] = FORM_TIMEOUT
    """An unanswered form of this flow is dropped (politely) after this long; a survey waits longer."""

    async def intercept(self, ctx: Ctx) -> list[str] | None:
        return None

    async def start(self, ctx: Ctx) -> list[str]:
        raise NotImplementedError(f"{self.name} cannot be started by an intent")

    async def step(self, ctx: Ctx, form: dict[str, Any]) -> list[str] | None:
        return None

    async def answer(self, ctx: Ctx) -> list[str]:
        """Answer the message as an aside, inside another flow's form (which then resumes)."""
        return await self.start(ctx)

    async def cancel(self, ctx: Ctx, form: dict[str, Any]) -> list[str]:
        from actions.flows.context import NEXT

        drop_form(ctx.state)
        ctx.state.pop("queued", None)
        return ["好的，已为您取消本次登记。" + NEXT]

    async def resume(self, ctx: Ctx, resume: dict[str, Any]) -> str:
        """Pick the flow up again after another flow (binding, choosing a house) finished."""
        return "请问有什么可以帮您？"

    def opening(self, state: State, slots: dict[str, Any]) -> str:
        """Start this flow's form from outside a turn; returns the first question to send."""
        raise NotImplementedError(f"{self.name} cannot be started from outside a turn")


def new_form(state: State, name: str, slots: dict[str, Any] | None = None, asking: str | None = None,
             now: dt.datetime | None = None) -> dict[str, Any]:
    form: dict[str, Any] = {"name": name, "slots": dict(slots or {}), "asking": asking}
    if now is not None:
        form["updated"] = now.isoformat()
    state["form"] = form
    return form


def drop_form(state: State) -> None:
    state.pop("form", None)
    state.pop("resume", None)


def expired(form: dict[str, Any], now: dt.datetime, timeout: dt.timedelta = FORM_TIMEOUT) -> bool:
    updated = form.get("updated")
    return isinstance(updated, str) and now - dt.datetime.fromisoformat(updated) > timeout


F = TypeVar("F", bound=Flow)


class Router:
    """The registered flows, and the order in which they see a message (see the module docstring)."""

    def __init__(self, flows: Iterable[Flow] = (), *, fallback: str = "smalltalk") -> None:
        self._flows: dict[str, Flow] = {}
        self._forms: dict[str, Flow] = {}
        self._intents: dict[str, Flow] = {}
        self._intercepting: list[Flow] = []
        """Flows with a priority, highest first (ties in registration order): who may intercept."""
        self.fallback = fallback
        for flow in flows:
            self.register(flow)

    def register(self, flow: Flow) -> Flow:
        if not flow.name or flow.name in self._flows:
            raise ValueError(f"flow name missing or taken: {flow.name!r}")
        for form in flow.forms | {flow.name}:
            if form in self._forms:
                raise ValueError(f"form {form!r} is already owned by {self._forms[form].name}")
            self._forms[form] = flow
        for intent in flow.intents:
            if intent in self._intents:
                raise ValueError(f"intent {intent!r} is already handled by {self._intents[intent].name}")
            self._intents[intent] = flow
        self._flows[flow.name] = flow
        self._intercepting = sorted((f for f in self._flows.values() if f.priority), key=lambda f: -f.priority)
        return flow

    def flow(self, name: str) -> Flow:
        return self._flows[name]

    def get(self, kind: type[F]) -> F:
        """The registered flow of class ``kind`` (typed access for flows that call each other)."""
        for flow in self._flows.values():
            if isinstance(flow, kind):
                return flow
        raise LookupError(f"no {kind.__name__} registered")

    def owner_of(self, form: str) -> Flow | None:
        return self._forms.get(form)

    def for_intent(self, intent: str) -> Flow | None:
        return self._intents.get(intent)

    @property
    def flows(self) -> list[Flow]:
        return list(self._flows.values())

    def begin(self, state: State, name: str, now: dt.datetime, **slots: Any) -> str:
        """Start flow ``name`` outside a turn: its form goes into ``state``; returns the text to send.

        The caller stores ``state`` on the conversation (replacing the JSON whole) and sends the text
        through the engine; the owner's answer then reaches the flow's ``step`` like any form.
        """
        flow = self.flow(name)
        text = flow.opening(state, slots)
        if isinstance(state.get("form"), dict):
            state["form"]["updated"] = now.isoformat()
        return text

    async def route(self, ctx: Ctx) -> list[str]:
        for flow in self._intercepting:
            replies = await flow.intercept(ctx)
            if replies is not None:
                return replies
        form = ctx.form
        if form is not None:
            owner = self.owner_of(form["name"])
            if owner is None:
                drop_form(ctx.state)  # a form of a flow that no longer exists
            else:
                if CANCEL.search(ctx.text) and len(ctx.text) <= 14 and not MIND_CHANGE.search(ctx.text):
                    return await owner.cancel(ctx, form)
                replies = await owner.step(ctx, form)
                if replies is not None:
                    ctx.state["misses"] = 0
                    return replies
        intent, confident = intent_of(ctx)
        chosen = self.for_intent(intent) if confident or intent in ("greet", "thanks") else None
        if chosen is not None:
            ctx.state["misses"] = 0
            return await chosen.start(ctx)
        return await self.flow(self.fallback).start(ctx)


def intent_of(ctx: Ctx) -> tuple[str, bool]:
    """The message's intent and whether it is confident enough to act on."""
    parse = ctx.parse
    if parse is None:
        return "other", False
    intent, confident = parse.intent, parse.confidence >= CONFIDENT
    if parse.entity("repair_category") is not None and intent in ("other", "greet", "affirm"):
        return "repair", True  # "楼道灯坏了。" with a weak intent: the category says repair
    if intent in ("inquiry", "other", "repair") and CERTIFICATE.search(ctx.text) and parse.entity("urgency") is None:
        return "certificate", True  # "我家的本子能拿了吗": owners' words for the certificate
    return intent, confident
