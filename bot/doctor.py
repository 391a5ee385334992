"""``yezhu doctor``: checks the set-up and says, one line per check, what is right and how to fix what is not.

For a newcomer after ``./scripts/start`` and for an operator after a deploy. Each check returns a
:class:`Check` (``ok``, ``warn``: works but probably not what you want, ``fail``: something will not
work); the command exits 1 when any check failed. Nothing here raises: an unreachable database or a
bad setting becomes a ``fail`` line with the reason, never a traceback. It only reads: it creates no
database file and changes no schema.

Also the schema probe ``yezhu migrate`` reports with (:func:`schema_state`).
"""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from pydantic import ValidationError

from bot.settings import ROOT, WECHAT_API_BASE, Settings, WeChatAccount

OK, WARN, FAIL = "ok", "warn", "fail"
CONNECT_TIMEOUT = 5.0
CHROMIUM = Path("/usr/bin/chromium")
"""The browser the console's tests drive (tests/console/live.py)."""
MIN_API_TOKEN = 16


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:4}  {self.name:9} {self.detail}"
        return text + (f"\n      {'':9} → {self.fix}" if self.fix else "")


# --- the schema ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    """The revision stamped in the database (None: never migrated)."""
    head: str
    tables: int
    """Tables in the database besides Alembic's own (an un-stamped database with tables was not built by
    ``yezhu migrate``)."""

    @property
    def known(self) -> bool:
        return self.current is None or self.current in known_revisions()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from bot.store.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "migrations/versions has no revision"
    return head


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    from bot.store.db import alembic_config

    return {rev.revision for rev in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()}


async def schema_state(url: str) -> SchemaState:
    """Read the database's Alembic revision (raises what the driver raises when it cannot connect)."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    connect_args = {"timeout": CONNECT_TIMEOUT} if url.startswith("postgresql") else {}
    engine = create_async_engine(url, connect_args=connect_args)

    def probe(conn: sa.Connection) -> tuple[str | None, int]:
        current = MigrationContext.configure(conn).get_current_revision()
        tables = [t for t in sa.inspect(conn).get_table_names() if t != "alembic_version"]
        return current, len(tables)

    try:
        async with engine.connect() as conn:
            current, tables = await asyncio.wait_for(conn.run_sync(probe), CONNECT_TIMEOUT * 2)
    finally:
        await engine.dispose()
    return SchemaState(current=current, head=head_revision(), tables=tables)


def describe_database(url: str) -> str:
    """The database for a message: a SQLite file's path (relative when under the working folder) or the
    URL with its password hidden."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1] or ":memory:"
        return "sqlite " + shown_path(Path(path)) if path != ":memory:" else "sqlite in memory"
    return hide_password(url)


def hide_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        text = text or f"no answer within {CONNECT_TIMEOUT:.0f} s"
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


# --- the checks ------------------------------------------------------------------------------------


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    where = shown_path(Path(sys.executable))
    # Older Pythons cannot import Yezhu at all (scripts/bootstrap refuses them): no failing branch here.
    return Check(OK, "python", f"Python {version} ({where}); Yezhu needs 3.11 or newer")


