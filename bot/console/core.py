"""The console's foundations: roles and permissions, sessions, CSRF, rendering, auditing, masking.

Security model (docs/CONSOLE.md has the table):

* **Sessions** live in the shared cache (Redis in production, so any web process serves any staff
  member) under ``console:session:<sha256(token)>``; the browser holds only the random token in an
  HttpOnly, SameSite=Lax cookie scoped to ``/console`` (``Secure`` when served over https, also behind a
  proxy that sets ``X-Forwarded-Proto``). A session ends after :data:`IDLE_TIMEOUT` without activity,
  :data:`MAX_AGE` after login, on logout, and when the staff member's password changes or the account
  is deactivated (the staff row is re-read on every request, so role changes apply at once).
* **CSRF**: every state-changing request carries the session's token (``X-CSRF-Token`` header or a
  ``_csrf`` form field), compared in constant time; cross-site requests (``Sec-Fetch-Site``) are refused.
  The login form uses a double-submit cookie.
* **Roles** are checked on the server for every route (:func:`route` refuses to register a handler
  without a permission) and again inside handlers for per-object rules (an engineer's own tickets).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jinja2
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from actions.workflow import DESK_ROLES, DESK_TURN, REASSIGN_ROLES, WORK_ROLES
from bot import params, proxies
from bot.console.view import (  # noqa: F401 (re-exported: the rendering helpers moved to view.py)
    NAV,
    STATIC_DIR,
    ago,
    asset_version,
    local,
    make_templates,
    mask_phone,
)
from bot.runtime import RUNTIME, Runtime
from bot.store.models import AuditLog, Project, StaffUser, Ticket, utcnow

PREFIX = "/console"
COOKIE = "yezhu_console"
LOGIN_COOKIE = "yezhu_login"
IDLE_TIMEOUT = 2 * 3600
"""Seconds without activity after which a session ends."""
MAX_AGE = 12 * 3600
"""Seconds after login after which a session ends, however active."""
LOGIN_LIMIT = 5
"""Wrong passwords one client address may try on one account before it must wait (bot/console/auth.py)."""
LOGIN_WINDOW = 15 * 60
"""Seconds over which an address's wrong passwords across accounts are counted (password spraying)."""

ROLES = ("agent", "engineer", "supervisor", "admin")

# Permission -> roles that have it. The one place the role model is written down.
PERMISSIONS: dict[str, frozenset[str]] = {
    "console": frozenset(ROLES),                                     # log in, see the home page
    "chat": frozenset({"agent", "supervisor", "admin"}),             # queue, conversations, replies
    "tickets.view": frozenset(ROLES),
    # the ticket verbs' roles are actions/workflow.py's, which the JSON API's actors obey too
    "tickets.dispatch": DESK_ROLES,                                  # dispatch, accept, close, rework
    "tickets.work": WORK_ROLES,                                      # start / complete (engineer: own)
    "tickets.reassign": REASSIGN_ROLES,
    "owners": frozenset({"agent", "supervisor", "admin"}),
    "phones": frozenset({"agent", "supervisor", "admin"}),           # full phone numbers everywhere
    "knowledge": frozenset({"agent", "supervisor", "admin"}),        # browse, add, edit
    "knowledge.delete": frozenset({"supervisor", "admin"}),
    "cases": frozenset(ROLES),                                        # the case library: read, search, export
    "cases.create": frozenset({"agent", "supervisor", "admin"}),     # mark a ticket or chat as a case
    "cases.edit": frozenset({"supervisor", "admin"}),                 # edit and delete cases
    "dashboard": frozenset({"supervisor", "admin"}),
    "staff.admin": frozenset({"admin"}),                              # staff accounts
    "imports": frozenset({"admin"}),                                  # roster and certificate uploads
    "certificates": frozenset({"agent", "supervisor", "admin"}),     # the counter's signed collection record
    "campaigns": frozenset({"agent", "supervisor", "admin"}),        # list, draft, preview, test-send
    "campaigns.approve": frozenset({"supervisor", "admin"}),         # approve a campaign over the size limit
    "audit": frozenset({"admin"}),
}


def can(role: str, permission: str) -> bool:
    return role in PERMISSIONS[permission]


