"""One process's wiring: settings, database, shared services, NLU, engine, channels and jobs.

Built once per process (``yezhu run`` and ``yezhu worker`` alike) and torn down in reverse order.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from actions.binding import DevSmsSender
from actions.knowledge import KnowledgeService
from actions.policy import DialoguePolicy
from bot.engine import Engine
from bot.jobs import Jobs
from bot.metrics import Metrics
from bot.policy import Policy
from bot.services import Services, memory_services, redis_services
from bot.settings import Settings
from bot.store.db import Database
from channels.base import OutputChannel
from channels.wechat import WeChatAccountConfig
from channels.wechat_api import WeChatSender
from nlu.pipeline import Interpreter, load_interpreter

log = logging.getLogger("yezhu.runtime")


def wechat_accounts(settings: Settings) -> dict[str, WeChatAccountConfig]:
    return {
        name: WeChatAccountConfig(
            name=name,
            token=a.token,
            app_id=a.app_id,
            app_secret=a.app_secret.get_secret_value(),
            aes_key=a.aes_key,
            api_base=a.api_base,
            mode=a.mode,
        )
        for name, a in settings.wechat_accounts.items()
    }


def load_nlu(settings: Settings) -> Interpreter:
    """The interpreter (``nlu.load_interpreter``); an import error is a bug and stops the process."""
    return load_interpreter(backend=settings.nlu_backend, rasa_url=settings.rasa_url)


def default_policy(runtime: Runtime) -> Policy:
    return DialoguePolicy(runtime)


class Runtime:
    def __init__(self, settings: Settings, *, policy: Policy | None = None, nlu: Any = ...) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.db = Database(settings.database_url)
        self.services: Services = (
            redis_services(
                settings.redis_url,
                timeout=settings.redis_timeout,
                on_failure=lambda op: self.metrics.redis_failures.labels(op).inc(),
            )
            if settings.redis_url
            else memory_services()
        )
        self.nlu = load_nlu(settings) if nlu is ... else nlu
        self.wechat_accounts = wechat_accounts(settings)
        self.senders: dict[str, OutputChannel] = {
            "wechat": WeChatSender(self.wechat_accounts, self.services.cache),
        }
        self.jobs = Jobs(self)
        self.knowledge = KnowledgeService(self.db)
        self.sms = DevSmsSender()
        self.engine = Engine(self, policy or default_policy(self))

    async def start(self, *, migrate: bool = False) -> None:
        if migrate:
            await self.db.migrate()
        await self.jobs.startup()
        await self.knowledge.reload()
        self.engine.start_recovery()

    async def stop(self) -> None:
        await self.engine.stop_recovery()
        await self.engine.drain()
        await self.jobs.shutdown()
        for sender in self.senders.values():
            close = getattr(sender, "close", None)
            if close is not None:
                await close()
        await self.services.close()
        await self.db.close()


RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
"""Where the aiohttp app keeps this process's runtime: ``request.app[RUNTIME]``."""
