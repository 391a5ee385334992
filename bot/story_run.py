"""Playing a conversation story (``bot/stories.py``, docs/STORIES.md) and checking it.

The runner prepares the database (personas, a fixed clock, existing tickets, project settings,
certificate records), sends each line through a :class:`Driver` -- the signed WeChat webhook in the
tests, the engine itself for ``yezhu chat --replay`` -- and records every check, so a failure shows the
whole transcript so far.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.db import Database
from bot.store.models import (
    Building,
    Campaign,
    CertificateRecord,
    Conversation,
    Delivery,
    House,
    Identity,
    Owner,
    OwnerHouse,
    Project,
    SmsOutbox,
    StaffUser,
    SurveyResponse,
    Ticket,
    TicketEvent,
)

if TYPE_CHECKING:
    from bot.engine import Engine
    from bot.settings import Settings
from bot import conversation as verbs
from bot.events import EventBatch
from bot.stories import (
    CHINA,
    DEMO_PROJECT,
    OPENID,
    PERSONAS,
    TEXT_FIELDS,
    Step,
    Story,
    StoryError,
    load_stories,
    parse_clock,
)


class Driver(Protocol):
    """Sends one owner message and returns the bot's reply text ("" when it said nothing)."""

    async def send(self, openid: str, kind: str, text: str) -> str: ...


@dataclass
class Check:
    ok: bool
    what: str
    detail: str = ""


@dataclass
class StepResult:
    speaker: str
    kind: str
    said: str
    reply: str
    clock: dt.datetime
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass
class StoryResult:
    story: Story
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps) and len(self.steps) == len(self.story.steps)

    def transcript(self, *, marks: bool = True) -> str:
        path = Path(self.story.file)
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        lines = [f"story: {self.story.name}  ({shown})"]
        for n, s in enumerate(self.steps, 1):
            said = {"voice": "[语音] ", "image": "[图片]"}.get(s.kind, "") + s.said
            lines.append(f"{n:>2}. [{s.clock:%a %H:%M}] {s.speaker}> {said}")
            lines.append("      bot> " + (s.reply or "（无回复）").replace("\n", "\n           "))
            for c in s.checks:
                if marks or not c.ok:
                    lines.append(f"      {'✓' if c.ok else '✗'} {c.what}" + (f" — {c.detail}" if c.detail and not c.ok else ""))
        if len(self.steps) < len(self.story.steps):
            lines.append(f"  (stopped: {len(self.story.steps) - len(self.steps)} step(s) not played)")
        return "\n".join(lines)


def house_label(house: House | None) -> str | None:
    return f"{house.building.name}栋{house.unit}单元{house.room}" if house is not None else None


