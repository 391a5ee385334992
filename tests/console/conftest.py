"""Console test helpers: log staff in through the real login form, set demo staff passwords, make data."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

from bot import security
from bot.console.core import PREFIX
from bot.runtime import RUNTIME
from bot.security import hash_password
from bot.store.models import StaffUser
from tests.console.live import browser, live  # noqa: F401 (fixtures for the browser tests)

PASSWORD = "correct-horse-9"
_HASH: dict[str, str] = {}


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2 parameters for tests (the real ones cost ~0.5 s per hash on a small CI machine);
    the throttling and session logic under test does not depend on the cost."""
    monkeypatch.setattr(security, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
LOGIN_CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


async def set_password(client: TestClient[Any, Any], username: str, password: str = PASSWORD) -> None:
    """Give a demo staff member a known password (the demo prints random ones)."""
    if password not in _HASH:
        _HASH[password] = hash_password(password)
    async with client.app[RUNTIME].db.session() as s, s.begin():
        await s.execute(sa.update(StaffUser).where(StaffUser.username == username)
                        .values(password_hash=_HASH[password]))


async def login(client: TestClient[Any, Any], username: str = "admin", password: str | None = None) -> str:
    """Log in through the form (as a fresh browser would: any earlier session's cookies are dropped);
    returns the session's CSRF token."""
    client.session.cookie_jar.clear()
    if password is None:
        await set_password(client, username)
        password = PASSWORD
    resp = await client.get(f"{PREFIX}/login")
    token = LOGIN_CSRF.search(await resp.text())
    assert token, "login form has no CSRF field"
    resp = await client.post(f"{PREFIX}/login", data={"username": username, "password": password,
                                                     "_csrf": token.group(1)}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    return await csrf_of(client)


async def csrf_of(client: TestClient[Any, Any]) -> str:
    resp = await client.get(f"{PREFIX}/tickets")
    assert resp.status == 200, resp.status
    match = CSRF_META.search(await resp.text())
    assert match
    return match.group(1)


def js(csrf: str) -> dict[str, str]:
    """Headers of the console's own scripts."""
    return {"X-CSRF-Token": csrf, "Accept": "application/json"}


async def waiting_conversation(client: TestClient[Any, Any], sender: str = "crm-1", text: str = "你好",
                               *, reason: str = "owner_asked", priority: int = 0) -> int:
    """A JSON-channel conversation put in the queue (``bot.conversation.hand_over``); returns its id."""
    from bot import conversation as verbs
    from bot.events import EventBatch
    from bot.store.models import Conversation, Identity
    from tests.conftest import auth

    resp = await client.post("/api/v1/messages", json={"sender": sender, "text": text}, headers=auth())
    assert resp.status == 200, await resp.text()
    rt = client.app[RUNTIME]
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        conv = (await s.execute(
            sa.select(Conversation).join(Identity, Identity.id == Conversation.identity_id)
            .where(Identity.external_id == sender, Conversation.mode != "closed").order_by(Conversation.id.desc())
        )).scalars().first()
        assert conv is not None
        if conv.mode == verbs.BOT:
            verbs.hand_over(s, batch, conv, reason=reason, priority=priority)
    await batch.publish(rt.services.pubsub)
    return conv.id


class _Visible(HTMLParser):
    """The text a person sees on a page: text nodes outside script/style, plus placeholders, titles and
    image descriptions (not attribute values such as option codes, which nobody reads)."""

    HIDDEN = frozenset({"script", "style", "head", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.depth += 1
        for name, value in attrs:
            if name in ("placeholder", "title", "alt", "aria-label") and value:
                self.parts.append(value)
            if name == "value" and tag == "input" and dict(attrs).get("type") in ("submit", "button"):
                self.parts.append(value or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN and self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if not self.depth and data.strip():
            self.parts.append(data.strip())


def visible_text(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    return "\n".join(parser.parts)