@dataclass(slots=True)
class Staff:
    """The logged-in staff member of one request."""

    id: int
    username: str
    display_name: str
    role: str
    token_hash: str
    csrf: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        return f"staff:{self.username}"

    def can(self, permission: str) -> bool:
        return can(self.role, permission)


STAFF: web.RequestKey[Staff] = web.RequestKey("console_staff", Staff)
OVERDUE: web.RequestKey[int] = web.RequestKey("console_overdue", int)
"""Overdue tickets (an engineer's own) for the navigation badge, counted once per page view."""
DIRTY: web.RequestKey[bool] = web.RequestKey("console_dirty", bool)
"""The session data changed in this request (a flash message): save it."""
LOGGED_OUT: web.RequestKey[bool] = web.RequestKey("console_logged_out", bool)


# --- sessions -----------------------------------------------------------------------------------


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


class SessionStore:
    """Console sessions in the shared cache; the cookie holds only a random token."""

    def __init__(self, cache: Any, *, idle: int = IDLE_TIMEOUT, max_age: int = MAX_AGE,
                 clock: Callable[[], float] = time.time) -> None:
        self.cache, self.idle, self.max_age, self.clock = cache, idle, max_age, clock

    @staticmethod
    def _key(token_hash: str) -> str:
        return f"console:session:{token_hash}"

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    async def create(self, user: StaffUser) -> tuple[str, dict[str, Any]]:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        data = {"staff_id": user.id, "csrf": secrets.token_urlsafe(32), "created": now, "seen": now,
                "pw": _fingerprint(user.password_hash), "flash": []}
        await self.cache.set(self._key(self.hash_token(token)), json.dumps(data), self.idle)
        return token, data

    async def load(self, token: str) -> tuple[str, dict[str, Any]] | None:
        if not token or len(token) > 100:
            return None
        token_hash = self.hash_token(token)
        raw = await self.cache.get(self._key(token_hash))
        if raw is None:
            return None
        data = json.loads(raw)
        now = self.clock()
        if now - data["created"] > self.max_age or now - data["seen"] > self.idle:
            await self.delete(token_hash)
            return None
        return token_hash, data

    async def save(self, token_hash: str, data: dict[str, Any]) -> None:
        data["seen"] = self.clock()
        ttl = max(1, int(min(self.idle, self.max_age - (data["seen"] - data["created"]))))
        await self.cache.set(self._key(token_hash), json.dumps(data), ttl)

    async def delete(self, token_hash: str) -> None:
        await self.cache.delete(self._key(token_hash))