class StoryRun:
    """Plays one story against a database through a driver; ``set_clock`` fixes the engine's "now"."""

    def __init__(self, story: Story, db: Database, driver: Driver, set_clock: Callable[[dt.datetime], None],
                 account: str = "default") -> None:
        self.story, self.db, self.driver, self.set_clock, self.account = story, db, driver, set_clock, account
        self.run_id = uuid.uuid4().hex[:8]
        self.openids: dict[str, str] = {}
        self.refs: dict[str, int] = {}
        self.numbers: dict[str, str] = {}
        self._restore: list[tuple[Any, str, Any]] = []

    def openid(self, persona: str) -> str:
        if persona not in self.openids:
            known = PERSONAS.get(persona, (None, None))[0] or (persona if OPENID.fullmatch(persona) else None)
            self.openids[persona] = known or f"oSTORY{self.run_id}{len(self.openids):02d}"
        return self.openids[persona]

    async def play(self, *, stop_at_failure: bool = True) -> StoryResult:
        result = StoryResult(self.story)
        clock = self.story.clock
        try:
            await self._prepare()
            for step in self.story.steps:
                if step.clock:
                    clock = parse_clock(step.clock, clock, f"{self.story.name}: clock")
                self.set_clock(clock.astimezone(dt.UTC))
                result.steps.append(await self._play_step(step, clock))
                if stop_at_failure and not result.steps[-1].ok:
                    break
        finally:
            await self._cleanup()
        return result

    # -- setup ------------------------------------------------------------------------------------

    async def _prepare(self) -> None:
        setup = self.story.setup
        async with self.db.session() as s, s.begin():
            project = (await s.execute(sa.select(Project).where(Project.code == DEMO_PROJECT))).scalar_one_or_none()
            if project is None:
                raise StoryError("the stories need the demo data (`yezhu demo`)")
            speakers = {self.story.owner} | {st.speaker for st in self.story.steps if st.speaker}
            # A fresh start: a conversation a demo owner left open (an earlier replay) is closed, through
            # the state machine's verb so the conversation's log says why.
            left_open = (await s.execute(sa.select(Conversation).where(
                Conversation.identity_id.in_(sa.select(Identity.id).where(
                    Identity.external_id.in_([self.openid(p) for p in speakers]))),
                Conversation.mode != verbs.CLOSED))).scalars()
            for conv in left_open:
                verbs.close(s, EventBatch(), conv, actor="story", reason=f"story replay: {self.story.name}")
            if setup.get("settings"):
                self._restore.append((Project, str(project.id), dict(project.settings or {})))
                project.settings = {**(project.settings or {}), **setup["settings"]}
            binds = setup.get("bind") or []
            for persona in [binds] if isinstance(binds, str) else binds:
                owner = await self._owner(s, persona)
                identity = await s.scalar(sa.select(Identity).where(
                    Identity.channel == "wechat", Identity.account == self.account,
                    Identity.external_id == self.openid(persona)))
                if identity is None:
                    identity = Identity(channel="wechat", account=self.account, external_id=self.openid(persona))
                    s.add(identity)
                identity.owner_id, identity.bound_at = owner.id, self.story.clock.astimezone(dt.UTC)
            for cert in setup.get("certificates") or []:
                await self._certificate(s, dict(cert))
            for n, t in enumerate(setup.get("tickets") or []):
                await self._ticket(s, project, dict(t), n)
            for n, t in enumerate(setup.get("notices") or []):
                await self._notice(s, project, dict(t), n)
            if setup.get("conversation"):
                await self._conversation(s, dict(setup["conversation"]))
            if setup.get("survey"):
                await self._survey(s, dict(setup["survey"]))

    async def _survey(self, s: AsyncSession, spec: dict[str, Any]) -> None:
        """``survey: {ticket: ref}`` (or ``{kind: periodic}``): the callback survey's invitation already
        sent to the story's owner in their chat, as the survey job sends it (actions/surveys.py)."""
        from actions import surveys
        from actions.flows.survey import SurveyFlow, form_slots

        owner = await self._owner(s, self.story.owner)
        ticket = await s.get(Ticket, self.refs[spec["ticket"]]) if spec.get("ticket") else None
        kind = spec.get("kind") or (ticket.kind if ticket else "periodic")
        template = await surveys.template_for(s, kind, ticket.project_id if ticket else None)
        if template is None:
            raise StoryError(f"{self.story.name}: no survey template for {kind}")
        house_id = ticket.house_id if ticket else await s.scalar(
            sa.select(OwnerHouse.house_id).where(OwnerHouse.owner_id == owner.id).limit(1))
        now = self.story.clock.astimezone(dt.UTC)
        row = SurveyResponse(template_id=template.id, owner_id=owner.id, ticket_id=ticket.id if ticket else None,
                             kind=kind, project_id=ticket.project_id if ticket else None, house_id=house_id,
                             status="invited", channel="wechat", invited_at=now, created_at=now)
        s.add(row)
        await s.flush()
        openid = self.openid(self.story.owner)
        identity = (await s.execute(sa.select(Identity).where(
            Identity.channel == "wechat", Identity.account == self.account, Identity.external_id == openid))
        ).scalar_one_or_none()
        if identity is None:
            raise StoryError(f"{self.story.name}: a survey needs the owner's WeChat bound (setup: bind)")
        state: dict[str, Any] = {}
        SurveyFlow().opening(state, form_slots(row, template, sms=False, number=ticket.number if ticket else None))
        state["form"]["updated"] = now.isoformat()
        s.add(Conversation(identity_id=identity.id, owner_id=identity.owner_id, mode="bot", state=state))

    async def _owner(self, s: AsyncSession, persona: str) -> Owner:
        phone = PERSONAS.get(persona, (None, None))[1]
        owner = (await s.execute(sa.select(Owner).where(Owner.phone == phone))).scalar_one_or_none() if phone else None
        if owner is None:
            raise StoryError(f"{self.story.name}: {persona!r} is not a registered owner (张三, 李四, 王五)")
        return owner

    async def _house(self, s: AsyncSession, text: str) -> House:
        m = re.fullmatch(r"(\d+)栋(\d+)单元(\d+)", str(text))
        if m is None:
            raise StoryError(f"{self.story.name}: a house is written like 3栋2单元501, not {text!r}")
        house = (await s.execute(
            sa.select(House).join(Building).join(Project)
            .where(Project.code == DEMO_PROJECT, Building.name == m.group(1), House.unit == m.group(2),
                   House.room == m.group(3)))).scalar_one_or_none()
        if house is None:
            raise StoryError(f"{self.story.name}: no house {text} in the demo data")
        return house

    async def _certificate(self, s: AsyncSession, cert: dict[str, Any]) -> None:
        house = await self._house(s, cert.pop("house"))
        record = (await s.execute(sa.select(CertificateRecord).where(CertificateRecord.house_id == house.id))
                  ).scalar_one_or_none()
        if record is None:
            record = CertificateRecord(house_id=house.id, status="processing")
            s.add(record)
            await s.flush()
            self._restore.append((CertificateRecord, str(record.id), None))
        else:
            self._restore.append((CertificateRecord, str(record.id),
                                  {k: getattr(record, k) for k in cert}))
        for key, value in cert.items():
            if not hasattr(CertificateRecord, key):
                raise StoryError(f"{self.story.name}: certificate record has no field {key!r}")
            setattr(record, key, value)

    async def _ticket(self, s: AsyncSession, project: Project, t: dict[str, Any], n: int) -> None:
        from actions.tickets import next_number

        persona = t.get("owner", self.story.owner)
        owner = await self._owner(s, persona) if persona in PERSONAS else None
        house: House | None = None
        if t.get("house"):
            house = await self._house(s, t["house"])
        elif owner is not None and not t.get("location"):
            house = (await s.execute(sa.select(House).join(OwnerHouse, OwnerHouse.house_id == House.id)
                                     .where(OwnerHouse.owner_id == owner.id).order_by(House.id).limit(1))).scalar()
        age = parse_clock(f"+{t.get('age', '1d')}", dt.datetime(2000, 1, 1, tzinfo=CHINA)) - dt.datetime(2000, 1, 1, tzinfo=CHINA)
        created = (self.story.clock - age).astimezone(dt.UTC)
        kind = t.get("kind", "repair")
        assignee = None
        if t.get("assignee"):
            assignee = (await s.execute(sa.select(StaffUser).where(sa.or_(
                StaffUser.username == t["assignee"], StaffUser.display_name == t["assignee"])))).scalar_one()
        status = t.get("status", "new")
        ticket = Ticket(
            number=await next_number(s, kind, created), kind=kind, category=t.get("category"), project_id=project.id,
            house_id=house.id if house else None, location=t.get("location"), owner_id=owner.id if owner else None,
            contact_phone=owner.phone if owner else None, description=str(t.get("description", "")),
            priority=t.get("priority", "normal"), status=status, assignee_id=assignee.id if assignee else None,
            visit_time=t.get("visit_time"), created_at=created, due_at=created + dt.timedelta(hours=24),
            rework_count=int(t.get("rework", 0)), closed_at=created + age / 2 if status == "closed" else None,
        )
        s.add(ticket)
        await s.flush()
        s.add(TicketEvent(ticket_id=ticket.id, kind="created", actor="bot", at=created, data={"setup": True}))
        ref = str(t.get("ref") or f"ticket{n + 1}")
        self.refs[ref], self.numbers[ref] = ticket.id, ticket.number

    async def _notice(self, s: AsyncSession, project: Project, t: dict[str, Any], n: int) -> None:
        """A campaign notice the owner received before the story (a ``Campaign`` and its ``Delivery``)."""
        persona = t.get("owner", self.story.owner)
        owner = await self._owner(s, persona)
        if t.get("house"):
            house = await self._house(s, t["house"])
        else:
            house = (await s.execute(sa.select(House).join(OwnerHouse, OwnerHouse.house_id == House.id)
                                     .where(OwnerHouse.owner_id == owner.id).order_by(House.id).limit(1))).scalar_one()
        age = parse_clock(f"+{t.get('age', '1d')}", dt.datetime(2000, 1, 1, tzinfo=CHINA)) - dt.datetime(2000, 1, 1, tzinfo=CHINA)
        sent = (self.story.clock - age).astimezone(dt.UTC)
        kind = str(t.get("kind", "notice"))
        channel = str(t.get("channel", "wechat"))
        campaign = Campaign(name=f"story {self.story.name} #{n + 1}", kind=kind, text=str(t.get("text", "")),
                            status="done", project_id=project.id, params=dict(t.get("params") or {}),
                            channels=[channel], created_by="story", created_at=sent, started_at=sent, finished_at=sent)
        s.add(campaign)
        await s.flush()
        delivery = Delivery(campaign_id=campaign.id, owner_id=owner.id, house_id=house.id, channel=channel,
                            recipient=self.openid(persona) if channel == "wechat" else owner.phone,
                            idempotency_key=f"story:{campaign.id}:{owner.id}:{channel}",
                            status=str(t.get("status", "delivered")), text=campaign.text, sent_at=sent,
                            created_at=sent)
        s.add(delivery)
        await s.flush()
        self._restore.append((Campaign, str(campaign.id), None))
        self._restore.append((Delivery, str(delivery.id), None))

    async def _conversation(self, s: AsyncSession, conv: dict[str, Any]) -> None:
        persona = conv.get("owner", self.story.owner)
        openid = self.openid(persona)
        identity = (await s.execute(sa.select(Identity).where(
            Identity.channel == "wechat", Identity.account == self.account, Identity.external_id == openid))
        ).scalar_one_or_none()
        if identity is None:
            identity = Identity(channel="wechat", account=self.account, external_id=openid)
            s.add(identity)
            await s.flush()
        s.add(Conversation(identity_id=identity.id, owner_id=identity.owner_id, mode=conv.get("mode", "bot"),
                           state=conv.get("state") or {}))

    async def _cleanup(self) -> None:
        """Undo the setup's changes to shared rows (project settings, certificate records): a replay
        on a real database leaves only what the conversation itself did."""
        if not self._restore:
            return
        async with self.db.session() as s, s.begin():
            for model, key, old in reversed(self._restore):
                row = await s.get(model, int(key))
                if row is None:
                    continue
                if model is Project:
                    row.settings = old
                elif old is None:
                    await s.delete(row)
                else:
                    for k, v in old.items():
                        setattr(row, k, v)
        self._restore.clear()

    # -- steps --------------------------------------------------------------------------------------

    async def _play_step(self, step: Step, clock: dt.datetime) -> StepResult:
        speaker = step.speaker or self.story.owner
        text = await self._fill(step.text, escape=False)
        before = await self._snapshot()
        reply = await self.driver.send(self.openid(speaker), step.kind, text)
        result = StepResult(speaker, step.kind, text, reply or "", clock)
        async with self.db.session() as s:
            await self._check(s, step, result, before, speaker)
        return result

    async def _fill(self, text: str, *, escape: bool) -> str:
        """``{code}``: the last verification code sent by SMS; ``{leak}``: the number of ticket ``leak``."""
        async def value(name: str) -> str | None:
            if name == "code":
                async with self.db.session() as s:
                    staff = sa.select(StaffUser.phone).where(StaffUser.phone.is_not(None))
                    texts = (await s.execute(sa.select(SmsOutbox.text).where(SmsOutbox.phone.not_in(staff))
                                             .order_by(SmsOutbox.id.desc()).limit(1))).scalars().all()
                m = re.search(r"(?<!\d)\d{6}(?!\d)", texts[0]) if texts else None
                return m.group() if m else None
            return self.numbers.get(name)

        out, last = [], 0
        for m in re.finditer(r"\{([a-z_][a-z0-9_]*)\}", text):
            found = await value(m.group(1))
            if found is None:
                continue
            out += [text[last:m.start()], re.escape(found) if escape else found]
            last = m.end()
        return "".join(out) + text[last:]

    async def _snapshot(self) -> dict[str, int]:
        async with self.db.session() as s:
            return {
                "ticket": await s.scalar(sa.select(sa.func.coalesce(sa.func.max(Ticket.id), 0))) or 0,
                "event": await s.scalar(sa.select(sa.func.coalesce(sa.func.max(TicketEvent.id), 0))) or 0,
                "sms": await s.scalar(sa.select(sa.func.coalesce(sa.func.max(SmsOutbox.id), 0))) or 0,
            }

    async def _check(self, s: AsyncSession, step: Step, result: StepResult, before: dict[str, int], speaker: str) -> None:
        checks, reply = result.checks, result.reply
        for p in step.bot:
            p = await self._fill(p, escape=True)
            checks.append(Check(bool(re.search(p, reply)), f"reply says /{p}/", "not found in the reply"))
        for p in step.not_:
            p = await self._fill(p, escape=True)
            m = re.search(p, reply)
            checks.append(Check(m is None, f"reply does not say /{p}/", f"found {m.group()!r}" if m else ""))
        if step.opens is not None:
            opened = await self._tickets(s, Ticket.id > before["ticket"])
            await self._check_opens(s, step.opens, opened, before, checks)
        for ref, spec in step.updates.items():
            if ref not in self.refs:
                checks.append(Check(False, f"ticket {ref}", f"no ticket named {ref!r} (name it with ref: in setup or opens)"))
                continue
            ticket = (await self._tickets(s, Ticket.id == self.refs[ref]))[0]
            problems = await self._match(s, ticket, spec, before)
            checks.append(Check(not problems, f"ticket {ref} ({ticket.number}): {describe(spec)}", "; ".join(problems)))
        if step.conversation is not None:
            mode = await s.scalar(
                sa.select(Conversation.mode).join(Identity, Identity.id == Conversation.identity_id)
                .where(Identity.external_id == self.openid(speaker)).order_by(Conversation.id.desc()).limit(1))
            checks.append(Check(mode == step.conversation, f"conversation is {step.conversation}", f"it is {mode}"))
        if step.duty_sms is not None:
            staff = sa.select(StaffUser.phone).where(StaffUser.phone.is_not(None))
            texts = list((await s.execute(sa.select(SmsOutbox.text).where(
                SmsOutbox.id > before["sms"], SmsOutbox.phone.in_(staff)))).scalars())
            if step.duty_sms == 0:
                checks.append(Check(not texts, "no duty SMS sent", f"{len(texts)} sent: {texts}"))
            elif isinstance(step.duty_sms, int):
                checks.append(Check(len(texts) >= step.duty_sms, f"duty SMS sent (at least {step.duty_sms})",
                                    f"{len(texts)} sent: {texts}"))
            else:
                for p in step.duty_sms:
                    checks.append(Check(any(re.search(p, t) for t in texts), f"duty SMS says /{p}/",
                                        f"duty SMS sent: {texts or 'none'}"))

    async def _check_opens(self, s: AsyncSession, want: int | tuple[dict[str, Any], ...], opened: list[Ticket],
                           before: dict[str, int], checks: list[Check]) -> None:
        got = ", ".join(f"{t.number} {t.kind}/{t.category}/{t.priority} {house_label(t.house) or t.location or ''} "
                        f"«{t.description[:30]}»" for t in opened) or "none"
        if isinstance(want, int):
            checks.append(Check(len(opened) == want, f"opens {want} ticket(s)", f"opened: {got}"))
            return
        if len(opened) != len(want):
            checks.append(Check(False, f"opens {len(want)} ticket(s): " + " | ".join(describe(w) for w in want),
                                f"opened: {got}"))
            return
        best: list[str] | None = None
        for order in itertools.permutations(opened):
            problems = [f"#{n + 1} {p}" for n, (spec, t) in enumerate(zip(want, order, strict=True))
                        for p in await self._match(s, t, spec, before)]
            if not problems:
                for spec, t in zip(want, order, strict=True):
                    if spec.get("ref"):
                        self.refs[str(spec["ref"])], self.numbers[str(spec["ref"])] = t.id, t.number
                break
            if best is None or len(problems) < len(best):
                best = problems
        else:
            checks.append(Check(False, f"opens {len(want)} ticket(s): " + " | ".join(describe(w) for w in want),
                                "; ".join(best or []) + f" (opened: {got})"))
            return
        checks.append(Check(True, f"opens {len(want)} ticket(s): " + " | ".join(describe(w) for w in want)))

    async def _tickets(self, s: AsyncSession, condition: Any) -> list[Ticket]:
        from sqlalchemy.orm import joinedload

        return list((await s.execute(sa.select(Ticket).where(condition).order_by(Ticket.id).options(
            joinedload(Ticket.house).joinedload(House.building)))).scalars())

    async def _match(self, s: AsyncSession, ticket: Ticket, spec: dict[str, Any], before: dict[str, int]) -> list[str]:
        problems: list[str] = []
        events = list((await s.execute(sa.select(TicketEvent).where(
            TicketEvent.ticket_id == ticket.id, TicketEvent.id > before["event"]).order_by(TicketEvent.id))).scalars())
        for key, want in spec.items():
            if key == "ref":
                continue
            if key == "events":
                kinds = [e.kind for e in events]
                if isinstance(want, int):
                    ok = len(kinds) >= want if want else not kinds
                else:
                    ok = all(k in kinds for k in _as_list(want))
                if not ok:
                    problems.append(f"events appended {kinds or 'none'}, expected {want}")
                continue
            if key == "owner":
                owner = (await s.execute(sa.select(Owner).where(Owner.phone == PERSONAS.get(want, (None, ""))[1]))).scalar()
                if owner is None or ticket.owner_id != owner.id:
                    problems.append(f"owner is not {want}")
                continue
            value = _ticket_value(ticket, key, events)
            if key in TEXT_FIELDS:
                text = value or ""
                negate = isinstance(want, dict)
                for p in (want["not"] if negate else want):
                    p = await self._fill(p, escape=True)
                    if bool(re.search(p, text)) == negate:
                        problems.append(f"{key} {'says' if negate else 'lacks'} /{p}/ (is {text[:80]!r})")
            elif isinstance(want, dict) and "not" in want:
                if value in _as_list(want["not"]):
                    problems.append(f"{key} is {value!r}, expected not {want['not']!r}")
            elif value not in _as_list(want):
                problems.append(f"{key} is {value!r}, expected {want!r}")
        return problems


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _ticket_value(ticket: Ticket, key: str, events: list[TicketEvent]) -> Any:
    if key == "house":
        return house_label(ticket.house)
    if key == "contact":
        return ticket.contact_phone
    if key == "covered":
        return (ticket.warranty or {}).get("covered")
    if key == "warranty":
        return (ticket.warranty or {}).get("reason")
    if key == "rework":
        return ticket.rework_count
    if key == "timeline":
        return "\n".join(json.dumps(e.data, ensure_ascii=False) for e in events)
    return getattr(ticket, key)


