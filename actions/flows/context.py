"""The turn context every flow receives: the turn, the dialogue state, and the desk's shared look-ups.

``Ctx`` is built once per turn by :class:`actions.policy.DialoguePolicy`. It caches what several flows
ask for in one turn (the owner, their houses, the project and its settings) so a flow never repeats a
query, and it carries the policy's typed dependencies (:class:`Desk`).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from actions.knowledge import KnowledgeService
from actions.notify import Notifier
from bot.events import EventBatch
from bot.policy import Turn
from bot.store.models import Building, Conversation, House, Identity, Owner, OwnerHouse, Project

if TYPE_CHECKING:
    from actions.flows.base import Router
    from bot.runtime import Runtime
    from nlu.types import Entity, ParseResult

State = dict[str, Any]
"""``Conversation.state``: JSON, replaced as a whole at the end of a turn (see actions/policy.py)."""

PROJECT_TTL = 60.0
"""Seconds a sender's project (an account's, for owners without a bound house; an owner's, by the house
they chose) is kept between look-ups."""
PROJECT_CACHE_SIZE = 50_000
PHONE = re.compile(r"(?<!\d)(1[3-9]\d{9})(?!\d)")
NEXT = "还有其他需要，直接留言告诉我即可。"


def mask_phone(phone: str | None) -> str:
    return f"{phone[:3]}****{phone[-4:]}" if phone and len(phone) == 11 else (phone or "")


def house_text(house: House) -> str:
    return f"{house.building.name}栋{house.unit}单元{house.room}"


def house_matches(house: House, parts: dict[str, Any]) -> bool:
    return (
        str(parts.get("building", "")) == house.building.name
        and (not parts.get("unit") or str(parts["unit"]) == house.unit)
        and str(parts.get("room", "")) == house.room
    )


ROOM = re.compile(r"(?<![\d栋幢单元-])(\d{3,4})(?!\d)(?:那套|那边|那间|那个|的|室|号房|房)?")


async def house_by_room(ctx: Ctx) -> House | None:
    """The owner's home named by its room alone ("601那套"), when exactly one home has that room."""
    rooms = set(ROOM.findall(ctx.text))
    if not rooms:
        return None
    matches = [h for h in await ctx.houses() if h.room in rooms]
    return matches[0] if len(matches) == 1 else None


class Desk:
    """The policy's dependencies, typed: the runtime's settings, knowledge base and notifier (SMS and
    every proactive message, ``actions/notify.py``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.knowledge: KnowledgeService = runtime.knowledge
        self.notifier: Notifier = runtime.notifier
        self._projects: dict[tuple[Any, ...], tuple[str | None, float]] = {}

    def cached_project(self, key: tuple[Any, ...]) -> tuple[str | None] | None:
        """``(code,)`` of a sender's project looked up less than ``PROJECT_TTL`` ago, else None."""
        hit = self._projects.get(key)
        return (hit[0],) if hit is not None and hit[1] > time.monotonic() else None

    def remember_project(self, key: tuple[Any, ...], code: str | None) -> None:
        if len(self._projects) >= PROJECT_CACHE_SIZE:
            self._projects.clear()
        self._projects[key] = (code, time.monotonic() + PROJECT_TTL)

    def forget_owner_projects(self, owner_id: int) -> None:
        for key in [k for k in self._projects if k[:2] == ("owner", owner_id)]:
            del self._projects[key]


