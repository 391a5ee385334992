"""The supervisors' dashboard (看板): today's conversations, who is waiting and for how long, open and
overdue tickets by kind — with small charts drawn as inline SVG on the server (no script, no CDN)."""

from __future__ import annotations

import datetime as dt
from html import escape

import sqlalchemy as sa
from aiohttp import web
from markupsafe import Markup

from actions.workflow import CHINA, CLOSED, DESK_TURN, KIND_LABELS
from bot.console.core import render, route, runtime_of, staff_of
from bot.console.queue import load_queue
from bot.store.models import Conversation, ConversationEvent, Message, Ticket, utcnow


def start_of_today(now: dt.datetime) -> dt.datetime:
    local = now.astimezone(CHINA)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)


def bar_chart(groups: list[tuple[str, list[int]]], series: list[tuple[str, str]], *, width: int = 520,
              height: int = 220, title: str = "") -> Markup:
    """Grouped bars: ``groups`` = [(label, [value per series])], ``series`` = [(name, css class)]."""
    top = max([v for _, values in groups for v in values] + [4])
    top = -(-top // 4) * 4  # a multiple of 4: every grid line gets a whole number
    pad_l, pad_b, pad_t = 36, 28, 24
    inner_w, inner_h = width - pad_l - 10, height - pad_b - pad_t
    group_w = inner_w / max(1, len(groups))
    bar_w = min(28.0, (group_w - 12) / max(1, len(series)))
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        y = pad_t + inner_h - inner_h * i / 4
        parts.append(f'<line class="grid" x1="{pad_l}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{pad_l - 6}" y="{y + 4:.1f}" text-anchor="end">{round(top * i / 4)}</text>')
    for gi, (label, values) in enumerate(groups):
        x0 = pad_l + gi * group_w + (group_w - bar_w * len(values)) / 2
        for si, value in enumerate(values):
            h = inner_h * value / top
            x, y = x0 + si * bar_w, pad_t + inner_h - h
            parts.append(f'<rect class="{series[si][1]}" x="{x:.1f}" y="{y:.1f}" width="{bar_w - 3:.1f}" '
                         f'height="{h:.1f}"><title>{escape(label)} {escape(series[si][0])}: {value}</title></rect>')
            if value:
                parts.append(f'<text class="val" x="{x + (bar_w - 3) / 2:.1f}" y="{y - 4:.1f}" '
                             f'text-anchor="middle">{value}</text>')
        parts.append(f'<text class="axis" x="{pad_l + gi * group_w + group_w / 2:.1f}" y="{height - 8}" '
                     f'text-anchor="middle">{escape(label)}</text>')
    for si, (name, css) in enumerate(series):
        parts.append(f'<rect class="{css}" x="{pad_l + si * 90}" y="4" width="12" height="12"/>'
                     f'<text class="axis" x="{pad_l + si * 90 + 16}" y="14">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


@route("GET", "/dashboard", "dashboard")
async def dashboard(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    now = utcnow()
    today = start_of_today(now)
    async with runtime_of(request).db.session() as s:
        conv_today = int((await s.execute(
            sa.select(sa.func.count()).select_from(Conversation).where(Conversation.created_at >= today))).scalar_one())
        msgs_today = (await s.execute(
            sa.select(Message.at).where(Message.at >= today, Message.direction == "in"))).scalars().all()
        handed_today = int((await s.execute(
            sa.select(sa.func.count()).select_from(ConversationEvent)
            .where(ConversationEvent.kind == "hand_over", ConversationEvent.at >= today))).scalar_one())
        queue = await load_queue(s, staff, now)
        open_rows = (await s.execute(
            sa.select(Ticket.kind, sa.func.count()).where(Ticket.status != CLOSED).group_by(Ticket.kind))).all()
        overdue_rows = (await s.execute(
            sa.select(Ticket.kind, sa.func.count())
            .where(Ticket.status.in_(DESK_TURN), Ticket.due_at.is_not(None), Ticket.due_at < now)
            .group_by(Ticket.kind))).all()
        closed_today = int((await s.execute(
            sa.select(sa.func.count()).select_from(Ticket).where(Ticket.closed_at >= today))).scalar_one())
        reworks = int((await s.execute(
            sa.select(sa.func.coalesce(sa.func.sum(Ticket.rework_count), 0)).where(Ticket.status != CLOSED)
        )).scalar_one())
    open_by = dict(open_rows)
    overdue_by = dict(overdue_rows)
    kinds = list(KIND_LABELS)
    ticket_chart = bar_chart([(KIND_LABELS[k], [int(open_by.get(k, 0)), int(overdue_by.get(k, 0))]) for k in kinds],
                             [("未关闭", "s-open"), ("已超时", "s-overdue")], title="工单：未关闭与超时")
    hours = [0] * 24
    for at in msgs_today:
        hours[at.astimezone(CHINA).hour] += 1
    hour_chart = bar_chart([(f"{h}" if h % 3 == 0 else "", [hours[h]]) for h in range(24)],
                           [("业主消息", "s-msg")], title="今日每小时业主消息")
    waits = [i["waited"] for i in queue["waiting"]]
    return render(
        request, "dashboard.html", title="看板", page="dashboard", conv_today=conv_today,
        msgs_today=len(msgs_today), handed_today=handed_today, queue=queue,
        longest=max(waits) if waits else 0, average=sum(waits) / len(waits) if waits else 0,
        kinds=kinds, open_by=open_by, overdue_by=overdue_by, open_total=sum(open_by.values()),
        overdue_total=sum(overdue_by.values()), closed_today=closed_today, reworks=reworks,
        ticket_chart=ticket_chart, hour_chart=hour_chart, staffing=len(queue["mine"]) + len(queue["others"]),
    )


def minutes(seconds: float) -> str:
    m = int(seconds // 60)
    return f"{m // 60}小时{m % 60}分" if m >= 60 else f"{m}分钟"