def describe(spec: dict[str, Any]) -> str:
    parts = []
    for key, value in spec.items():
        if isinstance(value, tuple):
            value = "/" + "/, /".join(value) + "/"
        elif isinstance(value, dict) and "not" in value:
            nv = value["not"]
            value = "not " + ("/" + "/, /".join(nv) + "/" if isinstance(nv, tuple) else str(nv))
        parts.append(f"{key} {value}")
    return ", ".join(parts)


# --- the terminal: ``yezhu chat --replay FILE`` ----------------------------------------------------


class EngineDriver:
    """Hands each line to the engine as a WeChat message from ``openid`` and waits for the answer
    (what the terminal channel of ``yezhu chat`` does, plus voice and photos)."""

    def __init__(self, engine: Engine, account: str = "default") -> None:
        self.engine, self.account = engine, account
        self._ids = itertools.count(1)
        self._session = uuid.uuid4().hex[:10]

    async def send(self, openid: str, kind: str, text: str) -> str:
        from channels.base import Accepted, InboundMessage

        media = {"pic_url": "http://mmbiz.qpic.cn/replay.jpg", "media_id": "replay"} if kind == "image" else {}
        message = InboundMessage(channel="wechat", account=self.account, sender=openid, kind=kind,  # type: ignore[arg-type]
                                 msg_id=f"replay-{self._session}-{next(self._ids)}", text=text, media=media)
        result = await self.engine.accept(message)
        if not isinstance(result, Accepted):
            return ""
        return "\n\n".join(r.text for r in await result.replies)


