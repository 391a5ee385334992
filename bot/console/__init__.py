"""The staff console under ``/console/`` (Simplified Chinese): queue, chats, tickets, owners, knowledge
base, dashboard, staff administration and the audit log.

``setup_console(app, runtime)`` adds the routes, the console middleware (sessions, CSRF, security
headers), the static files and the live-event hub. Server-rendered HTML (Jinja2, autoescaped) with a
small vanilla script for live updates over server-sent events; no CDN, nothing fetched at run time.
See docs/CONSOLE.md.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.console import (  # noqa: F401 (routes)
    admin,
    auth,
    campaign_wizard,
    campaigns,
    cases,
    certificates,
    chat,
    dashboard,
    imports,
    intake,
    knowledge,
    live,
    owners,
    queue,
    repairs,
    reports,
    search,
    surveys,
    tickets,
)
from bot.console.core import (
    CONSOLE,
    PREFIX,
    STATIC_DIR,
    Console,
    SessionStore,
    asset_version,
    console_middleware,
    make_templates,
    route,
)

__all__ = ["CONSOLE", "Console", "setup_console"]


def setup_console(app: web.Application, runtime: Any) -> Console:
    console = Console(
        runtime=runtime,
        sessions=SessionStore(runtime.services.cache),
        templates=make_templates(),
        hub=live.EventHub(runtime),
        asset_version=asset_version(),
    )
    console.hub.overdue = console.overdue
    app[CONSOLE] = console
    app.middlewares.append(console_middleware)
    auth.register_public(app)
    app.router.add_static(f"{PREFIX}/static/", STATIC_DIR, name="console-static", append_version=False)
    route.register(app)

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{PREFIX}/")

    app.router.add_get(PREFIX, redirect)

    async def start_hub(app: web.Application) -> None:
        await console.hub.start()

    async def stop_hub(app: web.Application) -> None:
        await console.hub.stop()

    app.on_startup.append(start_hub)
    app.on_shutdown.append(stop_hub)
    return console
