"""``yezhu demo``: the demo data set of DESIGN.md ("Demo data"), loaded into an empty database.

Idempotent: running it again changes nothing and creates no duplicates. Generated owners are
deterministic (seeded), so every machine gets the same demo.

On the embedded database it also makes the demo usable at once, creating each secret once and keeping it
next to the SQLite file (``var/``, readable only by its owner): the staff passwords it generated
(``var/staff-passwords``) and, unless ``YEZHU_API_TOKEN`` is set, an API token (``var/api-token``, read
by :class:`bot.settings.Settings`).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bot.security import hash_password, new_password
from bot.settings import Settings
from bot.store.db import Database
from bot.store.models import (
    Building,
    CertificateRecord,
    House,
    Identity,
    Owner,
    OwnerHouse,
    Project,
    StaffUser,
    utcnow,
)

DEMO_PROJECT = "demo"

# Statutory minimum warranty periods (住宅质量保证书 / 房屋建筑工程质量保修办法), counted from handover.
# Per project so a company that gives more can say so (DOMAIN.md "Repairs").
DEFAULT_WARRANTY = {
    "waterproofing": {"label": "屋面、卫生间等防水及外墙渗漏", "years": 5},
    "electrical": {"label": "电气管线", "years": 2},
    "plumbing": {"label": "给排水管道", "years": 2},
    "equipment": {"label": "设备安装", "years": 2},
    "decoration": {"label": "装修工程", "years": 2},
    "hvac": {"label": "供热与供冷系统", "seasons": 2},
    "door_window": {"label": "门窗及配件", "years": 1},
}

DEMO_SETTINGS: dict[str, Any] = {
    "service_center": "1栋大堂客服中心",
    "service_phone": "0571-88880000",
    "duty_phone": "0571-88889999",
    "staff_hours": {"weekdays": ["09:00", "17:00"], "weekend": ["09:00", "12:00"]},
    "certificate_collection": {"place": "客服中心（1栋大堂）", "hours": "工作日 9:00–17:00"},
    "warranty": DEFAULT_WARRANTY,
}

SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦许何吕施张孔曹严华金魏陶姜谢邹喻柏水窦章云苏潘葛范彭郎鲁韦马苗凤方俞任袁柳鲍史唐薛雷贺倪汤罗毕郝邬安常乐于傅齐康伍余元顾孟黄穆萧尹"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国建华志强海燕文静晓东春梅丹玉兰欣怡子涵浩然宇轩梓萱"


@dataclass
class NamedOwner:
    name: str
    phone: str
    building: str
    unit: str
    room: str
    handover: dt.date
    openid: str | None
    certificate: dict[str, Any] | None = field(default=None)


NAMED = [
    NamedOwner(
        "张三", "13800000001", "3", "2", "501", dt.date(2025, 6, 1), "oDEMO0001",
        {"status": "ready", "batch": "2026-第3批", "note": "已可领取",
         "collect_place": "客服中心（1栋大堂）", "collect_hours": "工作日 9:00–17:00"},
    ),
    NamedOwner(
        "李四", "13800000002", "8", "1", "1203", dt.date(2024, 3, 15), "oDEMO0002",
        {"status": "processing", "batch": "2026-第4批", "note": "资料已递交不动产登记中心"},
    ),
    NamedOwner("王五", "13800000003", "12", "3", "1804", dt.date(2026, 10, 1), None, None),
]

LISI_SECOND_HOME = ("8", "2", "601")

STAFF_PASSWORDS = "staff-passwords"
"""The file, next to the embedded SQLite database, holding the passwords ``yezhu demo`` generated."""

STAFF = [
    ("admin", "系统管理员", "admin", None),
    ("kefu", "客服小李", "agent", "13900000011"),
    ("zhuguan", "客服主管王经理", "supervisor", "13900000012"),
    ("gongcheng", "工程师老陈", "engineer", "13900000013"),
]


def building_handover(building: int) -> dt.date:
    """Buildings were handed over in phases; 12 is the newest (王五's, 2026-10-01)."""
    if building <= 4:
        return dt.date(2025, 6, 1)
    if building <= 8:
        return dt.date(2024, 3, 15)
    if building <= 11:
        return dt.date(2025, 12, 20)
    return dt.date(2026, 10, 1)


@dataclass
class DemoReport:
    created: bool
    houses: int = 0
    owners: int = 0
    passwords: dict[str, str] = field(default_factory=dict)
    kb_created: int = 0


async def load_demo(db: Database, *, admin_password: str | None = None) -> DemoReport:
    async with db.session() as s, s.begin():
        project = (await s.execute(sa.select(Project).where(Project.code == DEMO_PROJECT))).scalar_one_or_none()
        report = DemoReport(created=project is None)
        if project is None:
            await _create_property(s, report)
        report.passwords = await ensure_staff(s, admin_password)
        from actions.knowledge import load_demo_kb

        report.kb_created, _ = await load_demo_kb(s)
        from actions.surveys import seed_templates

        await seed_templates(s, actor="demo")  # idempotent: only the missing standard templates
    return report


async def ensure_staff(s: AsyncSession, admin_password: str | None) -> dict[str, str]:
    existing = set((await s.execute(sa.select(StaffUser.username))).scalars())
    passwords: dict[str, str] = {}
    for username, display, role, phone in STAFF:
        if username in existing:
            continue
        password = admin_password if (username == "admin" and admin_password) else new_password()
        s.add(StaffUser(username=username, display_name=display, role=role, phone=phone,
                        password_hash=hash_password(password), on_duty=role in ("supervisor", "engineer")))
        if not (username == "admin" and admin_password):
            passwords[username] = password
    return passwords


async def _create_property(s: AsyncSession, report: DemoReport) -> None:
    project = Project(code=DEMO_PROJECT, name="示范花园", city="杭州", settings=DEMO_SETTINGS)
    s.add(project)
    await s.flush()
    buildings = [{"project_id": project.id, "name": str(b)} for b in range(1, 13)]
    await s.execute(sa.insert(Building), buildings)
    b_ids = dict((await s.execute(sa.select(Building.name, Building.id).where(Building.project_id == project.id))).all())
    houses = [
        {"building_id": b_ids[str(b)], "unit": str(u), "room": f"{floor}{r:02d}", "handover_date": building_handover(b)}
        for b in range(1, 13)
        for u in range(1, 4)
        for floor in range(1, 19)
        for r in range(1, 5)
    ]
    await s.execute(sa.insert(House), houses)
    report.houses = len(houses)
    rows = (
        await s.execute(
            sa.select(House.id, Building.name, House.unit, House.room)
            .join(Building, Building.id == House.building_id)
            .where(Building.project_id == project.id)
        )
    ).all()
    house_ids = {(b, u, r): hid for hid, b, u, r in rows}

    named = {(o.building, o.unit, o.room): o for o in NAMED}
    rng = random.Random(20261123)
    owners: list[dict[str, Any]] = []
    links: list[tuple[str, int]] = []
    for n, ((b, u, r), hid) in enumerate(sorted(house_ids.items(), key=lambda kv: kv[1])):
        if (b, u, r) in named:
            o = named[(b, u, r)]
            owners.append({"name": o.name, "phone": o.phone})
            links.append((o.phone, hid))
            await s.execute(sa.update(House).where(House.id == hid).values(handover_date=o.handover))
            continue
        if rng.random() < 0.15 or (b, u, r) == LISI_SECOND_HOME:  # unsold / not registered / 李四's
            continue
        phone = f"139{n:08d}"
        owners.append({"name": rng.choice(SURNAMES) + rng.choice(GIVEN), "phone": phone})
        links.append((phone, hid))
    # A few owners hold two homes (the bot must ask which one).
    links.append(("13800000002", house_ids[LISI_SECOND_HOME]))
    await s.execute(sa.insert(Owner), owners)
    owner_ids = dict((await s.execute(sa.select(Owner.phone, Owner.id))).all())
    seen: set[tuple[int, int]] = set()
    pairs = []
    for phone, hid in links:
        key = (owner_ids[phone], hid)
        if key not in seen:
            seen.add(key)
            pairs.append({"owner_id": key[0], "house_id": hid})
    await s.execute(sa.insert(OwnerHouse), pairs)
    report.owners = len(owners)

    for o in NAMED:
        if o.openid:
            s.add(Identity(channel="wechat", account="default", external_id=o.openid,
                           owner_id=owner_ids[o.phone], bound_at=utcnow()))
        if o.certificate:
            cert = dict(o.certificate)
            ready_at = utcnow() - dt.timedelta(days=10) if cert["status"] == "ready" else None
            s.add(CertificateRecord(house_id=house_ids[(o.building, o.unit, o.room)], ready_at=ready_at, **cert))


def _write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (created with mode 0600, never wider)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)  # an older file may have been wider


