"""The ``yezhu`` command line (DESIGN.md "Contracts"): run, worker, migrate, doctor, demo, chat, nlu, kb, staff."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from bot import logs
from bot.settings import Settings

# No locals in a traceback that escapes anyway: they would print settings and owners' data.
app = typer.Typer(help="Yezhu (业主): customer-service bot for property companies.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
log = logging.getLogger("yezhu.cli")


def settings() -> Settings:
    """The settings, or one clear line and exit 2 for a value that cannot work (never a traceback)."""
    from pydantic import ValidationError

    from channels.wechat import WeChatAccountConfig, check_account

    try:
        s = Settings()
        for name, a in s.wechat_accounts.items():  # mode and EncodingAESKey must agree
            check_account(WeChatAccountConfig(name=name, token=a.token, app_id=a.app_id, app_secret="",
                                              aes_key=a.aes_key, mode=a.mode))
        s.sms_templates  # noqa: B018 -- the YAML's SMS catalogue is checked at start, not at the first send
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        setting = f"YEZHU_{where.upper()}: " if where else ""
        typer.echo(f"yezhu: invalid configuration: {setting}{message}", err=True)
        raise typer.Exit(2) from None
    except (ValueError, OSError, yaml.YAMLError) as exc:
        typer.echo(f"yezhu: invalid configuration: {config_error(exc)}", err=True)
        raise typer.Exit(2) from None
    logs.configure(s.log_level, s.log_json)
    return s


def config_error(exc: Exception) -> str:
    """One line for a configuration error (pydantic lists every field on lines of its own)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        return f"{where}: {first.get('msg', exc)}"
    return " ".join(str(exc).split())


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop (libuv: about half the CPU per socket operation of asyncio's selector loop,
    measured in docs/PERFORMANCE.md); asyncio's own where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@app.command()
def run(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    processes: Annotated[
        int | None,
        typer.Option(help="Web processes sharing the port, one per core (needs Redis and PostgreSQL)", min=1),
    ] = None,
) -> None:
    """Serve webhooks, the console and the API (embedded mode: also runs jobs in-process)."""
    s = settings()
    host, port, processes = host or s.host, port or s.port, processes or s.processes
    if processes == 1:
        serve(host, port)
        return
    if not s.redis_url or s.is_sqlite:
        typer.echo(
            "Several web processes need YEZHU_REDIS_URL and a PostgreSQL YEZHU_DATABASE_URL: the embedded "
            "de-duplication, locks and SQLite file cannot be shared between processes.",
            err=True,
        )
        raise typer.Exit(2)
    raise typer.Exit(supervise(processes, host, port))


def serve(host: str, port: int, reuse_port: bool = False) -> None:
    """One web process (``reuse_port``: one of several sharing the port; the kernel spreads connections)."""
    from aiohttp import web

    from bot.app import create_app

    s = settings()
    app = create_app(s, migrate=s.is_sqlite)
    app.on_startup.append(freeze_startup_objects)  # after the runtime started (cleanup_ctx runs first)
    web.run_app(
        app,
        loop=new_event_loop(),
        host=host,
        port=port,
        reuse_port=reuse_port,
        access_log=None,
        print=lambda text: log.info("listening on http://%s:%s", host, port),
    )


async def freeze_startup_objects(_app: Any = None) -> None:
    """Move everything loaded at start-up (the NLU model, jieba's dictionary, the knowledge index,
    SQLAlchemy's mappers: about 150,000 objects) out of the garbage collector's sight. Without this,
    each full collection walks them all: about 0.1 s of CPU, one latency spike, every few hundred
    messages (docs/PERFORMANCE.md)."""
    gc.collect()
    gc.freeze()


RESTARTS_ALLOWED = 5
"""A web process that dies is restarted, unless this many died within ``RESTART_WINDOW`` seconds."""
RESTART_WINDOW = 60.0


def supervise(count: int, host: str, port: int) -> int:
    """Run ``count`` web processes on one port (SO_REUSEPORT) until SIGTERM/SIGINT; restart any that
    dies; on the signal, stop them gracefully (each finishes its requests and in-flight turns)."""
    import multiprocessing
    import time
    from collections import deque

    ctx = multiprocessing.get_context("spawn")
    children: list[Any] = []
    deaths: deque[float] = deque()
    stopping = False

    def start(slot: int) -> None:
        child = ctx.Process(target=serve, args=(host, port, True), name=f"yezhu-web-{slot}", daemon=False)
        child.start()
        if slot < len(children):
            children[slot] = child
        else:
            children.append(child)

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(count):
        start(slot)
    log.info("serving on http://%s:%s with %d web processes", host, port, count)
    status = 0
    while not stopping:
        time.sleep(0.2)
        for slot, child in enumerate(children):
            if child.is_alive() or stopping:
                continue
            now = time.monotonic()
            deaths.append(now)
            while deaths and now - deaths[0] > RESTART_WINDOW:
                deaths.popleft()
            if len(deaths) > RESTARTS_ALLOWED:
                log.error("web processes keep dying (%d in %.0f s): stopping", len(deaths), RESTART_WINDOW)
                stopping, status = True, 1
                break
            log.error("web process %s exited with status %s: starting another", child.pid, child.exitcode)
            start(slot)
    for child in children:
        if child.is_alive():
            child.terminate()  # SIGTERM: aiohttp's graceful shutdown
    for child in children:
        child.join(timeout=30)
        if child.is_alive():
            log.error("web process %s did not stop within 30 s: killing it", child.pid)
            child.kill()
            child.join()
    return status