def check_settings() -> tuple[Check, Settings | None]:
    env_file = Path(".env")
    source = f"environment and {shown_path(env_file)}" if env_file.is_file() else "environment (no .env file here)"
    try:
        s = Settings()
    except ValidationError as exc:
        wrong = "; ".join(
            f"YEZHU_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        return Check(FAIL, "settings", f"{source}: {wrong}", "correct the value (README \"Settings\")"), None
    if s.config:
        try:
            accounts = s.wechat_accounts
        except FileNotFoundError:
            return Check(FAIL, "settings", f"YEZHU_CONFIG={s.config}: no such file",
                         "point YEZHU_CONFIG at the YAML file, or unset it"), None
        except Exception as exc:
            return Check(FAIL, "settings", f"YEZHU_CONFIG={s.config}: {reason(exc)}",
                         "correct the YAML file (README \"Settings\")"), None
        return Check(OK, "settings", f"{source}, and {s.config} ({len(accounts) - 1} more WeChat accounts)"), s
    return Check(OK, "settings", f"read from the {source}"), s


async def check_database(s: Settings) -> list[Check]:
    where = describe_database(s.database_url)
    if not s.database_url.startswith(("sqlite+aiosqlite:", "postgresql+asyncpg:")):
        return [Check(FAIL, "database", f"{where}: not a database URL Yezhu runs on",
                      "YEZHU_DATABASE_URL=postgresql+asyncpg://user:password@host/db (or sqlite+aiosqlite:///path)")]
    db_file = s.sqlite_path()
    if db_file is not None and not db_file.is_file():
        return [Check(FAIL, "database", f"{where}: no database file yet",
                      "run `yezhu migrate` (./scripts/start does it)")]
    try:
        state = await schema_state(s.database_url)
    except Exception as exc:
        return [Check(FAIL, "database", f"cannot connect to {where}: {reason(exc)}",
                      "is the server running, and is YEZHU_DATABASE_URL right?")]
    if state.current is None and state.tables:
        return [Check(FAIL, "database", f"{where}: {state.tables} tables but no schema revision (not built by "
                      "`yezhu migrate`)", "point YEZHU_DATABASE_URL at Yezhu's own database")]
    if state.current is None:
        return [Check(FAIL, "database", f"{where}: reachable, but empty", "run `yezhu migrate`")]
    if not state.known:
        return [Check(FAIL, "database", f"{where}: schema {state.current} is newer than this Yezhu (head "
                      f"{state.head})", "upgrade Yezhu to the version that migrated it")]
    if state.current != state.head:
        return [Check(FAIL, "database", f"{where}: schema {state.current}, behind head {state.head}",
                      "run `yezhu migrate`")]
    return [Check(OK, "database", f"{where}: reachable, schema at head {state.head}"), await check_staff(s)]


async def check_staff(s: Settings) -> Check:
    from sqlalchemy.ext.asyncio import create_async_engine

    from bot.store.models import StaffUser

    engine = create_async_engine(s.database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(StaffUser.username, StaffUser.role)
                                       .where(StaffUser.active.is_(True)).order_by(StaffUser.id))).all()
    except Exception as exc:
        return Check(FAIL, "staff", f"cannot read the staff accounts: {reason(exc)}")
    finally:
        await engine.dispose()
    if not rows:
        return Check(WARN, "staff", "no active staff account: nobody can log in to the console",
                     "`yezhu demo` (demo accounts) or `yezhu staff add NAME --role admin`")
    names = ", ".join(f"{user} ({role})" for user, role in rows)
    return Check(OK, "staff", f"{len(rows)} console accounts: {names}")


async def check_redis(s: Settings) -> Check:
    if not s.redis_url:
        if s.processes > 1:
            return Check(FAIL, "redis", f"not configured, but YEZHU_PROCESSES={s.processes}",
                         "several web processes need YEZHU_REDIS_URL (and PostgreSQL)")
        return Check(OK, "redis", "not configured: de-duplication, locks, pub/sub and jobs run in-process "
                     "(one web process, no `yezhu worker`)")
    import redis.asyncio as redis

    where = hide_password(s.redis_url)
    client = redis.from_url(s.redis_url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT)
    try:
        info = await asyncio.wait_for(client.info("server"), CONNECT_TIMEOUT * 2)
    except Exception as exc:
        return Check(FAIL, "redis", f"cannot reach {where}: {reason(exc)}",
                     "is Redis running, and is YEZHU_REDIS_URL right?")
    finally:
        await client.aclose()
    note = "" if not s.is_sqlite else "; the database is SQLite, so only one machine can serve"
    return Check(OK, "redis", f"{where}: reachable (Redis {info.get('redis_version', '?')}){note}")


def wechat_mode(account: WeChatAccount) -> str:
    """The message encryption modes the account accepts, in the WeChat admin's words."""
    if account.aes_key:
        return "compatible or safe mode (兼容模式/安全模式: EncodingAESKey set)"
    return "plaintext mode (明文模式: no EncodingAESKey)"


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_wechat_account(account: WeChatAccount, host: str) -> Check:
    name = "wechat"
    env = account.name == "default"
    field = {"token": "YEZHU_WECHAT_TOKEN", "app_id": "YEZHU_WECHAT_APP_ID", "app_secret": "YEZHU_WECHAT_APP_SECRET",
             "aes_key": "YEZHU_WECHAT_AES_KEY"} if env else {k: k for k in ("token", "app_id", "app_secret", "aes_key")}
    given = {"token": account.token, "app_id": account.app_id,
             "app_secret": account.app_secret.get_secret_value(), "aes_key": account.aes_key or ""}
    if env and not any(given.values()):
        if host not in LOOPBACK:  # anyone can sign with an empty token
            return Check(WARN, "wechat", f"no Official Account configured, yet /wechat/default is served on {host} "
                         "and accepts messages signed with the empty token",
                         "set YEZHU_WECHAT_TOKEN, YEZHU_WECHAT_APP_ID, YEZHU_WECHAT_APP_SECRET, or listen on 127.0.0.1")
        return Check(OK, "wechat", "no Official Account configured (the demo needs none: owners use "
                     "`yezhu chat` and the JSON API)")
    missing = [field[k] for k in ("token", "app_id", "app_secret") if not given[k]]
    if missing:
        return Check(FAIL, name, f"{account.name}: incomplete, {', '.join(missing)} not set",
                     "set all three: the token checks WeChat's signatures; AppID and AppSecret send late "
                     "answers and staff replies (the customer-service API)")
    if account.aes_key:
        from channels.wechat import WeChatAccountConfig, _build_crypto

        try:
            _build_crypto(WeChatAccountConfig(name=account.name, token=account.token, app_id=account.app_id,
                                              app_secret=given["app_secret"], aes_key=account.aes_key))
        except ValueError:
            return Check(FAIL, name, f"{account.name}: {field['aes_key']} is not a valid EncodingAESKey (43 base64 characters)",
                         "copy it again from the WeChat admin (开发 → 基本配置)")
    url = f"/wechat/{account.name}"
    api = "" if account.api_base == WECHAT_API_BASE else f"; WeChat API at {account.api_base}"
    project = f", project {account.project}" if account.project else ""
    return Check(OK, name, f"{account.name}: AppID {account.app_id}{project}: {wechat_mode(account)}; server URL "
                 f"https://<your host>{url}{api}")


