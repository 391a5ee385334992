"""The aiohttp application factory: webhooks, JSON API, health, metrics (and the console, later).

Middleware order (outermost first) and why: ``errors`` must see every failure, including the API
auth middleware's; ``api_auth`` runs before any /api handler touches the database.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from bot import api
from bot.console import setup_console
from bot.metrics import CONTENT_TYPE_LATEST
from bot.runtime import RUNTIME, Runtime
from bot.settings import Settings
from channels.api import ApiChannel
from channels.wechat import WeChatChannel

log = logging.getLogger("yezhu.app")


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal", "detail": "服务暂时不可用，请稍后再试"}, status=500)


HEALTH_BUDGET = 0.8
"""Seconds each health check may take; they run at once, so ``/healthz`` answers within a second."""


async def _check(probe: Any) -> str:
    try:
        async with asyncio.timeout(HEALTH_BUDGET):
            await probe()
    except TimeoutError:
        return f"down: no answer within {HEALTH_BUDGET} s"
    except Exception as exc:
        return f"down: {type(exc).__name__}: {str(exc)[:120]}".rstrip(": ")
    return "ok"


async def healthz(request: web.Request) -> web.Response:
    """Within a second, whatever the backends do: ``database`` and ``redis`` say ``ok`` or why they are
    down. 503 only when the database is down (nothing can be stored); with Redis down the process still
    stores and answers every message (docs/ARCHITECTURE.md), so it reports ``degraded`` with 200 and a
    load balancer keeps sending it traffic."""
    rt: Runtime = request.app[RUNTIME]
    probes = {"database": rt.db.ping}
    if rt.services.redis is not None:
        probes["redis"] = rt.services.ping
    results = dict(zip(probes, await asyncio.gather(*(_check(p) for p in probes.values())), strict=True))
    checks: dict[str, str] = {"database": results["database"]}
    checks["redis"] = results.get("redis", "not configured (in-process)")
    if checks["database"] != "ok":
        status, code = "error", 503
    elif checks["redis"].startswith("down"):
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return web.json_response({"status": status, **checks}, status=code)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[RUNTIME].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None, migrate: bool = False) -> web.Application:
    settings = settings or Settings()
    rt = runtime or Runtime(settings)
    app = web.Application(middlewares=[errors, api.api_auth], client_max_size=settings.max_body_bytes)
    app[RUNTIME] = rt

    wechat = WeChatChannel(
        rt.wechat_accounts,
        rt.engine,
        reply_budget=settings.reply_budget,
        signature_window=settings.signature_window,
        max_body_bytes=settings.max_body_bytes,
        max_inflight=settings.webhook_max_inflight,
        on_rejected=lambda account, reason: rt.metrics.rejected.labels("wechat", reason).inc(),
        nonces=rt.services.cache,  # replay protection shared by every web process
    )
    app.add_routes(wechat.routes())
    if settings.sms_callback_key is not None and settings.sms_callback_key.get_secret_value():
        from bot.jobs.sms import CallbackStore
        from channels.sms.webhook import SmsWebhook

        sms_webhook = SmsWebhook(
            settings.sms_callback_key.get_secret_value(), CallbackStore(rt),
            allowlist=settings.sms_callback_allowlist,
            on_rejected=lambda provider, reason: rt.metrics.rejected.labels("sms", reason).inc(),
        )
        app.add_routes(sms_webhook.routes())
    json_channel = ApiChannel(rt.engine)
    app.router.add_post("/api/v1/messages", json_channel.handle)
    app.add_routes(api.routes)
    from bot import api_actions

    app.add_routes(api_actions.routes)
    from bot import sms_api

    app.add_routes(sms_api.routes)
    setup_console(app, rt)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)

    async def lifecycle(app: web.Application) -> Any:
        await rt.start(migrate=migrate)
        yield
        await rt.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
