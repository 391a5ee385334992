"""The ``yezhu`` command line, run as a user would (typer's runner, a real SQLite file)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app

runner = CliRunner()


@pytest.fixture
def db_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("YEZHU_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setenv("YEZHU_ADMIN_PASSWORD", "admin-pass")
    monkeypatch.chdir(tmp_path)  # no stray .env
    return path


def test_migrate_and_demo_are_idempotent(db_env: Path) -> None:
    first = runner.invoke(app, ["demo"])
    assert first.exit_code == 0, first.output
    assert "2592 houses" in first.output and "staff kefu: password" in first.output
    assert "staff admin" not in first.output  # YEZHU_ADMIN_PASSWORD chosen: nothing to show
    second = runner.invoke(app, ["demo"])
    assert second.exit_code == 0 and "nothing changed" in second.output and "password" not in second.output
    assert runner.invoke(app, ["migrate"]).exit_code == 0


def test_migrate_on_a_fresh_checkout_creates_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`scripts/start` runs `yezhu migrate` first; on a fresh clone `var/` does not exist yet."""
    db = tmp_path / "fresh-checkout" / "var" / "yezhu.db"
    monkeypatch.setenv("YEZHU_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert db.exists()


# --- the database file holds owners' names and phones: its owner alone reads it ------------------


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most servers run with (022): without care SQLite's file would be world-readable."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_an_existing_world_readable_database_is_tightened_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, usual_umask: None, sqlite_template: Path,
) -> None:
    """A deployment from before: var/ 0755 with yezhu.db and its -wal 0644. It keeps working, the files
    become 0600 and the log says so once; a folder that exists, which may be shared, is left alone."""
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    db = var / "yezhu.db"
    shutil.copy(sqlite_template, db)
    (var / "yezhu.db-wal").write_bytes(b"")
    for path in (db, var / "yezhu.db-wal"):
        path.chmod(0o644)
    monkeypatch.setenv("YEZHU_DATABASE_URL", _url(db))
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, ["migrate"])
    assert first.exit_code == 0 and "at head" in first.output, first.output  # the same database, working
    assert "yezhu.db was readable by other users (mode 644); now only by its owner (600)" in first.output
    second = runner.invoke(app, ["migrate"])
    assert second.exit_code == 0 and "readable by other users" not in second.output, second.output  # said once
    assert _mode(db) == 0o600 and not ((var / "yezhu.db-wal").exists() and _mode(var / "yezhu.db-wal") != 0o600)
    assert _mode(var) == 0o755


def test_chat_talks_as_a_bound_owner(db_env: Path) -> None:
    assert runner.invoke(app, ["demo"]).exit_code == 0
    result = runner.invoke(app, ["chat", "--openid", "oDEMO0001"], input="我的房产证办好了吗\n")
    assert result.exit_code == 0, result.output
    assert "张三您好" in result.output and "可以领取" in result.output


def test_kb_export_import_round_trip_and_ask(db_env: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["demo"]).exit_code == 0
    out = tmp_path / "kb.yml"
    assert runner.invoke(app, ["kb", "export", str(out)]).exit_code == 0
    text = out.read_text(encoding="utf-8")
    assert text.count("question:") >= 40
    result = runner.invoke(app, ["kb", "import", str(out)])
    assert result.exit_code == 0 and "0 created, 0 updated" in result.output
    edited = text.replace("0571-88880000", "0571-12345678", 1)
    out.write_text(edited, encoding="utf-8")
    result = runner.invoke(app, ["kb", "import", str(out)])
    assert "1 updated" in result.output
    result = runner.invoke(app, ["kb", "ask", "物业费怎么交"])
    assert result.exit_code == 0 and "decision: answered" in result.output and "微信" in result.output
    bad = tmp_path / "bad.yml"
    bad.write_text("- id: x\n  question: ''\n", encoding="utf-8")
    assert runner.invoke(app, ["kb", "import", str(bad)]).exit_code == 2


def test_nlu_parse_is_mounted(db_env: Path) -> None:
    result = runner.invoke(app, ["nlu", "parse"], input="三栋二单元五零一卫生间漏水\n")
    assert result.exit_code == 0, result.output
    line = json.loads(result.output.strip().splitlines()[-1])
    assert line["intent"] == "repair"
    assert any(e["entity"] == "house" for e in line["entities"])


