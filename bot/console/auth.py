"""Logging in and out of the console: argon2 passwords, throttled attempts, fresh sessions.

Throttling: at most :data:`~bot.console.core.LOGIN_LIMIT` attempts per username and four times that per
client address in :data:`~bot.console.core.LOGIN_WINDOW` seconds, counted in the shared rate limiter
(Redis in production, so every web process counts together). A successful login clears the username's
count. Unknown usernames cost the same argon2 work as known ones, so timing does not reveal them.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import secrets

import sqlalchemy as sa
from aiohttp import web

from bot.console.core import (
    COOKIE,
    LOGGED_OUT,
    LOGIN_COOKIE,
    LOGIN_LIMIT,
    LOGIN_WINDOW,
    PREFIX,
    audit,
    authenticate,
    console_of,
    is_https,
    render,
    route,
    runtime_of,
    set_session_cookie,
    staff_of,
)
from bot.security import hash_password, verify_password
from bot.store.models import StaffUser

_dummy_hash: str | None = None


async def _dummy() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = await asyncio.to_thread(hash_password, secrets.token_hex(8))
    return _dummy_hash


def safe_next(value: str | None, default: str = f"{PREFIX}/") -> str:
    """Only a path inside the console: never an absolute or scheme-relative URL (open redirect)."""
    if not value or not value.startswith(PREFIX + "/") or value.startswith("//") or "\\" in value:
        return default
    return value


def home_for(role: str) -> str:
    return f"{PREFIX}/tickets?mine=1" if role == "engineer" else f"{PREFIX}/"


def _login_page(request: web.Request, *, error: str = "", status: int = 200, username: str = "") -> web.Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", status=status, title="登录", error=error, login_csrf=token,
                      username=username, next=safe_next(request.query.get("next"), ""))
    response.set_cookie(LOGIN_COOKIE, token, path=f"{PREFIX}/login", httponly=True, samesite="Strict",
                        secure=is_https(request), max_age=3600)
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    staff = await authenticate(request, console_of(request))
    if staff is not None:
        raise web.HTTPFound(safe_next(request.query.get("next"), home_for(staff.role)))
    return _login_page(request)


async def login(request: web.Request) -> web.StreamResponse:
    data = await request.post()
    username = str(data.get("username", "")).strip()[:50]
    password = str(data.get("password", ""))
    given, expected = str(data.get("_csrf", "")), request.cookies.get(LOGIN_COOKIE, "")
    if not given or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return _login_page(request, error="页面已过期，请重新登录", status=403, username=username)
    rt = runtime_of(request)
    if not username or not password:
        return _login_page(request, error="请输入用户名和密码", status=400, username=username)
    ip = request.remote or "unknown"
    by_ip = await rt.services.rate.hit(f"console-login:ip:{ip}", limit=LOGIN_LIMIT * 4, window=LOGIN_WINDOW)
    by_user = await rt.services.rate.hit(f"console-login:user:{username.lower()}", limit=LOGIN_LIMIT,
                                         window=LOGIN_WINDOW)
    if not (by_ip.allowed and by_user.allowed):
        wait = max(by_ip.retry_after, by_user.retry_after)
        async with rt.db.session() as s, s.begin():
            audit(s, username or "-", "staff.login_throttled", f"staff:{username}", ip=ip)
        response = _login_page(request, status=429, username=username,
                               error=f"登录尝试次数过多，请 {max(1, math.ceil(wait / 60))} 分钟后再试")
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    async with rt.db.session() as s:
        user = (await s.execute(sa.select(StaffUser).where(StaffUser.username == username))).scalar_one_or_none()
    stored = user.password_hash if user is not None and user.active else await _dummy()
    ok = await asyncio.to_thread(verify_password, stored, password)
    if not ok or user is None or not user.active:
        async with rt.db.session() as s, s.begin():
            audit(s, username, "staff.login_failed", f"staff:{username}", ip=ip)
        return _login_page(request, error="用户名或密码错误", status=401, username=username)
    await rt.services.rate.reset(f"console-login:user:{username.lower()}")
    token, _data = await console_of(request).sessions.create(user)
    async with rt.db.session() as s, s.begin():
        audit(s, user.username, "staff.login", f"staff:{user.username}", ip=ip)
    response = web.HTTPSeeOther(safe_next(str(data.get("next", "")), home_for(user.role)))
    set_session_cookie(request, response, token)
    response.del_cookie(LOGIN_COOKIE, path=f"{PREFIX}/login")
    raise response


@route("POST", "/logout", "console")
async def logout(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    await console_of(request).sessions.delete(staff.token_hash)
    request[LOGGED_OUT] = True
    async with runtime_of(request).db.session() as s, s.begin():
        audit(s, staff, "staff.logout", f"staff:{staff.username}")
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    response.del_cookie(COOKIE, path=PREFIX)
    raise response


def register_public(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/login", login_form)
    app.router.add_post(f"{PREFIX}/login", login)