@app.command()
def worker() -> None:
    """A job-queue worker (production, with YEZHU_REDIS_URL): runs jobs until stopped."""
    s = settings()
    if not s.redis_url:
        typer.echo("yezhu worker needs YEZHU_REDIS_URL; the embedded mode runs jobs inside `yezhu run`.", err=True)
        raise typer.Exit(2)
    loop = new_event_loop()
    try:
        loop.run_until_complete(_worker(s))
    finally:
        loop.close()


async def _worker(s: Settings) -> None:
    from taskiq.api import run_receiver_task

    from bot.runtime import Runtime

    rt = Runtime(s)
    rt.jobs.broker.is_worker_process = True
    await rt.start()
    await freeze_startup_objects()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    receiver = asyncio.create_task(run_receiver_task(rt.jobs.broker, max_async_tasks=50))
    log.info("worker started on queue %s", s.job_queue)
    await stop.wait()
    receiver.cancel()
    await rt.stop()


@app.command()
def migrate() -> None:
    """Bring the database schema to head (Alembic) and say what it did."""
    s = settings()
    raise typer.Exit(_migrate(s.database_url))


def _migrate(url: str) -> int:
    from bot.doctor import describe_database, reason, schema_state
    from bot.store.db import ensure_sqlite_dir, upgrade

    where = describe_database(url)
    try:
        ensure_sqlite_dir(url)
        before = asyncio.run(schema_state(url))
    except Exception as exc:
        typer.echo(f"无法连接数据库 (cannot connect to {where}): {reason(exc)}", err=True)
        return 1
    if not before.known:
        typer.echo(f"数据库结构版本 {before.current} 比本程序新 (the schema of {where} is at {before.current}, "
                   f"newer than this Yezhu's head {before.head}): upgrade Yezhu", err=True)
        return 1
    if before.current is None and before.tables:
        typer.echo(f"数据库已有 {before.tables} 张表但没有结构版本 ({where} has tables but no schema revision: "
                   "it was not built by `yezhu migrate`; point YEZHU_DATABASE_URL at Yezhu's own database)",
                   err=True)
        return 1
    if before.current == before.head:
        typer.echo(f"数据库结构已是最新 (already at head {before.head}): {where}")
        return 0
    try:
        upgrade(url)
    except Exception as exc:
        typer.echo(f"迁移失败 (migration of {where} failed): {reason(exc)}", err=True)
        return 1
    if before.current is None:
        typer.echo(f"数据库已创建 (created the schema at head {before.head}): {where}")
    else:
        typer.echo(f"数据库已升级 (upgraded from {before.current} to {before.head}): {where}")
    return 0


@app.command()
def doctor() -> None:
    """Check the set-up (Python, settings, database, Redis, WeChat, SMS, API token, browser): one line
    per check with a fix; exit status 1 when a check failed."""
    from bot.doctor import report, run_checks

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the report is the output; drivers' warnings would interleave
    try:
        text, status = report(asyncio.run(run_checks()))
    finally:
        logging.disable(previous)
    typer.echo(text)
    raise typer.Exit(status)


@app.command()
def demo() -> None:
    """Load the demo data set into the database (idempotent)."""
    asyncio.run(_demo(settings()))


async def _demo(s: Settings) -> None:
    from bot.demo import ensure_api_token, load_demo, save_staff_passwords
    from bot.doctor import shown_path
    from bot.store.db import Database

    db = Database(s.database_url)
    try:
        await db.migrate()
        pw = s.admin_password.get_secret_value() if s.admin_password else None
        report = await load_demo(db, admin_password=pw)
    finally:
        await db.close()
    if report.created:
        typer.echo(f"示范花园 loaded: {report.houses} houses, {report.owners} owners.")
    else:
        typer.echo("Demo data already present; nothing changed.")
    kept = save_staff_passwords(s, report.passwords)
    for user, password in report.passwords.items():
        where = f"kept in {shown_path(kept)}" if kept else "shown once"
        typer.echo(f"staff {user}: password {password}   ({where}; change it with `yezhu staff passwd`)")
    token = ensure_api_token(s)
    if token is not None and s.api_token is None:
        typer.echo(f"API token generated in {shown_path(token)} (YEZHU_API_TOKEN overrides it)")