def test_worker_refuses_without_redis(db_env: Path) -> None:
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2


# --- migrate says what it did -------------------------------------------------------------------


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def test_migrate_says_created_upgraded_or_at_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.doctor import head_revision
    from bot.store.db import upgrade

    head = head_revision()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YEZHU_DATABASE_URL", _url(tmp_path / "new.db"))
    created = runner.invoke(app, ["migrate"])
    assert created.exit_code == 0, created.output
    assert f"created the schema at head {head}" in created.output and "new.db" in created.output
    again = runner.invoke(app, ["migrate"])
    assert again.exit_code == 0 and f"already at head {head}" in again.output and "created" not in again.output

    upgrade(_url(tmp_path / "old.db"), "0001")
    monkeypatch.setenv("YEZHU_DATABASE_URL", _url(tmp_path / "old.db"))
    upgraded = runner.invoke(app, ["migrate"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"upgraded from 0001 to {head}" in upgraded.output


def test_migrate_refuses_what_it_cannot_migrate_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    monkeypatch.chdir(tmp_path)
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    cases = {
        _url(newer): "newer than this Yezhu",
        _url(foreign): "has tables but no schema revision",
        "postgresql+asyncpg://yezhu:secret@127.0.0.1:9/nowhere": "cannot connect",
    }
    for url, expected in cases.items():
        monkeypatch.setenv("YEZHU_DATABASE_URL", url)
        result = runner.invoke(app, ["migrate"])
        assert result.exit_code == 1, (url, result.output)
        assert expected in result.output and "Traceback" not in result.output
        assert isinstance(result.exception, SystemExit)  # a clean exit, not an exception
        assert "secret" not in result.output
    with sqlite3.connect(foreign) as conn:  # nothing was added to someone else's database
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["invoices"]


# --- the demo's credentials ---------------------------------------------------------------------


def test_demo_keeps_its_passwords_and_api_token_under_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, usual_umask: None,
) -> None:
    from bot.security import verify_password
    from bot.settings import Settings

    var = tmp_path / "var"
    monkeypatch.setenv("YEZHU_DATABASE_URL", _url(var / "yezhu.db"))
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, ["demo"])
    assert first.exit_code == 0, first.output
    token_file, passwords_file = var / "api-token", var / "staff-passwords"
    for secret in (token_file, passwords_file):
        assert secret.stat().st_mode & 0o777 == 0o600, secret
    # The database holds owners' names and phones: it and its folder are its owner's alone, and so are
    # the -wal and -shm files SQLite makes while the app writes (they copy the database file's mode).
    assert _mode(var) == 0o700 and _mode(var / "yezhu.db") == 0o600
    conn = sqlite3.connect(var / "yezhu.db")
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("UPDATE staff_user SET display_name = display_name")
        conn.commit()
        files = {p.name: _mode(p) for p in var.iterdir() if p.name.startswith("yezhu.db")}
    finally:
        conn.close()
    assert files == {"yezhu.db": 0o600, "yezhu.db-wal": 0o600, "yezhu.db-shm": 0o600}
    token = token_file.read_text().strip()
    assert len(token) >= 32 and token not in first.output  # the token is never printed
    assert "API token generated in var/api-token" in first.output
    kept = dict(line.split(" ", 1) for line in passwords_file.read_text().splitlines() if not line.startswith("#"))
    assert set(kept) == {"admin", "kefu", "zhuguan", "gongcheng"}
    assert f"staff kefu: password {kept['kefu']}" in first.output and "kept in var/staff-passwords" in first.output
    assert Settings().api_token.get_secret_value() == token  # type: ignore[union-attr]

    import asyncio

    import sqlalchemy as sa

    from bot.store.db import Database
    from bot.store.models import StaffUser

    async def hashes() -> dict[str, str]:
        db = Database(_url(var / "yezhu.db"))
        async with db.session() as s:
            rows = dict((await s.execute(sa.select(StaffUser.username, StaffUser.password_hash))).all())
        await db.close()
        return rows

    stored = asyncio.run(hashes())
    assert all(verify_password(stored[user], password) for user, password in kept.items())

    second = runner.invoke(app, ["demo"])
    assert second.exit_code == 0 and "password" not in second.output and "API token" not in second.output
    assert token_file.read_text().strip() == token  # created once

    monkeypatch.setenv("YEZHU_API_TOKEN", "chosen-by-the-operator-0123456789")
    assert Settings().api_token.get_secret_value() == "chosen-by-the-operator-0123456789"  # type: ignore[union-attr]
    monkeypatch.setenv("YEZHU_API_TOKEN", "")
    assert Settings().api_token.get_secret_value() == token  # type: ignore[union-attr]  # empty counts as unset