@dataclass(slots=True)
class Console:
    """Per-app console state: the session store, templates and the live-event hub."""

    runtime: Runtime
    sessions: SessionStore
    templates: jinja2.Environment
    hub: Any = None
    asset_version: str = ""
    projects: dict[str, str] = field(default_factory=dict)
    """Project code → name, for showing names where codes are stored (refreshed every minute)."""
    names: dict[str, str] = field(default_factory=dict)
    """Staff username → display name (timelines, audit log), refreshed with :attr:`projects`."""
    projects_at: float = 0.0
    overdue: dict[str, tuple[int, float]] = field(default_factory=dict)
    """The navigation's overdue counts: key → (count, valid until, monotonic)."""

    async def refresh_projects(self) -> None:
        if time.monotonic() - self.projects_at < 15 and self.projects:
            return
        async with self.runtime.db.session() as s:
            rows = (await s.execute(sa.select(Project.code, Project.name))).all()
            names = (await s.execute(sa.select(StaffUser.username, StaffUser.display_name))).all()
        self.projects = {code: name for code, name in rows}
        self.names = {username: name for username, name in names}
        self.projects_at = time.monotonic()


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def runtime_of(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def staff_of(request: web.Request) -> Staff:
    return request[STAFF]


# --- routes and permissions ---------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_PATHS = frozenset({f"{PREFIX}/login"})
PUBLIC_PREFIXES = (f"{PREFIX}/static/",)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class Routes:
    """Collects console routes; every one must name the permission it needs."""

    def __init__(self) -> None:
        self.defs: list[tuple[str, str, Handler, str]] = []

    def __call__(self, method: str, path: str, permission: str) -> Callable[[Handler], Handler]:
        if permission not in PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}")

        def decorator(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def guarded(request: web.Request) -> web.StreamResponse:
                staff = request.get(STAFF)
                if staff is None:  # the middleware guarantees a session; belt and braces
                    raise web.HTTPUnauthorized()
                if not staff.can(permission):
                    return forbidden(request)
                return await handler(request)

            guarded.permission = permission  # type: ignore[attr-defined]
            self.defs.append((method, PREFIX + path, guarded, permission))
            return guarded

        return decorator

    def register(self, app: web.Application) -> None:
        for method, path, handler, _perm in self.defs:
            app.router.add_route(method, path, handler)


route = Routes()


def wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept or request.headers.get("X-Requested-With") == "fetch" or \
        request.path.startswith(f"{PREFIX}/api/")


def forbidden(request: web.Request, detail: str = "您的角色无权执行此操作") -> web.StreamResponse:
    if wants_json(request):
        return web.json_response({"error": "forbidden", "detail": detail}, status=403)
    return render(request, "error.html", status=403, title="无权访问", detail=detail)


class Refused(Exception):
    """Raise from a handler to refuse an action: the transaction rolls back and the staff member is told why."""

    def __init__(self, detail: str, *, status: int = 400, back: str | None = None) -> None:
        super().__init__(detail)
        self.detail, self.status, self.back = detail, status, back


def fail(request: web.Request, detail: str, *, status: int = 400, back: str | None = None) -> web.StreamResponse:
    """A refused action: JSON for scripts, a flash message and a redirect back for plain forms."""
    if wants_json(request):
        return web.json_response({"error": "refused", "detail": detail}, status=status)
    flash(request, detail, "error")
    raise web.HTTPSeeOther(back or request.headers.get("Referer") or f"{PREFIX}/")


def done(request: web.Request, redirect: str, message: str | None = None, **data: Any) -> web.StreamResponse:
    if wants_json(request):
        return web.json_response({"ok": True, "redirect": redirect, "message": message, **data})
    if message:
        flash(request, message, "ok")
    raise web.HTTPSeeOther(redirect)


def flash(request: web.Request, message: str, kind: str = "ok") -> None:
    staff = request.get(STAFF)
    if staff is not None:
        staff.data.setdefault("flash", []).append([kind, message])
        request[DIRTY] = True


async def form(request: web.Request) -> dict[str, str]:
    """The request body as a flat dict: a JSON object from scripts or an urlencoded form; text fields
    with control characters are refused (:func:`bot.params.check_form`)."""
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            raise web.HTTPBadRequest(text="请求格式错误") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="请求格式错误")
        return params.check_form({str(k): "" if v is None else str(v) for k, v in body.items()})
    data = await request.post()
    return params.check_form({k: v for k, v in data.items() if isinstance(v, str)})


def close_files(data: Any) -> None:
    """Close the uploaded files of a multipart form (aiohttp keeps them in temporary files)."""
    for value in data.values():
        if isinstance(value, web.FileField):
            value.file.close()


def int_param(value: str | None) -> int | None:
    """An id from a form field (a staff member to assign, say), or ``None`` if it names no row."""
    return params.parse_id(value)


def page_param(request: web.Request) -> int:
    """``?page=N`` of a list (1 when absent); anything else is a 400 with a clear message."""
    return params.int_param(request.query, "page", default=1, minimum=1, maximum=params.MAX_PAGE)


def match_id(request: web.Request, name: str = "id") -> int:
    """The id in the path; 404 for one that cannot exist (``²``, ``１``, beyond the table's range)."""
    value = params.parse_id(request.match_info[name])
    if value is None:
        raise web.HTTPNotFound()
    return value


