"""``yezhu staff add|passwd|list``: staff accounts from the command line (argon2 password hashes).

Passwords are prompted for (hidden, typed twice) unless ``--password`` is given or ``--generate`` asks
for a random one, printed once. Changing a password ends that person's console sessions. Both commands
write to the audit log (actor ``cli``).
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

import sqlalchemy as sa
import typer

from bot.security import hash_password, new_password
from bot.settings import Settings
from bot.store.db import Database
from bot.store.models import AuditLog, StaffUser

app = typer.Typer(help="Staff accounts: add, passwd, list.", no_args_is_help=True)

ROLES = ("agent", "engineer", "supervisor", "admin")
USERNAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")
MIN_PASSWORD = 10


def _password(given: str | None, generate: bool) -> tuple[str, bool]:
    if given and generate:
        raise typer.BadParameter("give --password or --generate, not both")
    if generate:
        return new_password(), True
    password = given or typer.prompt("密码 (password)", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        typer.echo(f"密码至少 {MIN_PASSWORD} 位 (password too short)", err=True)
        raise typer.Exit(2)
    return password, False


async def _run(coro_fn: object) -> object:
    db = Database(Settings().database_url)
    try:
        return await coro_fn(db)  # type: ignore[operator]
    finally:
        await db.close()


@app.command()
def add(
    username: Annotated[str, typer.Argument(help="Login name: lower-case letters, digits, . _ -")],
    role: Annotated[str, typer.Option(help="agent | engineer | supervisor | admin")] = "agent",
    name: Annotated[str | None, typer.Option(help="Display name, e.g. 客服小李")] = None,
    phone: Annotated[str | None, typer.Option(help="Phone number")] = None,
    password: Annotated[str | None, typer.Option(help="Password (prompted for when omitted)")] = None,
    generate: Annotated[bool, typer.Option("--generate", help="Generate a random password and print it once")] = False,
) -> None:
    """Add a staff member."""
    username = username.strip().lower()
    if not USERNAME_RE.match(username):
        raise typer.BadParameter("2–32 lower-case letters, digits, '.', '_' or '-', starting with a letter")
    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}")
    secret, generated = _password(password, generate)

    async def work(db: Database) -> bool:
        async with db.session() as s, s.begin():
            if (await s.execute(sa.select(StaffUser.id).where(StaffUser.username == username))).first():
                return False
            s.add(StaffUser(username=username, display_name=name or username, role=role, phone=phone,
                            password_hash=hash_password(secret), on_duty=role in ("engineer", "supervisor")))
            s.add(AuditLog(actor="cli", action="staff.add", target=f"staff:{username}", data={"role": role}))
        return True

    if not asyncio.run(_run(work)):
        typer.echo(f"员工 {username} 已存在 (already exists); use `yezhu staff passwd {username}`", err=True)
        raise typer.Exit(1)
    typer.echo(f"已添加员工 {username}（{role}）")
    if generated:
        typer.echo(f"password: {secret}   (shown once)")


@app.command()
def passwd(
    username: Annotated[str, typer.Argument(help="Login name")],
    password: Annotated[str | None, typer.Option(help="New password (prompted for when omitted)")] = None,
    generate: Annotated[bool, typer.Option("--generate", help="Generate a random password and print it once")] = False,
) -> None:
    """Set a staff member's password (ends their console sessions)."""
    username = username.strip().lower()
    secret, generated = _password(password, generate)

    async def work(db: Database) -> bool:
        async with db.session() as s, s.begin():
            user = (await s.execute(sa.select(StaffUser).where(StaffUser.username == username))).scalar_one_or_none()
            if user is None:
                return False
            user.password_hash = hash_password(secret)
            s.add(AuditLog(actor="cli", action="staff.passwd", target=f"staff:{username}", data={}))
        return True

    if not asyncio.run(_run(work)):
        typer.echo(f"没有员工 {username} (no such staff member)", err=True)
        raise typer.Exit(1)
    typer.echo(f"已更新 {username} 的密码")
    if generated:
        typer.echo(f"password: {secret}   (shown once)")


@app.command("list")
def list_staff() -> None:
    """List staff accounts."""

    async def work(db: Database) -> list[StaffUser]:
        async with db.session() as s:
            return list((await s.execute(sa.select(StaffUser).order_by(StaffUser.username))).scalars())

    users: list[StaffUser] = asyncio.run(_run(work))  # type: ignore[assignment,arg-type]
    for u in users:
        typer.echo(f"{u.username:16} {u.role:10} {u.display_name}{'' if u.active else '  (inactive)'}")