def test_demo_with_a_chosen_token_generates_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YEZHU_DATABASE_URL", _url(tmp_path / "var" / "yezhu.db"))
    monkeypatch.setenv("YEZHU_API_TOKEN", "chosen-by-the-operator-0123456789")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "var" / "api-token").exists() and "API token" not in result.output


async def test_the_api_accepts_the_generated_token_only_while_none_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aiohttp_client: Any, sqlite_demo_template: Path
) -> None:
    import shutil

    from bot.app import create_app
    from bot.demo import ensure_api_token
    from bot.settings import Settings

    db = tmp_path / "var" / "yezhu.db"
    db.parent.mkdir()
    shutil.copy(sqlite_demo_template, db)
    monkeypatch.setenv("YEZHU_DATABASE_URL", _url(db))
    monkeypatch.chdir(tmp_path)
    token = ensure_api_token(Settings())
    assert token is not None
    generated = token.read_text().strip()
    message = {"sender": "demo-1", "text": "物业费怎么交"}

    client = await aiohttp_client(create_app(Settings()))
    resp = await client.post("/api/v1/messages", json=message, headers={"Authorization": f"Bearer {generated}"})
    assert resp.status == 200 and "微信" in (await resp.json())["replies"][0]["text"]
    assert (await client.post("/api/v1/messages", json=message)).status == 401

    monkeypatch.setenv("YEZHU_API_TOKEN", "chosen-by-the-operator-0123456789")
    chosen = await aiohttp_client(create_app(Settings()))
    resp = await chosen.post("/api/v1/messages", json=message, headers={"Authorization": f"Bearer {generated}"})
    assert resp.status == 401
    resp = await chosen.post("/api/v1/messages", json=message,
                             headers={"Authorization": "Bearer chosen-by-the-operator-0123456789"})
    assert resp.status == 200


# --- yezhu doctor ---------------------------------------------------------------------------------


def doctor_lines(result: Any) -> dict[str, str]:
    """``{check name: its status and text}`` (continuation lines with the fix are appended)."""
    lines: dict[str, str] = {}
    last = ""
    for line in result.output.splitlines()[1:-1]:
        if line.startswith("      "):
            lines[last] += " " + line.strip()
        else:
            status, name = line[:4].strip(), line[6:15].strip()
            last = name if name not in lines else f"{name}#{len(lines)}"
            lines[last] = f"{status} {line[16:]}"
    return lines


