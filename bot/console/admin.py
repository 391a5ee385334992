"""Administration: staff accounts (add, role, reset password, deactivate) and the audit log viewer.

Admin only. Changing a password or deactivating an account ends that person's sessions at once (the
session remembers a fingerprint of the password hash; see :mod:`bot.console.core`).
"""

from __future__ import annotations

import asyncio
import re

import sqlalchemy as sa
from aiohttp import web

from bot.console.core import (
    PREFIX,
    ROLES,
    Refused,
    audit,
    done,
    form,
    match_id,
    page_param,
    render,
    route,
    runtime_of,
    staff_of,
)
from bot.security import hash_password
from bot.store.models import AuditLog, StaffUser

USERNAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")
MIN_PASSWORD = 10


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Refused(f"密码至少{MIN_PASSWORD}位")


@route("GET", "/staff", "staff.admin")
async def staff_page(request: web.Request) -> web.StreamResponse:
    async with runtime_of(request).db.session() as s:
        users = list((await s.execute(sa.select(StaffUser).order_by(StaffUser.active.desc(), StaffUser.username)))
                     .scalars())
    return render(request, "staff.html", title="员工", page="staff", users=users)


@route("POST", "/staff", "staff.admin")
async def add_staff(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    username = data.get("username", "").strip().lower()
    role = data.get("role", "")
    name = data.get("display_name", "").strip()[:50] or username
    password = data.get("password", "")
    if not USERNAME_RE.match(username):
        raise Refused("用户名须为2–32位小写字母、数字或 . _ -，以字母开头")
    if role not in ROLES:
        raise Refused("请选择角色")
    check_password(password)
    password_hash = await asyncio.to_thread(hash_password, password)
    async with runtime_of(request).db.session() as s, s.begin():
        if (await s.execute(sa.select(StaffUser.id).where(StaffUser.username == username))).first():
            raise Refused(f"用户名 {username} 已存在", status=409)
        s.add(StaffUser(username=username, display_name=name, role=role, password_hash=password_hash,
                        phone=data.get("phone", "").strip()[:20] or None))
        audit(s, staff_of(request), "staff.add", f"staff:{username}", role=role)
    return done(request, f"{PREFIX}/staff", f"已添加员工 {name}")


@route("POST", "/staff/{id}", "staff.admin")
async def update_staff(request: web.Request) -> web.StreamResponse:
    me = staff_of(request)
    data = await form(request)
    password = data.get("password", "")
    if password:
        check_password(password)
    password_hash = await asyncio.to_thread(hash_password, password) if password else None
    async with runtime_of(request).db.session() as s, s.begin():
        user = await s.get(StaffUser, match_id(request))
        if user is None:
            raise web.HTTPNotFound(text="员工不存在")
        changes: dict[str, object] = {}
        role = data.get("role")
        if role and role != user.role:
            if role not in ROLES:
                raise Refused("无效的角色")
            if user.id == me.id:
                raise Refused("不能修改自己的角色")
            user.role, changes["role"] = role, role
        if "active" in data:
            active = data["active"] in ("1", "true", "on")
            if user.id == me.id and not active:
                raise Refused("不能停用自己的账号")
            if active != user.active:
                user.active, changes["active"] = active, active
        if "on_duty" in data:
            user.on_duty = changes["on_duty"] = data["on_duty"] in ("1", "true", "on")
        if password_hash:
            user.password_hash, changes["password"] = password_hash, "reset"
        audit(s, me, "staff.update", f"staff:{user.username}", **changes)
    return done(request, f"{PREFIX}/staff", f"已更新 {user.display_name}")


@route("GET", "/audit", "audit")
async def audit_page(request: web.Request) -> web.StreamResponse:
    q = request.query
    query = sa.select(AuditLog).order_by(AuditLog.id.desc())
    if actor := q.get("actor", "").strip():
        query = query.where(AuditLog.actor == actor)
    if action := q.get("action", "").strip():
        query = query.where(AuditLog.action.startswith(action))
    if target := q.get("target", "").strip():
        query = query.where(AuditLog.target == target)
    page = page_param(request)
    async with runtime_of(request).db.session() as s:
        rows = list((await s.execute(query.offset((page - 1) * 100).limit(100))).scalars())
    return render(request, "audit.html", title="审计日志", page="audit", rows=rows, page_no=page,
                  filters={"actor": actor, "action": action, "target": target})