@app.command()
def chat(
    openid: Annotated[str | None, typer.Option(help="Speak as this WeChat openid (e.g. oDEMO0001)")] = None,
    phone: Annotated[str | None, typer.Option(help="Speak as this phone number over SMS")] = None,
    account: Annotated[str, typer.Option(help="Channel account")] = "default",
    replay: Annotated[
        Path | None, typer.Option(help="Replay a story file or folder (docs/STORIES.md) and check every expectation")
    ] = None,
    story: Annotated[str | None, typer.Option(help="With --replay: only the story with this name")] = None,
) -> None:
    """Talk to the bot in the terminal as an owner, or replay conversation stories."""
    s = settings()
    logging.getLogger().setLevel(logging.WARNING)
    if replay is not None:
        from bot.stories import StoryError
        from bot.story_run import replay as replay_stories

        try:
            raise typer.Exit(asyncio.run(replay_stories(s, replay, name=story)))
        except StoryError as exc:
            typer.echo(f"Cannot replay {replay}: {exc}", err=True)
            raise typer.Exit(2) from None
    asyncio.run(_chat(s, openid, phone, account))


async def _chat(s: Settings, openid: str | None, phone: str | None, account: str) -> None:
    from bot.runtime import Runtime
    from channels.terminal import TerminalChannel

    if openid and phone:
        raise typer.BadParameter("give --openid or --phone, not both")
    channel, sender = ("sms", phone) if phone else ("wechat", openid or "oTERMINAL")
    rt = Runtime(s)
    await rt.start(migrate=s.is_sqlite)
    echo = asyncio.ensure_future(_echo_proactive(rt, channel, account, sender))
    try:
        await TerminalChannel(rt.engine, channel=channel, account=account, sender=sender).repl()
    finally:
        echo.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await echo
        await rt.stop()


async def _echo_proactive(rt: Any, channel: str, account: str, sender: str, interval: float = 1.0) -> None:
    """Print what staff (or a ticket notice) sent this terminal owner from another process, e.g. a reply
    typed in the console: proactive messages are stored for the owner's conversation, and a terminal has
    no push channel, so it looks for them every ``interval`` seconds. Turn replies (``delivery="reply"``)
    are printed by the REPL itself."""
    import sqlalchemy as sa

    from bot.console.view import actor
    from bot.store.models import Conversation, Identity, Message, StaffUser

    query = (sa.select(Message.id, Message.text, Message.author)
             .join(Conversation, Conversation.id == Message.conversation_id)
             .join(Identity, Identity.id == Conversation.identity_id)
             .where(Identity.channel == channel, Identity.account == account, Identity.external_id == sender,
                    Message.direction == "out", Message.delivery != "reply"))
    async with rt.db.session() as s:
        last = (await s.execute(sa.select(sa.func.max(Message.id)))).scalar() or 0
    while True:
        await asyncio.sleep(interval)
        try:
            async with rt.db.session() as s:
                rows = (await s.execute(query.where(Message.id > last).order_by(Message.id))).all()
                names = dict((await s.execute(sa.select(StaffUser.username, StaffUser.display_name))).all()) \
                    if rows else {}
        except Exception:  # the database is busy or gone for a moment: try again next time
            logging.getLogger("yezhu.chat").debug("could not read new messages", exc_info=True)
            continue
        for message_id, text, author in rows:
            last = max(last, message_id)
            who = "客服" if (author or "bot") == "bot" else actor(author, names)
            print(f"\n{who}> " + (text or "").replace("\n", "\n      "), flush=True)


def _mount(name: str, module: str, help_text: str, attr: str = "app") -> None:
    sub: Any = getattr(__import__(module, fromlist=[attr]), attr)
    app.add_typer(sub, name=name, help=help_text)


_mount("nlu", "nlu.cli", "Train, run and evaluate the NLU model.")
_mount("kb", "bot.kb_cli", "The knowledge base: import, export, ask.")
_mount("staff", "bot.staff_cli", "Staff accounts.")
_mount("report", "bot.report_cli", "Reports: the monthly report (客服月报) as xlsx or pdf.")
_mount("owners", "bot.import_cli", "业主花名册: import the owner roster (xlsx/csv).", attr="owners_app")
_mount("certificates", "bot.import_cli", "办证台账: import certificate records (xlsx/csv).", attr="certificates_app")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