def doctor(monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[int, dict[str, str], str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(app, ["doctor"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.exit_code, doctor_lines(result), result.output


def test_doctor_walks_a_newcomer_from_nothing_to_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YEZHU_DATABASE_URL", _url(tmp_path / "var" / "yezhu.db"))
    monkeypatch.setenv("YEZHU_PORT", "9")  # nothing listens there
    status, lines, output = doctor(monkeypatch)
    assert status == 1, output
    assert lines["database"].startswith("fail") and "run `yezhu migrate`" in lines["database"]
    assert not (tmp_path / "var" / "yezhu.db").exists()  # the doctor only reads
    assert lines["python"].startswith("ok Python 3.")
    assert lines["api token"].startswith("warn") and "refuses every request" in lines["api token"]
    assert lines["server"].startswith("ok nothing answers on http://127.0.0.1:9")
    assert output.splitlines()[-1].endswith("checks failed.")

    assert runner.invoke(app, ["demo"]).exit_code == 0
    status, lines, output = doctor(monkeypatch)
    assert status == 0, output
    assert lines["database"].startswith("ok") and "schema at head" in lines["database"]
    assert "kefu (agent)" in lines["staff"] and "gongcheng (engineer)" in lines["staff"]
    assert lines["api token"].startswith("ok") and "var/api-token" in lines["api token"]
    assert lines["redis"].startswith("ok not configured")
    assert lines["wechat"].startswith("ok no Official Account configured")
    assert lines["sms"].startswith("ok development sender")
    assert output.splitlines()[-1].startswith("All ")


AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def test_doctor_explains_wechat_settings_and_their_mode(db_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    status, lines, _ = doctor(monkeypatch, YEZHU_WECHAT_TOKEN="tok")
    assert status == 1
    assert lines["wechat"].startswith("fail default: incomplete")
    assert "YEZHU_WECHAT_APP_ID, YEZHU_WECHAT_APP_SECRET not set" in lines["wechat"]

    status, lines, _ = doctor(monkeypatch, YEZHU_WECHAT_APP_ID="wx0123456789abcdef",
                              YEZHU_WECHAT_APP_SECRET="s3cret-app-secret")
    assert status == 0 and "plaintext mode" in lines["wechat"] and "/wechat/default" in lines["wechat"]
    assert "s3cret" not in "".join(lines.values())

    status, lines, _ = doctor(monkeypatch, YEZHU_WECHAT_AES_KEY=AES_KEY)
    assert status == 0 and "compatible or safe mode" in lines["wechat"]
    status, lines, _ = doctor(monkeypatch, YEZHU_WECHAT_AES_KEY="too-short")
    assert status == 1 and "not a valid EncodingAESKey" in lines["wechat"]

    config = db_env.parent / "accounts.yml"
    config.write_text("wechat:\n  tower2:\n    token: t2\n    app_id: wx2\n", encoding="utf-8")
    status, lines, _ = doctor(monkeypatch, YEZHU_WECHAT_AES_KEY=AES_KEY, YEZHU_CONFIG=str(config))
    assert status == 1
    assert any(v.startswith("fail tower2: incomplete") and "app_secret" in v for v in lines.values())
    config.write_text("wechat: [unclosed", encoding="utf-8")
    status, lines, _ = doctor(monkeypatch)
    assert status == 1 and lines["settings"].startswith("fail") and "accounts.yml" in lines["settings"]


def test_doctor_reports_bad_settings_and_unreachable_services_in_one_line_each(
    db_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, lines, output = doctor(monkeypatch, YEZHU_PORT="eighty")
    assert status == 1 and "YEZHU_PORT" in lines["settings"] and len(output.splitlines()) < 8
    monkeypatch.delenv("YEZHU_PORT")

    status, lines, output = doctor(
        monkeypatch,
        YEZHU_DATABASE_URL="postgresql+asyncpg://yezhu:pg-secret@127.0.0.1:9/yezhu",
        YEZHU_REDIS_URL="redis://:redis-secret@127.0.0.1:9/0",
        YEZHU_API_TOKEN="short",
        YEZHU_SMS_PROVIDER="aliyun",
    )
    assert status == 1
    assert lines["database"].startswith("fail cannot connect to postgresql+asyncpg://yezhu:***@127.0.0.1:9/yezhu")
    assert lines["redis"].startswith("fail cannot reach redis://:***@127.0.0.1:9/0")
    assert lines["api token"].startswith("warn") and "short" in lines["api token"]
    assert lines["sms"].startswith("fail") and "aliyun" in lines["sms"]
    assert "pg-secret" not in output and "redis-secret" not in output

    status, lines, output = doctor(monkeypatch, YEZHU_DATABASE_URL="postgresql://yezhu:pg-secret@db/yezhu")
    assert status == 1 and lines["database"].startswith("fail postgresql://yezhu:***@db/yezhu: not a database URL")
    assert "postgresql+asyncpg://" in lines["database"]
    assert "pg-secret" not in output and "redis-secret" not in output


def test_doctor_after_a_production_deploy(pg_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    status, lines, output = doctor(monkeypatch, YEZHU_DATABASE_URL=pg_url, YEZHU_REDIS_URL=redis_url,
                                   YEZHU_API_TOKEN="a-long-random-token-for-the-crm-0123",
                                   YEZHU_PROCESSES="2")
    assert lines["database"].startswith("ok") and "schema at head" in lines["database"], output
    assert lines["staff"].startswith("warn no active staff account")  # a fresh deploy: nobody yet
    assert lines["redis"].startswith("ok") and "reachable (Redis " in lines["redis"]
    assert lines["api token"] == "ok YEZHU_API_TOKEN set"
    assert status == 0, output
