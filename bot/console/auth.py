"""Logging in and out of the console: argon2 passwords, throttled attempts, fresh sessions.

Throttling is per (account, client address) with escalating waits, plus guards against spraying and
distributed guessing that never lock the real user out at their usual address
(:mod:`bot.console.login_throttle`); the address is the client's behind configured trusted proxies
(:func:`~bot.console.core.client_address`). Unknown usernames cost the same argon2 work as known ones,
so timing does not reveal them.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import secrets

import sqlalchemy as sa
from aiohttp import web

from bot import params
from bot.console.core import (
    COOKIE,
    LOGGED_OUT,
    LOGIN_COOKIE,
    LOGIN_WINDOW,
    PREFIX,
    audit,
    authenticate,
    client_address,
    console_of,
    is_https,
    render,
    route,
    runtime_of,
    set_session_cookie,
    staff_of,
)
from bot.console.login_throttle import LoginThrottle
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


def throttle_of(request: web.Request) -> LoginThrottle:
    rt = runtime_of(request)
    return LoginThrottle(rt.services.cache, rt.services.rate, window=LOGIN_WINDOW,
                         clock=console_of(request).sessions.clock)


_THROTTLED = {
    "account": "该账号近期登录失败次数异常，为安全起见暂时只能在常用的电脑上登录，请 {m} 分钟后再试或联系管理员",
    "busy": "登录请求过于频繁，请稍后再试",
}


async def login(request: web.Request) -> web.StreamResponse:
    data = await request.post()
    fields = params.check_form({k: v for k, v in data.items() if isinstance(v, str)})
    username = fields.get("username", "").strip()[:50]
    password = fields.get("password", "")
    given, expected = fields.get("_csrf", ""), request.cookies.get(LOGIN_COOKIE, "")
    if not given or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return _login_page(request, error="页面已过期，请重新登录", status=403, username=username)
    rt = runtime_of(request)
    if not username or not password:
        return _login_page(request, error="请输入用户名和密码", status=400, username=username)
    ip = client_address(request)
    throttle = throttle_of(request)
    verdict = await throttle.begin(username, ip)
    if not verdict.allowed:
        async with rt.db.session() as s, s.begin():
            audit(s, username, "staff.login_throttled", f"staff:{username}", ip=ip, reason=verdict.reason,
                  retry_after=math.ceil(verdict.retry_after))
        minutes = max(1, math.ceil(verdict.retry_after / 60))
        error = _THROTTLED.get(verdict.reason, "登录尝试次数过多，请 {m} 分钟后再试").format(m=minutes)
        response = _login_page(request, status=429, username=username, error=error)
        response.headers["Retry-After"] = str(max(1, math.ceil(verdict.retry_after)))
        return response
    async with rt.db.session() as s:
        user = (await s.execute(sa.select(StaffUser).where(StaffUser.username == username))).scalar_one_or_none()
    stored = user.password_hash if user is not None and user.active else await _dummy()
    ok = await asyncio.to_thread(verify_password, stored, password)
    if not ok or user is None or not user.active:
        await throttle.failed(username, ip)
        async with rt.db.session() as s, s.begin():
            audit(s, username, "staff.login_failed", f"staff:{username}", ip=ip)
        return _login_page(request, error="用户名或密码错误", status=401, username=username)
    await throttle.succeeded(username, ip)
    token, _data = await console_of(request).sessions.create(user)
    async with rt.db.session() as s, s.begin():
        audit(s, user.username, "staff.login", f"staff:{user.username}", ip=ip)
    response = web.HTTPSeeOther(safe_next(fields.get("next", ""), home_for(user.role)))
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