@dataclass
class Ctx:
    """One turn as the flows see it."""

    turn: Turn
    state: State
    desk: Desk
    router: Router
    _cache: dict[str, Any] = field(default_factory=dict)

    # -- the turn -------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self.turn.inbound.text.strip()

    @property
    def parse(self) -> ParseResult | None:
        return self.turn.parse

    @property
    def intent(self) -> str:
        return self.turn.parse.intent if self.turn.parse is not None else "other"

    def entity(self, name: str) -> Entity | None:
        return self.turn.parse.entity(name) if self.turn.parse is not None else None

    def entity_value(self, name: str) -> str | None:
        ent = self.entity(name)
        return ent.value if ent is not None else None

    @property
    def session(self) -> AsyncSession:
        return self.turn.session

    @property
    def events(self) -> EventBatch:
        return self.turn.events

    @property
    def now(self) -> dt.datetime:
        return self.turn.now

    @property
    def identity(self) -> Identity:
        return self.turn.identity

    @property
    def conversation(self) -> Conversation:
        return self.turn.conversation

    @property
    def bound(self) -> bool:
        return self.turn.identity.owner_id is not None

    @property
    def form(self) -> dict[str, Any] | None:
        form = self.state.get("form")
        return form if isinstance(form, dict) else None

    def phone(self) -> str | None:
        """A mobile number in the message (the NLU entity, else the digits as written)."""
        ent = self.entity("phone")
        if ent is not None and PHONE.fullmatch(ent.value):
            return ent.value
        m = PHONE.search(self.turn.inbound.text.replace(" ", "").replace("-", ""))
        return m.group(1) if m else None

    # -- the owner, houses, project -------------------------------------------------------------

    async def owner(self) -> Owner | None:
        turn = self.turn
        if turn.identity.owner_id is None:
            return None
        if turn.owner is None or turn.owner.id != turn.identity.owner_id:
            turn.owner = await turn.session.get(Owner, turn.identity.owner_id)
        return turn.owner

    def forget_houses(self) -> None:
        self._cache.pop("houses", None)
        self._cache.pop("project", None)
        if self.identity.owner_id is not None:
            self.desk.forget_owner_projects(self.identity.owner_id)

    async def houses(self) -> list[House]:
        if "houses" in self._cache:
            return list(self._cache["houses"])
        owner_id = self.turn.identity.owner_id
        houses: list[House] = []
        if owner_id is not None:
            houses = list((await self.session.execute(
                sa.select(House)
                .join(OwnerHouse, OwnerHouse.house_id == House.id)
                .where(OwnerHouse.owner_id == owner_id)
                .options(joinedload(House.building).joinedload(Building.project))
                .order_by(House.id)
            )).scalars())
        self._cache["houses"] = houses
        return list(houses)

    async def house(self, house_id: int | None) -> House | None:
        return next((h for h in await self.houses() if h.id == house_id), None) if house_id else None

    async def project(self) -> Project | None:
        if "project" in self._cache:
            project: Project | None = self._cache["project"]
            return project
        houses = await self.houses()
        chosen = self.state.get("house_id")
        house = next((h for h in houses if h.id == chosen), houses[0] if houses else None)
        if house is not None:
            project = house.building.project
        else:
            account = self.desk.runtime.settings.wechat_accounts.get(self.identity.account)
            code = account.project if account is not None else None
            q = sa.select(Project).order_by(Project.id).limit(1)
            if code:
                q = sa.select(Project).where(Project.code == code)
            project = (await self.session.execute(q)).scalar_one_or_none()
        self._cache["project"] = project
        return project

    async def project_code(self) -> str | None:
        # Which project's knowledge-base answers apply is asked on most messages: the account's project
        # (an owner without a house) or the owner's, by the house they chose, is kept for a minute
        # (``PROJECT_TTL``) instead of queried each time; binding a house forgets it at once.
        if "project" in self._cache:
            project: Project | None = self._cache["project"]
            return project.code if project else None
        owner_id = self.identity.owner_id
        key = ("owner", owner_id, self.state.get("house_id")) if owner_id is not None else ("account", self.identity.account)
        cached = self.desk.cached_project(key)
        if cached is not None:
            return cached[0]
        project = await self.project()
        code = project.code if project else None
        self.desk.remember_project(key, code)
        return code

    async def setting(self, key: str, default: Any = None) -> Any:
        project = await self.project()
        return ((project.settings if project else None) or {}).get(key, default)
