"""Access control: anonymous requests, roles, CSRF, login throttling, cookies and session expiry."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
import sqlalchemy as sa

from bot.console.core import CONSOLE, IDLE_TIMEOUT, PERMISSIONS, route
from bot.runtime import RUNTIME
from bot.store.models import AuditLog, Conversation, StaffUser
from tests.conftest import YezhuFactory
from tests.console.conftest import PASSWORD, csrf_of, js, login, set_password, waiting_conversation

PUBLIC = ("/wechat/", "/sms/", "/healthz", "/metrics", "/console/login", "/console/static/")
SAMPLE = {"id": "1", "verb": "dispatch", "ref": "1", "account": "default", "provider": "dev"}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: SAMPLE.get(m.group(1), "1"), path)


async def test_every_non_public_route_refuses_anonymous_requests(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    checked = 0
    for r in client.app.router.routes():
        info = r.resource.get_info() if r.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix") or ""
        if path.startswith(PUBLIC) or path == "/console/static":
            continue
        method = "GET" if r.method in ("*", "HEAD") else r.method
        resp = await client.request(method, concrete(path), allow_redirects=False, json={})
        location = resp.headers.get("Location", "")
        refused = resp.status in (401, 403) or (resp.status == 302 and location.startswith("/console/login"))
        assert refused, f"{method} {path} answered {resp.status} to an anonymous request"
        checked += 1
    assert checked > 40
    # every console handler declared the permission it needs, and the permissions are known
    assert all(perm in PERMISSIONS for *_x, perm in route.defs)


async def test_public_routes_stay_public(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    assert (await client.get("/healthz")).status == 200
    login_page = await client.get("/console/login")
    assert login_page.status == 200 and "登录" in await login_page.text()
    assert (await client.get("/console/static/console.css")).status == 200


async def test_an_agent_cannot_do_admin_or_supervisor_actions(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    csrf = await login(client, "kefu")
    for path in ("/console/staff", "/console/audit", "/console/dashboard"):
        assert (await client.get(path, allow_redirects=False)).status == 403, path
    resp = await client.post("/console/staff", headers=js(csrf),
                             json={"username": "mallory", "role": "admin", "password": "x" * 12})
    assert resp.status == 403
    resp = await client.post("/console/staff/1", headers=js(csrf), json={"role": "agent"})
    assert resp.status == 403
    assert (await client.post("/console/knowledge/1/delete", headers=js(csrf))).status == 403
    async with client.app[RUNTIME].db.session() as s:
        assert (await s.execute(sa.select(StaffUser).where(StaffUser.username == "mallory"))).first() is None
        admin = (await s.execute(sa.select(StaffUser).where(StaffUser.username == "admin"))).scalar_one()
    assert admin.role == "admin"


async def test_an_engineer_sees_only_what_the_role_needs(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    conv_id = await waiting_conversation(client)
    csrf = await login(client, "gongcheng")
    home = await client.get("/console/", allow_redirects=False)
    assert home.status == 302 and home.headers["Location"].startswith("/console/tickets")
    for path in ("/console/owners?q=张三", f"/console/conversations/{conv_id}", "/console/api/queue",
                 "/console/knowledge"):
        assert (await client.get(path, allow_redirects=False)).status == 403, path
    assert (await client.post(f"/console/conversations/{conv_id}/claim", headers=js(csrf))).status == 403


async def test_state_changes_need_a_valid_csrf_token(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    conv_id = await waiting_conversation(client)
    csrf = await login(client, "kefu")
    url = f"/console/conversations/{conv_id}/claim"
    assert (await client.post(url, headers={"Accept": "application/json"})).status == 403
    assert (await client.post(url, headers=js("forged" + csrf[6:]))).status == 403
    assert (await client.post(url, data={"_csrf": "nope"})).status == 403
    cross_site = {**js(csrf), "Sec-Fetch-Site": "cross-site"}
    assert (await client.post(url, headers=cross_site)).status == 403
    async with client.app[RUNTIME].db.session() as s:
        assert (await s.get_one(Conversation, conv_id)).mode == "waiting"
    assert (await client.post(url, headers=js(csrf))).status == 200
    async with client.app[RUNTIME].db.session() as s:
        assert (await s.get_one(Conversation, conv_id)).mode == "staff"
    # a plain HTML form with the token in the body works too
    resp = await client.post(f"/console/conversations/{conv_id}/note", data={"_csrf": csrf, "text": "备注"},
                             allow_redirects=False)
    assert resp.status == 303
    # logout is a state change too
    assert (await client.post("/console/logout", allow_redirects=False)).status == 403
    # the login form has its own (double-submit) token
    resp = await client.post("/console/login", data={"username": "kefu", "password": PASSWORD},
                             allow_redirects=False)
    assert resp.status == 403


async def test_five_wrong_passwords_are_throttled(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    await set_password(client, "kefu")

    async def attempt(username: str, password: str) -> int:
        page = await client.get("/console/login")
        token = re.search(r'name="_csrf" value="([^"]+)"', await page.text())
        assert token
        resp = await client.post("/console/login", allow_redirects=False,
                                 data={"username": username, "password": password, "_csrf": token.group(1)})
        return resp.status

    for _ in range(5):
        assert await attempt("kefu", "wrong-password") == 401
    page = await client.get("/console/login")
    token = re.search(r'name="_csrf" value="([^"]+)"', await page.text())
    assert token
    resp = await client.post("/console/login", allow_redirects=False,
                             data={"username": "kefu", "password": PASSWORD, "_csrf": token.group(1)})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert "次数过多" in await resp.text()
    assert "yezhu_console" not in resp.cookies
    # another account from the same address is not locked out by kefu's attempts
    await set_password(client, "admin")
    assert await attempt("admin", PASSWORD) == 303
    async with client.app[RUNTIME].db.session() as s:
        actions = list((await s.execute(sa.select(AuditLog.action).where(AuditLog.actor == "kefu"))).scalars())
    assert actions.count("staff.login_failed") == 5 and "staff.login_throttled" in actions


async def test_a_right_password_resets_the_count(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    await set_password(client, "admin")
    for _ in range(2):
        for _ in range(4):
            page = await client.get("/console/login")
            token = re.search(r'name="_csrf" value="([^"]+)"', await page.text())
            assert token
            resp = await client.post("/console/login", allow_redirects=False,
                                     data={"username": "admin", "password": "bad", "_csrf": token.group(1)})
            assert resp.status == 401
        await login(client, "admin")
        client.session.cookie_jar.clear()


async def test_session_cookie_is_httponly_samesite_and_secure_behind_https(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    await set_password(client, "admin")
    page = await client.get("/console/login")
    token = re.search(r'name="_csrf" value="([^"]+)"', await page.text())
    assert token
    resp = await client.post("/console/login", allow_redirects=False,
                             data={"username": "admin", "password": PASSWORD, "_csrf": token.group(1)})
    cookie = resp.headers.getall("Set-Cookie")
    session = next(c for c in cookie if c.startswith("yezhu_console="))
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Path=/console" in session
    assert "Secure" not in session  # plain http in tests: the browser would drop a Secure cookie
    # behind a TLS-terminating proxy: Secure (sent by hand here: the test client speaks plain http)
    client.session.cookie_jar.clear()
    page = await client.get("/console/login", headers={"X-Forwarded-Proto": "https"})
    login_cookie = next(c for c in page.headers.getall("Set-Cookie") if c.startswith("yezhu_login="))
    assert "Secure" in login_cookie
    value = login_cookie.split(";")[0].split("=", 1)[1]
    resp = await client.post("/console/login", allow_redirects=False,
                             headers={"X-Forwarded-Proto": "https", "Cookie": f"yezhu_login={value}"},
                             data={"username": "admin", "password": PASSWORD, "_csrf": value})
    assert resp.status == 303, await resp.text()
    session = next(c for c in resp.headers.getall("Set-Cookie") if c.startswith("yezhu_console="))
    assert "Secure" in session and "HttpOnly" in session
    home = await client.get("/console/")
    assert "default-src 'self'" in home.headers["Content-Security-Policy"]
    assert home.headers["X-Frame-Options"] == "DENY" and home.headers["Cache-Control"] == "no-store"


async def test_sessions_expire_and_end_on_logout_and_password_change(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    sessions = client.app[CONSOLE].sessions
    clock = [1_000_000.0]
    sessions.clock = lambda: clock[0]
    csrf = await login(client, "kefu")
    clock[0] += IDLE_TIMEOUT - 60
    assert (await client.get("/console/tickets")).status == 200  # activity keeps it alive
    clock[0] += IDLE_TIMEOUT + 1
    resp = await client.get("/console/tickets", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/console/login")

    csrf = await login(client, "kefu")
    resp = await client.post("/console/logout", headers=js(csrf), allow_redirects=False)
    assert resp.status == 303
    assert (await client.get("/console/api/queue")).status == 401

    await login(client, "kefu")
    await set_password(client, "kefu", "another-password-1")
    assert (await client.get("/console/api/queue")).status == 401
    await login(client, "kefu", "another-password-1")
    assert (await csrf_of(client))


# --- login throttling per (account, client address) ---------------------------------------------


async def attempt(client: Any, username: str, password: str, address: str | None = None) -> tuple[int, str]:
    """One login through the form, from ``address`` (sent as the proxy would, in X-Forwarded-For)."""
    headers = {"X-Forwarded-For": f"{address}"} if address else {}
    page = await client.get("/console/login", headers=headers)
    token = re.search(r'name="_csrf" value="([^"]+)"', await page.text())
    assert token
    resp = await client.post("/console/login", allow_redirects=False, headers=headers,
                             data={"username": username, "password": password, "_csrf": token.group(1)})
    client.session.cookie_jar.clear()  # each attempt as a fresh browser
    return resp.status, resp.headers.get("Retry-After", "")


async def test_an_attacker_cannot_lock_staff_out_from_another_address(yezhu: YezhuFactory) -> None:
    # behind a proxy on 127.0.0.1 (the test client's address): every client comes from the proxy
    client = await yezhu(trusted_proxies="127.0.0.1")
    await set_password(client, "kefu")
    assert (await attempt(client, "kefu", PASSWORD, "198.51.100.7"))[0] == 303  # kefu's usual desk
    for _ in range(5):
        assert (await attempt(client, "kefu", "guess", "203.0.113.9"))[0] == 401
    for _ in range(3):
        assert (await attempt(client, "kefu", "guess", "203.0.113.9"))[0] == 429
    # the attacker is held back; kefu, from the desk and from a new address, is not
    assert (await attempt(client, "kefu", PASSWORD, "198.51.100.7"))[0] == 303
    assert (await attempt(client, "kefu", PASSWORD, "198.51.100.80"))[0] == 303
    # a client cannot pick its address: what it writes left of the proxy's own entry is ignored
    status, _ = await attempt(client, "kefu", "guess", "198.51.100.7, 203.0.113.9")
    assert status == 429
    async with client.app[RUNTIME].db.session() as s:
        rows = (await s.execute(sa.select(AuditLog.action, AuditLog.data).where(AuditLog.actor == "kefu"))).all()
    throttled = [data for action, data in rows if action == "staff.login_throttled"]
    assert throttled and all(d["ip"] == "203.0.113.9" for d in throttled)


async def test_the_proxy_header_is_ignored_unless_the_peer_is_a_trusted_proxy(yezhu: YezhuFactory) -> None:
    client = await yezhu()  # no trusted proxies: X-Forwarded-For is whatever the client wants it to be
    await set_password(client, "kefu")
    for n in range(5):
        assert (await attempt(client, "kefu", "guess", f"203.0.113.{n}"))[0] == 401
    assert (await attempt(client, "kefu", PASSWORD, "203.0.113.99"))[0] == 429  # same peer, same pair
    untrusted = await yezhu(trusted_proxies="10.0.0.0/8")  # a proxy is configured, but not this peer
    await set_password(untrusted, "kefu")
    for n in range(5):
        assert (await attempt(untrusted, "kefu", "guess", f"203.0.113.{n}"))[0] == 401
    assert (await attempt(untrusted, "kefu", PASSWORD, "203.0.113.99"))[0] == 429


async def test_waits_escalate_and_a_right_password_clears_them(yezhu: YezhuFactory) -> None:
    client = await yezhu(trusted_proxies="127.0.0.1")
    clock = [1_000_000.0]
    client.app[CONSOLE].sessions.clock = lambda: clock[0]
    await set_password(client, "kefu")
    for _ in range(5):
        assert (await attempt(client, "kefu", "guess", "203.0.113.9"))[0] == 401
    waits = []
    for _ in range(4):
        status, retry_after = await attempt(client, "kefu", PASSWORD, "203.0.113.9")
        assert status == 429
        waits.append(int(retry_after))
        clock[0] += int(retry_after) + 1
        assert (await attempt(client, "kefu", "guess", "203.0.113.9"))[0] == 401  # one more try after the wait
    assert waits == [60, 120, 240, 480]
    clock[0] += 961
    assert (await attempt(client, "kefu", PASSWORD, "203.0.113.9"))[0] == 303
    for _ in range(4):  # cleared: the next mistakes are free again
        assert (await attempt(client, "kefu", "guess", "203.0.113.9"))[0] == 401


@pytest.mark.parametrize("shared", ["memory", "redis"])
async def test_parallel_guesses_cannot_overtake_the_count(
    yezhu: YezhuFactory, shared: str, request: pytest.FixtureRequest
) -> None:
    if shared == "redis":  # two web processes counting together through Redis
        redis_url = request.getfixturevalue("redis_url")
        # What is tested is the count, not Redis's time limit: twenty logins at once (each opening its
        # own Redis connection beside password hashing) may take longer than the 0.5 s default to
        # connect when the suite's other worker keeps the second core busy.
        clients = [await yezhu(redis_url=redis_url, redis_timeout=5.0) for _ in range(2)]
    else:
        clients = [await yezhu()]
    results = await asyncio.gather(
        *(attempt(clients[n % len(clients)], "admin", f"guess-{n}") for n in range(20))
    )
    statuses = [status for status, _ in results]
    assert statuses.count(401) == 5 and statuses.count(429) == 15, statuses


async def test_many_addresses_on_one_account_cannot_keep_its_owner_out(yezhu: YezhuFactory) -> None:
    client = await yezhu(trusted_proxies="127.0.0.1")
    await set_password(client, "admin")
    assert (await attempt(client, "admin", PASSWORD, "198.51.100.7"))[0] == 303  # the admin's own desk
    for n in range(60):  # a botnet: each address stays under its own limit
        await attempt(client, "admin", f"guess-{n}", f"203.0.{n // 200}.{n % 200 + 1}")
    # the account is now guarded: unknown addresses wait, the admin's usual address does not
    status, retry_after = await attempt(client, "admin", PASSWORD, "203.0.113.250")
    assert status == 429 and int(retry_after) > 0
    assert (await attempt(client, "admin", PASSWORD, "198.51.100.7"))[0] == 303
