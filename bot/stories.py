"""Conversation stories (docs/STORIES.md): the YAML format, parsed here once for the tests and
``yezhu chat --replay``; ``bot/story_run.py`` plays them.

A story is one conversation (or several owners' at once) written the way owners write, with the
expected outcome after each line: patterns the reply must and must not contain, the tickets opened or
changed, the conversation's mode, the duty alert. Loading checks every key, pattern and time, and
names the file and the story in one line when something is wrong.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHINA = dt.timezone(dt.timedelta(hours=8), "CST")
DEFAULT_CLOCK = dt.datetime(2026, 12, 2, 10, 0, tzinfo=CHINA)
"""A Wednesday morning, inside staff and visit hours: every story runs at a fixed time."""
WEEKDAYS = {name: n for n, names in enumerate((
    ("周一", "星期一", "monday"), ("周二", "星期二", "tuesday"), ("周三", "星期三", "wednesday"),
    ("周四", "星期四", "thursday"), ("周五", "星期五", "friday"), ("周六", "星期六", "saturday"),
    ("周日", "星期日", "周天", "sunday"))) for name in names}
PERSONAS = {"张三": ("oDEMO0001", "13800000001"), "李四": ("oDEMO0002", "13800000002"),
            "王五": (None, "13800000003")}
"""The demo owners (bot/demo.py). 王五 is registered but has not bound WeChat; any other name is a
stranger with a fresh openid."""
DEMO_PROJECT = "demo"
OPENID = re.compile(r"o[A-Za-z0-9_-]{5,}")
"""An owner written as a WeChat openid is that openid (the demo ones are 张三 and 李四)."""


def persona(name: Any) -> str:
    """The person a story names: 张三 for oDEMO0001, otherwise the name (or openid) as written."""
    text = str(name).strip()
    return next((p for p, (openid, _) in PERSONAS.items() if openid == text), text)

STORY_KEYS = {"story", "owner", "clock", "pending", "setup", "steps"}
SETUP_KEYS = {"bind", "settings", "tickets", "certificates", "conversation", "notices", "survey"}
SETUP_NOTICE_KEYS = {"kind", "params", "channel", "status", "age", "owner", "house", "text"}
STEP_KEYS = {"owner", "voice", "image", "as", "clock", "bot", "not", "opens", "updates", "conversation", "duty_sms"}
TICKET_KEYS = {"ref", "kind", "category", "priority", "status", "house", "location", "description", "visit_time",
               "contact", "covered", "warranty", "owner", "rework", "events", "timeline"}
SETUP_TICKET_KEYS = {"ref", "kind", "category", "priority", "status", "house", "location", "description",
                     "visit_time", "assignee", "age", "owner", "rework"}
TEXT_FIELDS = {"location", "description", "visit_time", "warranty", "timeline"}
"""Ticket fields checked with regular expressions (a list: all must be found)."""


class StoryError(Exception):
    """A story file that cannot be read; the message names the file and the story."""


@dataclass(frozen=True)
class Step:
    kind: str  # text | voice | image
    text: str
    speaker: str | None
    clock: str | None
    bot: tuple[str, ...]
    not_: tuple[str, ...]
    opens: int | tuple[dict[str, Any], ...] | None
    updates: dict[str, dict[str, Any]]
    conversation: str | None
    duty_sms: int | tuple[str, ...] | None


@dataclass(frozen=True)
class Story:
    name: str
    file: str
    owner: str
    clock: dt.datetime
    pending: str | None
    setup: dict[str, Any]
    steps: tuple[Step, ...]

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")[:60].rstrip("-")
        return f"{Path(self.file).stem}:{slug}"


# --- loading -------------------------------------------------------------------------------------


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, bool) or value is None:
        raise StoryError(f"{where}: {value!r} is read as a YAML boolean/null; put it in quotes")
    return str(value)


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    out = tuple(_scalar(v, where) for v in items)
    for p in out:
        try:
            re.compile(p)
        except re.error as exc:
            raise StoryError(f"{where}: bad pattern {p!r}: {exc}") from None
    return out


def _check_keys(data: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise StoryError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = set(data) - allowed
    if unknown:
        raise StoryError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
    return data


def parse_clock(value: Any, base: dt.datetime = DEFAULT_CLOCK, where: str = "clock") -> dt.datetime:
    """``2026-12-02 22:31`` | ``22:31`` (the default day) | ``周六 22:31`` (that day of the default week)
    | ``+40m`` / ``+2h`` / ``+1d`` (after ``base``). Times are Beijing time."""
    if isinstance(value, dt.datetime):  # YAML read 2026-12-02 22:31:00 itself
        return value.replace(tzinfo=CHINA) if value.tzinfo is None else value.astimezone(CHINA)
    if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 22:31 as 1351 (base 60)
        value = f"{value // 60}:{value % 60:02d}"
    text = str(value).strip()
    if m := re.fullmatch(r"\+(\d+)\s*([mhd])", text):
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return base + dt.timedelta(**{unit: int(m.group(1))})
    day = DEFAULT_CLOCK.date()
    if m := re.fullmatch(r"(\d{4}-\d{2}-\d{2})[ T](.+)", text):
        day, text = dt.date.fromisoformat(m.group(1)), m.group(2)
    elif m := re.fullmatch(r"(\S+)\s+(.+)", text):
        if m.group(1).lower() not in WEEKDAYS:
            raise StoryError(f"{where}: cannot read the time {value!r}: unknown day {m.group(1)!r} (周一…周日, monday…)")
        monday = day - dt.timedelta(days=day.weekday())
        day, text = monday + dt.timedelta(days=WEEKDAYS[m.group(1).lower()]), m.group(2)
    if (m := re.fullmatch(r"(\d{1,2})[:：](\d{2})(?::\d{2})?", text)) and int(m.group(1)) < 24 and int(m.group(2)) < 60:
        return dt.datetime.combine(day, dt.time(int(m.group(1)), int(m.group(2))), CHINA)
    raise StoryError(f"{where}: cannot read the time {value!r} (e.g. 22:31, 周六 09:15, 2026-12-02 22:31, +40m)")


def _ticket_spec(data: Any, where: str) -> dict[str, Any]:
    spec = dict(_check_keys(data, TICKET_KEYS, where))
    for key in TEXT_FIELDS & set(spec):
        value = spec[key]
        if isinstance(value, dict):
            spec[key] = {"not": _patterns(value.get("not"), f"{where}.{key}")}
        else:
            spec[key] = _patterns(value, f"{where}.{key}")
    return spec


def _step(data: Any, where: str) -> Step:
    data = _check_keys(data, STEP_KEYS, where)
    said = [k for k in ("owner", "voice", "image") if k in data]
    if len(said) != 1:
        raise StoryError(f"{where}: a step has exactly one of owner / voice / image (what the owner sends)")
    kind = {"owner": "text", "voice": "voice", "image": "image"}[said[0]]
    text = "" if kind == "image" else _scalar(data[said[0]], where).strip()
    opens = data.get("opens")
    if opens is not None and not isinstance(opens, int):
        items = opens if isinstance(opens, list) else [opens]
        opens = tuple(_ticket_spec(t, f"{where}.opens[{n}]") for n, t in enumerate(items))
    updates = data.get("updates") or {}
    if not isinstance(updates, dict):
        raise StoryError(f"{where}.updates: expected ticket refs mapping to what changed")
    duty = data.get("duty_sms")
    return Step(
        kind=kind, text=text, speaker=persona(data["as"]) if data.get("as") else None, clock=None if data.get("clock") is None else str(data["clock"]),
        bot=_patterns(data["bot"], f"{where}.bot") if "bot" in data else (),
        not_=_patterns(data["not"], f"{where}.not") if "not" in data else (),
        opens=opens,
        updates={str(ref): _ticket_spec(spec, f"{where}.updates.{ref}") for ref, spec in updates.items()},
        conversation=data.get("conversation"),
        duty_sms=duty if duty is None or isinstance(duty, int) else _patterns(duty, f"{where}.duty_sms"),
    )


def load_file(path: Path) -> list[Story]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise StoryError(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("stories"), list):
        raise StoryError(f"{path}: expected a top-level 'stories:' list")
    if set(doc) - {"stories", "definitions"}:
        raise StoryError(f"{path}: unknown top-level key(s) {', '.join(sorted(set(doc) - {'stories', 'definitions'}))};"
                         " allowed: stories, definitions (YAML anchors shared by the stories)")
    stories: list[Story] = []
    for n, raw in enumerate(doc["stories"]):
        where = f"{path.name}: story {n + 1}"
        raw = _check_keys(raw, STORY_KEYS, where)
        if not raw.get("story") or not raw.get("steps"):
            raise StoryError(f"{where}: needs 'story' (a name) and 'steps'")
        where = f"{path.name}: {raw['story']!r}"
        setup = _check_keys(raw.get("setup") or {}, SETUP_KEYS, f"{where}.setup")
        for m, t in enumerate(setup.get("tickets") or []):
            _check_keys(t, SETUP_TICKET_KEYS, f"{where}.setup.tickets[{m}]")
        for m, t in enumerate(setup.get("notices") or []):
            _check_keys(t, SETUP_NOTICE_KEYS, f"{where}.setup.notices[{m}]")
        story = Story(
            name=str(raw["story"]), file=str(path), owner=persona(_scalar(raw.get("owner", "张三"), f"{where}.owner")),
            clock=parse_clock(raw["clock"], where=f"{where}.clock") if raw.get("clock") is not None else DEFAULT_CLOCK,
            pending=str(raw["pending"]) if raw.get("pending") else None, setup=setup,
            steps=tuple(_step(s, f"{where} step {k + 1}") for k, s in enumerate(raw["steps"])),
        )
        if any(s.id == story.id for s in stories):
            raise StoryError(f"{where}: two stories with the same name in one file")
        stories.append(story)
    return stories


def load_stories(path: Path) -> list[Story]:
    """The stories of one file, or of every ``*.yml`` in a directory (sorted by file name)."""
    files = sorted(path.glob("*.yml")) if path.is_dir() else [path]
    return [s for f in files for s in load_file(f)]
