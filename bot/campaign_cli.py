"""``yezhu campaign …``: create, preview, approve, schedule, send, pause, resume, cancel, status, list, test.

Every command acts as a staff member (``--as NAME``, default ``admin``), is audited, and fails with one
clear line and a non-zero exit (1: the campaign cannot do that now or the input is wrong; 2: the
configuration or the database is not usable — e.g. not migrated).

``send`` in the embedded mode (no ``YEZHU_REDIS_URL``) delivers from this process with a progress bar;
in production it hands the campaign to the workers (``yezhu worker``) and follows its progress until it
is done, paused or cancelled (Ctrl-C stops following, not sending). ``--local`` delivers from this
process in production too. Sending again after an interruption goes on where it stopped, exactly once
(docs/CAMPAIGNS.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from channels.sms.base import CHINA

app = typer.Typer(help="广播通知 Campaigns: create, preview, approve, send, follow.", no_args_is_help=True)

AsOpt = Annotated[str, typer.Option("--as", help="The staff member acting (audited)")]
IdArg = Annotated[int, typer.Argument(help="The campaign id", show_default=False)]
STATUS_ORDER = ("queued", "sending", "sent", "delivered", "acknowledged", "failed", "skipped")


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"yezhu campaign: {message}", err=True)
    raise typer.Exit(code)


async def _runtime(settings: Any) -> Any:
    """A runtime for the command: no NLU, no scheduler, no recovery sweeps; the schema must be at head."""
    from bot.doctor import describe_database, schema_state
    from bot.runtime import Runtime

    path = settings.sqlite_path()
    if path is not None and not path.parent.exists():  # a fresh checkout: `yezhu migrate` creates it
        fail(f"数据库 {describe_database(settings.database_url)} 尚未创建：请先运行 yezhu migrate", 2)
    try:
        state = await schema_state(settings.database_url)
    except Exception as exc:
        fail(f"无法连接数据库 {describe_database(settings.database_url)}（{type(exc).__name__}）：请检查 "
             "YEZHU_DATABASE_URL", 2)
    if state.current != state.head:
        fail(f"数据库 {describe_database(settings.database_url)} 尚未迁移到最新版本"
             f"（当前 {state.current or '未初始化'}，需要 {state.head}）：请先运行 yezhu migrate", 2)
    rt = Runtime(settings.model_copy(update={"scheduler": False}), nlu=None)
    await rt.jobs.broker.startup()
    return rt


def run(body: Callable[[Any], Awaitable[int | None]]) -> None:
    """Run ``body(rt)`` with one clear line for every failure it can meet."""
    import sqlalchemy.exc
    from redis.exceptions import RedisError

    from actions.campaigns import CampaignError, KindError
    from bot.cli import new_event_loop, settings

    s = settings()

    async def main() -> int | None:
        rt = await _runtime(s)
        try:
            return await body(rt)
        finally:
            await rt.jobs.broker.shutdown()
            await rt.sms_provider.close()
            for sender in rt.senders.values():
                close = getattr(sender, "close", None)
                if close is not None:
                    await close()
            await rt.services.close()
            await rt.db.close()

    loop = new_event_loop()
    try:
        code = loop.run_until_complete(main())
    except (CampaignError, KindError) as exc:
        fail(str(exc))
    except sqlalchemy.exc.DBAPIError as exc:
        fail(f"数据库错误（{type(exc.orig).__name__ if exc.orig else type(exc).__name__}）：请运行 yezhu doctor 检查", 2)
    except KeyboardInterrupt:
        fail("已中断（再次运行同一命令会从中断处继续，不会重复发送）", 130)
    except (RedisError, OSError) as exc:
        fail(f"Redis 或网络不可用（{type(exc).__name__}）：请检查 YEZHU_REDIS_URL，或运行 yezhu doctor", 2)
    except typer.Exit:
        raise
    except Exception as exc:  # never a traceback: one line, the details in the log
        logging.getLogger("yezhu.cli").debug("campaign command failed", exc_info=True)
        fail(f"意外错误（{type(exc).__name__}: {' '.join(str(exc).split())[:200]}）", 1)
    finally:
        loop.close()
    raise typer.Exit(code or 0)


def _params(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--param 需要 名称=值 的形式，收到 {item!r}")
        out[key.strip()] = value.strip()
    return out


def _local(value: Any) -> str:
    """An ISO 8601 time as staff read it: Beijing time, ``2026-12-05 09:00``."""
    import datetime as dt

    try:
        t = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return f"{t.astimezone(CHINA):%Y-%m-%d %H:%M}"


def _print_status(data: dict[str, Any]) -> None:
    counts = data["counts"]
    typer.echo(f"通知 {data['id']}「{data['name']}」 {data['kind']} 状态：{data['status_label']}（{data['status']}）")
    typer.echo("  " + "  ".join(f"{k} {counts.get(k, 0)}" for k in STATUS_ORDER) + f"  共 {data['total']}")
    if data.get("scheduled_at") and data["status"] == "scheduled":
        typer.echo(f"  定时：{_local(data['scheduled_at'])}")


@app.command()
def create(
    kind: Annotated[str, typer.Option("--kind", help="certificate_collection | handover | outage | "
                                      "construction_progress | warranty_expiry | survey | notice")],
    project: Annotated[str, typer.Option("--project", help="Project code or name")],
    buildings: Annotated[str | None, typer.Option("--buildings", help="Building names, e.g. 3,8")] = None,
    units: Annotated[str | None, typer.Option("--units", help="Unit numbers, e.g. 1,2")] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="准业主 | 磨合期 | 稳定期 | 老业主")] = None,
    certificate: Annotated[str | None, typer.Option("--certificate", help="Certificate status, e.g. ready")] = None,
    handover_from: Annotated[str | None, typer.Option("--handover-from", help="YYYY-MM-DD")] = None,
    handover_to: Annotated[str | None, typer.Option("--handover-to", help="YYYY-MM-DD")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Owner tag")] = None,
    list_file: Annotated[Path | None, typer.Option("--list", help="xlsx list: 楼栋 单元 房号, or 手机号")] = None,
    channels: Annotated[str | None, typer.Option("--channels", help="wechat,sms (default: the kind's)")] = None,
    urgent: Annotated[bool, typer.Option("--urgent", help="A sudden outage: both channels, any hour")] = False,
    at: Annotated[str | None, typer.Option("--at", help="Send at, e.g. 2026-12-03T09:00 (Beijing time)")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="key=value (repeat)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name for the list")] = None,
    as_: AsOpt = "admin",
    as_json: Annotated[bool, typer.Option("--json", help="Print the preview as JSON")] = False,
) -> None:
    """Draft a campaign and print its id and preview (recipients per channel, exclusions, SMS cost, samples)."""
    given = _params(param or [])
    audience: dict[str, Any] = {"units": units, "stage": stage, "certificate": certificate,
                                "handover_from": handover_from, "handover_to": handover_to, "tag": tag}

    async def body(rt: Any) -> int:
        from actions import campaigns
        from actions.campaigns.audience import project_by_code

        if list_file is not None:
            async with rt.db.session() as s:
                proj = await project_by_code(s, project)
                listed = await campaigns.read_list(s, proj.id, list_file)
            for e in listed.errors[:20]:
                typer.echo(f"名单第 {e.row} 行 {e.value!r}：{e.reason}", err=True)
            if listed.errors:
                fail(f"名单有 {len(listed.errors)} 行无法识别（见上），请改正后再导入；没有创建通知")
            audience.update(houses=listed.houses or None, owners=listed.owners or None)
        created = await campaigns.create(
            rt, kind=kind, project=project, actor=as_, buildings=buildings,
            audience={k: v for k, v in audience.items() if v is not None},
            channels=[c.strip() for c in channels.split(",") if c.strip()] if channels else None,
            urgent=urgent, at=at, params=given, name=name)
        c, p = created.campaign, created.preview
        if as_json:
            typer.echo(json.dumps({"id": c.id, "status": c.status, "preview": p.as_dict()}, ensure_ascii=False))
            return 0
        from actions.labels import CAMPAIGN_STATUS_LABELS

        typer.echo(f"已创建通知 {c.id}：{CAMPAIGN_STATUS_LABELS.get(c.status, c.status)}（{c.status}）")
        for line in p.lines():
            typer.echo(line)
        return 0

    run(body)


@app.command()
def preview(campaign_id: IdArg, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The campaign's preview as of now."""

    async def body(rt: Any) -> int:
        from actions import campaigns

        p = await campaigns.get_preview(rt, campaign_id)
        if as_json:
            typer.echo(json.dumps(p.as_dict(), ensure_ascii=False))
        else:
            for line in p.lines():
                typer.echo(line)
        return 0

    run(body)