# --- middleware ---------------------------------------------------------------------------------

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UPLOAD_PATHS = ("/photos", "/imports")
UPLOAD_MAX = 64 * 1024 * 1024
"""Body limit of the upload routes (phone photos, roster spreadsheets); every other route keeps the
app's small ``YEZHU_MAX_BODY_BYTES``."""
LIST_UPLOAD_MAX = 5 * 1024 * 1024
"""Body limit of the campaign wizard's post (``POST /console/campaigns``), which may carry an xlsx audience
list: a list of thousands of houses is far over the app's 64 KB, and nothing like the rosters' 64 MB."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def is_https(request: web.Request) -> bool:
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or proto == "https"


def client_address(request: web.Request) -> str:
    """The client's address: the peer, or what a configured trusted proxy says it is (bot/proxies.py)."""
    settings = runtime_of(request).settings
    networks = settings.trusted_proxy_networks
    header = request.headers.getall(settings.proxy_header, []) if networks else []
    return proxies.client_address(request.remote, header, networks)


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if not (path == PREFIX or path.startswith(PREFIX + "/")):
        return await handler(request)
    try:
        return await _console_request(request, handler, path)
    except params.BadParameter as exc:
        response = bad_request(request, exc.detail_zh)
        _secure_headers(request, response)
        return response


def bad_request(request: web.Request, detail: str) -> web.Response:
    """A 400 for a parameter the page cannot use: JSON for scripts, the error page for people."""
    if wants_json(request):
        return web.json_response({"error": "bad_request", "detail": detail}, status=400)
    return render(request, "error.html", status=400, title="请求有误", detail=detail)


async def _console_request(request: web.Request, handler: Handler, path: str) -> web.StreamResponse:
    params.check_request(request)
    if is_public(path):
        response = await handler(request)
        _secure_headers(request, response)
        return response
    console = console_of(request)
    staff = await authenticate(request, console)
    if staff is None:
        if request.method in SAFE_METHODS and not wants_json(request) and path != f"{PREFIX}/events":
            nxt = request.path_qs if request.method == "GET" else f"{PREFIX}/"
            raise web.HTTPFound(f"{PREFIX}/login?next={_quote(nxt)}")
        return web.json_response({"error": "unauthorized", "detail": "请先登录"}, status=401)
    if request.content_type == "multipart/form-data" and path.endswith(UPLOAD_PATHS):
        request = request.clone(client_max_size=UPLOAD_MAX)  # photos and rosters, on these routes only
    elif request.content_type == "multipart/form-data" and request.method == "POST" and path == f"{PREFIX}/campaigns":
        request = request.clone(client_max_size=LIST_UPLOAD_MAX)  # the wizard's audience list (xlsx)
    request[STAFF] = staff
    await console.refresh_projects()
    if request.method == "GET" and not wants_json(request) and staff.can("tickets.view") and path != f"{PREFIX}/events":
        request[OVERDUE] = await overdue_count(console, staff)
    if request.method not in SAFE_METHODS:
        refusal = await check_csrf(request, staff)
        if refusal is not None:
            return refusal
    try:
        try:
            response = await handler(request)
        except Refused as refused:
            response = fail(request, refused.detail, status=refused.status, back=refused.back)
        except params.BadParameter as exc:
            response = bad_request(request, exc.detail_zh)
    except web.HTTPException as exc:
        await _persist(request, console, staff)
        _secure_headers(request, exc)
        raise
    await _persist(request, console, staff)
    if not response.prepared:
        _secure_headers(request, response)
    return response


async def _persist(request: web.Request, console: Console, staff: Staff) -> None:
    if request.get(LOGGED_OUT):
        return
    data = staff.data
    if request.get(DIRTY) or console.sessions.clock() - data.get("seen", 0) > 60:
        await console.sessions.save(staff.token_hash, data)


