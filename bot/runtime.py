"""One process's wiring: settings, database, shared services, NLU, engine, channels and jobs.

Built once per process (``yezhu run`` and ``yezhu worker`` alike) and torn down in reverse order.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from actions import surveys  # noqa: F401 (registers its in-transaction event listeners: callbacks on close)
from actions.knowledge import KnowledgeService
from actions.notify import Notifier
from actions.policy import DialoguePolicy
from bot.engine import Engine
from bot.jobs import Jobs
from bot.metrics import Metrics
from bot.policy import Policy
from bot.services import Services, memory_services, redis_services
from bot.settings import Settings
from bot.store.db import Database
from channels.base import PULL, SMS, WECHAT, ChannelRegistry, OutputChannel
from channels.sms.base import SmsProvider
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


def make_sms_provider(settings: Settings) -> SmsProvider:
    """The configured SMS provider (``YEZHU_SMS_PROVIDER``)."""
    if settings.sms_provider == "aliyun":
        from channels.sms.aliyun import AliyunSmsProvider

        return AliyunSmsProvider(settings.aliyun_access_key_id, settings.aliyun_access_key_secret.get_secret_value(),
                                 endpoint=settings.sms_endpoint, timeout=settings.sms_timeout)
    if settings.sms_provider == "tencent":
        from channels.sms.tencent import TencentSmsProvider

        return TencentSmsProvider(settings.tencent_secret_id, settings.tencent_secret_key.get_secret_value(),
                                  settings.tencent_sms_app_id, region=settings.tencent_region,
                                  endpoint=settings.sms_endpoint, timeout=settings.sms_timeout)
    from channels.sms.dev import DevSmsProvider

    return DevSmsProvider()


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
        # Output channels by capability (reply window, length, templates only), not by name checks.
        self.channels = ChannelRegistry()
        self.channels.register("wechat", WECHAT, WeChatSender(self.wechat_accounts, self.services.cache,
                                                             backoff_base=settings.wechat_retry_base))
        self.channels.register("sms", SMS)  # sent through the notifier's outbox (templates only)
        self.channels.register("api", PULL)
        self.channels.register("terminal", PULL)
        self.senders: dict[str, OutputChannel] = self.channels.senders
        self.sms_provider: SmsProvider = make_sms_provider(settings)
        self.jobs = Jobs(self)
        self.knowledge = KnowledgeService(self.db)
        self.notifier = Notifier(self)
        self.engine = Engine(self, policy or default_policy(self))

    async def start(self, *, migrate: bool = False) -> None:
        if migrate:
            await self.db.migrate()
        await self.jobs.startup()
        await self.db.warm()
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
        await self.sms_provider.close()
        await self.services.close()
        await self.db.close()


RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
"""Where the aiohttp app keeps this process's runtime: ``request.app[RUNTIME]``."""