async def replay(settings: Settings, path: Path, *, name: str | None = None, write: Callable[[str], object] = print) -> int:
    """Play the stories of ``path`` against the configured database; print each transcript with its
    checks; 0 when every story passed, 1 otherwise. Setup rows (tickets, bindings) and what the
    conversations opened stay in the database, as after a real chat: use a demo database."""
    from bot.runtime import Runtime

    stories = load_stories(path)
    if name:
        stories = [s for s in stories if name in (s.name, s.id) or name in s.name]
        if not stories:
            raise StoryError(f"no story named {name!r} in {path}")
    rt = Runtime(settings)
    await rt.start(migrate=settings.is_sqlite)
    results: list[StoryResult] = []
    try:
        for story in stories:

            def set_clock(now: dt.datetime) -> None:
                rt.engine.clock = lambda: now

            result = await StoryRun(story, rt.db, EngineDriver(rt.engine), set_clock).play()
            results.append(result)
            verdict = "PASS" if result.ok else ("FAIL (pending: " + story.pending + ")" if story.pending else "FAIL")
            write(result.transcript() + f"\n=> {verdict}\n")
    finally:
        rt.engine.clock = _real_clock()
        await rt.stop()
    failed = [r for r in results if not r.ok]
    pending = sum(1 for r in failed if r.story.pending)
    write(f"{len(results)} {'story' if len(results) == 1 else 'stories'}: {len(results) - len(failed)} passed, "
          f"{len(failed)} failed"
          + (f" ({pending} of them marked pending)" if pending else ""))
    return 1 if failed else 0


def _real_clock() -> Callable[[], dt.datetime]:
    from bot.store.models import utcnow

    return utcnow