def check_wechat(s: Settings) -> list[Check]:
    return [check_wechat_account(account, s.host) for account in s.wechat_accounts.values()]


def check_sms() -> Check:
    """This version sends SMS (binding codes, console replies) with the development sender only."""
    from dotenv import dotenv_values

    provider = os.environ.get("YEZHU_SMS_PROVIDER") or dotenv_values(".env").get("YEZHU_SMS_PROVIDER") or "dev"
    if provider != "dev":
        return Check(FAIL, "sms", f"YEZHU_SMS_PROVIDER={provider}: this version has only the development sender",
                     "unset YEZHU_SMS_PROVIDER")
    return Check(OK, "sms", "development sender: texts are kept in the database (the console shows them), "
                 "none leave this machine")


def check_api_token(s: Settings) -> Check:
    if s.api_token is None:
        return Check(WARN, "api token", "YEZHU_API_TOKEN not set: the JSON API (/api/v1) refuses every request",
                     "set YEZHU_API_TOKEN in the environment or .env (./scripts/start generates one for the demo)")
    if s.api_token_file is not None:
        return Check(OK, "api token", f"the demo's, generated in {shown_path(s.api_token_file)} "
                     "(YEZHU_API_TOKEN overrides it)")
    if len(s.api_token.get_secret_value()) < MIN_API_TOKEN:
        return Check(WARN, "api token", f"YEZHU_API_TOKEN is short (under {MIN_API_TOKEN} characters)",
                     "use a long random one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return Check(OK, "api token", "YEZHU_API_TOKEN set")


def check_browser() -> Check:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return Check(OK, "browser", "none needed to run Yezhu; ./scripts/test adds Playwright and Debian's Chromium "
                     "for the console's browser tests")
    if not CHROMIUM.exists():
        return Check(WARN, "browser", f"{CHROMIUM} missing: only the console's browser tests need it",
                     "scripts/install-browser (as root, with apt-get)")
    return Check(OK, "browser", f"{CHROMIUM} and Playwright for the console's browser tests")


def check_running(s: Settings) -> Check:
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
    url = f"http://{host}:{s.port}"
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
            return Check(OK, "server", f"{url} answers /healthz ({resp.status}); console {url}/console/")
    except urllib.error.HTTPError as exc:
        return Check(FAIL, "server", f"{url}/healthz answers {exc.code}: the database or Redis is down",
                     "see the server's log")
    except (OSError, ValueError):
        return Check(OK, "server", f"nothing answers on {url} (YEZHU_HOST, YEZHU_PORT): not running, or on "
                     "another port")


async def run_checks() -> list[Check]:
    checks = [check_python()]
    settings_check, s = check_settings()
    checks.append(settings_check)
    if s is None:
        return checks
    steps: list[Callable[[], Check | list[Check]]] = [
        lambda: check_wechat(s), check_sms, lambda: check_api_token(s), check_browser, lambda: check_running(s),
    ]
    for coro in (check_database(s), check_redis(s)):
        try:
            result = await coro
        except Exception as exc:  # a check must never end the report
            result = Check(FAIL, "check", reason(exc))
        checks.extend(result if isinstance(result, list) else [result])
    for step in steps:
        try:
            out = step()
        except Exception as exc:
            out = Check(FAIL, "check", reason(exc))
        checks.extend(out if isinstance(out, list) else [out])
    return checks


def report(checks: list[Check]) -> tuple[str, int]:
    """The printed report and the exit status (1 when any check failed)."""
    failed = [c for c in checks if c.status == FAIL]
    warned = [c for c in checks if c.status == WARN]
    lines = [f"Yezhu doctor ({ROOT})"]
    lines += [c.line() for c in checks]
    if failed:
        lines.append(f"{len(failed)} of {len(checks)} checks failed.")
    else:
        lines.append(f"All {len(checks)} checks passed" + (f", {len(warned)} with a warning." if warned else "."))
    return "\n".join(lines), 1 if failed else 0