def _secure_headers(request: web.Request, response: web.StreamResponse | web.HTTPException) -> None:
    for k, v in SECURITY_HEADERS.items():
        response.headers.setdefault(k, v)
    if not request.path.startswith(PREFIX + "/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="/")


async def authenticate(request: web.Request, console: Console) -> Staff | None:
    loaded = await console.sessions.load(request.cookies.get(COOKIE, ""))
    if loaded is None:
        return None
    token_hash, data = loaded
    async with runtime_of(request).db.session() as s:
        user = await s.get(StaffUser, data["staff_id"])
    if user is None or not user.active or not hmac.compare_digest(_fingerprint(user.password_hash), data["pw"]):
        await console.sessions.delete(token_hash)
        return None
    return Staff(id=user.id, username=user.username, display_name=user.display_name, role=user.role,
                 token_hash=token_hash, csrf=data["csrf"], data=data)


async def check_csrf(request: web.Request, staff: Staff) -> web.StreamResponse | None:
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return web.json_response({"error": "csrf", "detail": "拒绝跨站请求"}, status=403)
    token = request.headers.get("X-CSRF-Token", "")
    if not token and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        token = str((await request.post()).get("_csrf", ""))
    if not token or not hmac.compare_digest(token.encode(), staff.csrf.encode()):
        return web.json_response({"error": "csrf", "detail": "页面已过期或请求无效，请刷新页面后重试"}, status=403)
    return None


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(COOKIE, token, path=PREFIX, httponly=True, samesite="Lax", secure=is_https(request),
                        max_age=MAX_AGE)


OVERDUE_TTL = 10.0
"""Seconds the navigation's overdue count is reused (per process; per engineer, or one for the desk)."""


async def overdue_count(console: Console, staff: Staff) -> int:
    """Tickets past their due time while it is the company's turn (an engineer: their own)."""
    key = f"engineer:{staff.id}" if staff.role == "engineer" else "desk"
    cached = console.overdue.get(key)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    query = sa.select(sa.func.count()).select_from(Ticket).where(
        Ticket.status.in_(DESK_TURN), Ticket.due_at.is_not(None), Ticket.due_at < utcnow())
    if staff.role == "engineer":
        query = query.where(Ticket.assignee_id == staff.id)
    async with console.runtime.db.session() as s:
        count = int((await s.execute(query)).scalar_one())
    console.overdue[key] = (count, time.monotonic() + OVERDUE_TTL)
    return count


# --- audit --------------------------------------------------------------------------------------


def audit(s: AsyncSession, staff: Staff | str, action: str, target: str | None = None, **data: Any) -> None:
    """Record a staff action on owner data (who, what, when) in the caller's transaction."""
    actor = staff if isinstance(staff, str) else staff.username
    s.add(AuditLog(actor=actor, action=action, target=target, data=data, at=utcnow()))


async def audit_now(request: web.Request, action: str, target: str | None = None, **data: Any) -> None:
    """Audit a read (viewing owner data) in its own small transaction."""
    async with runtime_of(request).db.session() as s, s.begin():
        audit(s, staff_of(request), action, target, **data)


# --- phones -------------------------------------------------------------------------------------


def shown_phone(staff: Staff, phone: str | None, *, assigned_to_me: bool = False) -> str:
    """The phone as this staff member may see it (docs/CONSOLE.md "Phone numbers")."""
    if staff.can("phones") or assigned_to_me:
        return phone or ""
    return mask_phone(phone)


# --- rendering ----------------------------------------------------------------------------------


def render_string(request: web.Request, template: str, **context: Any) -> str:
    console = console_of(request)
    staff = request.get(STAFF)
    flashes: list[Any] = []
    if staff is not None and staff.data.get("flash"):
        flashes, staff.data["flash"] = staff.data["flash"], []
        request[DIRTY] = True
    nav = [n for n in NAV if staff is not None and staff.can(n[3])]
    context.setdefault("now", utcnow())
    context.setdefault("usernames", console.names)
    return console.templates.get_template(template).render(
        staff=staff, nav=nav, flashes=flashes, v=console.asset_version, project_names=console.projects,
        overdue_nav=request.get(OVERDUE, 0), **context
    )


def render(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    context.setdefault("title", "")
    context.setdefault("page", "")
    return web.Response(text=render_string(request, template, **context), status=status,
                        content_type="text/html", charset="utf-8")


async def locked_ticket(s: AsyncSession, rt: Runtime, ticket_id: int) -> Ticket:
    """The ticket a route is about to change, row-locked on PostgreSQL (SQLite serialises writers), or 404."""
    ticket = await s.get(Ticket, ticket_id, with_for_update=not rt.db.is_sqlite)
    if ticket is None:
        raise web.HTTPNotFound(text="工单不存在")
    return ticket


async def staff_list(s: AsyncSession, roles: tuple[str, ...]) -> list[StaffUser]:
    return list(
        (await s.execute(
            sa.select(StaffUser).where(StaffUser.active.is_(True), StaffUser.role.in_(roles))
            .order_by(StaffUser.role, StaffUser.display_name)
        )).scalars()
    )