def ensure_api_token(settings: Settings) -> Path | None:
    """Create the embedded demo's API token once (``var/api-token``); None when ``YEZHU_API_TOKEN`` is set
    or the database is not SQLite (production sets its own token)."""
    path = settings.generated_api_token_path()
    if path is None or (settings.api_token is not None and settings.api_token_file is None):
        return None
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        _write_secret(path, secrets.token_urlsafe(32) + "\n")
    return path


def staff_passwords_path(settings: Settings) -> Path | None:
    db = settings.sqlite_path()
    return db.parent / STAFF_PASSWORDS if db is not None else None


def read_staff_passwords(settings: Settings) -> dict[str, str]:
    """The passwords ``yezhu demo`` generated for this database (empty when none were kept)."""
    path = staff_passwords_path(settings)
    if path is None or not path.is_file():
        return {}
    passwords: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            user, _, password = line.strip().partition(" ")
            if password.strip():
                passwords[user] = password.strip()
    return passwords


def save_staff_passwords(settings: Settings, passwords: dict[str, str]) -> Path | None:
    """Keep the passwords just generated (``var/staff-passwords``) with those kept before for other
    accounts; None on PostgreSQL, where they are only shown once."""
    path = staff_passwords_path(settings)
    if path is None or not passwords:
        return path if path is not None and path.is_file() else None
    kept = {**read_staff_passwords(settings), **passwords}
    lines = [
        "# Console passwords generated by `yezhu demo` for the demo staff accounts (username password).",
        "# Change one with `yezhu staff passwd NAME`; this file is not updated then.",
        *(f"{user} {password}" for user, password in kept.items()),
    ]
    _write_secret(path, "\n".join(lines) + "\n")
    return path