@app.command()
def approve(campaign_id: IdArg, as_: AsOpt = "admin") -> None:
    """Approve a campaign waiting for a supervisor (supervisor or admin only)."""

    async def body(rt: Any) -> int:
        from actions import campaigns

        c = await campaigns.approve(rt, campaign_id, as_)
        typer.echo(f"通知 {c.id} 已审批（{c.status}）")
        return 0

    run(body)


@app.command()
def schedule(campaign_id: IdArg, at: Annotated[str, typer.Option("--at", help="e.g. 2026-12-03T09:00")],
             as_: AsOpt = "admin") -> None:
    """Send the campaign at a time (the scheduler of `yezhu run` / `yezhu worker` starts it)."""

    async def body(rt: Any) -> int:
        from actions import campaigns

        c = await campaigns.schedule(rt, campaign_id, at, as_)
        when = c.scheduled_at.astimezone(CHINA) if c.scheduled_at is not None else None
        typer.echo(f"通知 {c.id} 将于 {when:%Y-%m-%d %H:%M} 发送")
        return 0

    run(body)


@app.command()
def send(
    campaign_id: IdArg, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    local: Annotated[bool, typer.Option("--local", help="Deliver from this process even with workers")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False, as_: AsOpt = "admin",
) -> None:
    """Send now (or go on after an interruption), with a progress bar; never prompts without a terminal."""

    async def body(rt: Any) -> int:
        from tqdm import tqdm

        from actions import campaigns
        from actions.campaigns.dispatch import counts

        data = await campaigns.status(rt, campaign_id)
        if data["status"] == "done":
            _print_status(data)
            return 0
        if not yes and sys.stdin.isatty() and data["status"] not in ("sending",):
            p = await campaigns.get_preview(rt, campaign_id)
            for line in p.lines():
                typer.echo(line)
            if not typer.confirm("确认发送？"):
                typer.echo("未发送")
                return 1
        bar: Any = None  # made at the first progress report: a refusal (not approved, cancelled) is one line

        def show(c: dict[str, int]) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(desc=f"通知 {campaign_id}", unit="条", file=sys.stderr, dynamic_ncols=True, disable=quiet)
            bar.total = sum(c.values())
            bar.n = bar.total - c["queued"] - c["sending"]
            bar.set_postfix_str(f"已发 {c['sent'] + c['delivered'] + c['acknowledged']} 送达 {c['delivered']} "
                                f"失败 {c['failed']} 跳过 {c['skipped']}", refresh=False)
            bar.refresh()

        try:
            outcome = await campaigns.send(rt, campaign_id, as_, progress=show, local=True if local else None)
            if outcome in ("queued", "busy"):  # the workers (or another live process) send: follow it
                while True:
                    show(await counts(rt, campaign_id))
                    state = (await campaigns.status(rt, campaign_id))["status"]
                    if state in ("done", "paused", "cancelled"):
                        break
                    await asyncio.sleep(0.5)
            show(await counts(rt, campaign_id))
        finally:
            if bar is not None:
                bar.close()
        data = await campaigns.status(rt, campaign_id)
        _print_status(data)
        if data["status"] == "sending":
            typer.echo("部分短信等待发送时段或当日上限，系统会在时间到后自动继续发送")
        return 0

    run(body)


def _verb(name: str, label: str) -> Callable[..., None]:
    def command(campaign_id: IdArg, as_: AsOpt = "admin") -> None:
        async def body(rt: Any) -> int:
            from actions import campaigns

            result = await getattr(campaigns, name)(rt, campaign_id, as_)
            state = result if isinstance(result, str) else result.status
            typer.echo(f"通知 {campaign_id} 已{label}（{state}）")
            return 0

        run(body)

    command.__doc__ = f"{label.capitalize()} the campaign (audited)."
    return command


app.command("pause", help="Pause sending after the batch in flight (audited).")(_verb("pause", "暂停"))
app.command("cancel", help="Cancel: nothing more is sent; queued deliveries are skipped (audited).")(
    _verb("cancel", "取消"))


@app.command()
def resume(campaign_id: IdArg, as_: AsOpt = "admin",
           quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False) -> None:
    """Resume a paused campaign where it stopped."""

    async def body(rt: Any) -> int:
        from actions import campaigns

        outcome = await campaigns.resume(rt, campaign_id, as_)
        typer.echo(f"通知 {campaign_id} 已恢复（{outcome}）")
        _print_status(await campaigns.status(rt, campaign_id))
        return 0

    run(body)


@app.command()
def status(campaign_id: IdArg, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The campaign's status and its deliveries by status."""

    async def body(rt: Any) -> int:
        from actions import campaigns

        data = await campaigns.status(rt, campaign_id)
        if as_json:
            typer.echo(json.dumps(data, ensure_ascii=False))
        else:
            _print_status(data)
        return 0

    run(body)


@app.command("list")
def list_(status: Annotated[str | None, typer.Option("--status")] = None) -> None:
    """Recent campaigns."""

    async def body(rt: Any) -> int:
        from actions import campaigns
        from actions.labels import CAMPAIGN_STATUS_LABELS

        if status is not None and status not in CAMPAIGN_STATUS_LABELS:
            fail(f"未知的状态 {status!r}（可选：{', '.join(CAMPAIGN_STATUS_LABELS)}）")
        rows = await campaigns.list_campaigns(rt, status=status)
        for c in rows:
            typer.echo(f"{c['id']:>6}  {c['status']:<16} {c['kind']:<22} {c['name']}")
        if not rows:
            typer.echo("暂无通知" + ("" if status else "（新建：yezhu campaign create --kind K --project P）"))
        return 0

    run(body)


@app.command()
def test(campaign_id: IdArg, phone: Annotated[str | None, typer.Option("--phone")] = None,
         openid: Annotated[str | None, typer.Option("--openid")] = None, as_: AsOpt = "admin") -> None:
    """Send the sample to your own phone (default: your staff phone) and/or WeChat openid."""

    async def body(rt: Any) -> int:
        from actions import campaigns

        out = await campaigns.test_send(rt, campaign_id, as_, phone=phone, openid=openid)
        for channel, result in out.items():
            typer.echo(f"测试{'微信' if channel == 'wechat' else '短信'}：{result}")
        return 0 if all(v == "sent" for v in out.values()) else 1

    run(body)
