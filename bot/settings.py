"""All of Yezhu's settings, in one pydantic-settings class (environment variables and ``.env``).

More WeChat accounts and SMS providers come from an optional YAML config file (``YEZHU_CONFIG``);
the default WeChat account is configured from the environment and served at ``/wechat/default``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.proxies import IPNetwork, parse_networks

ROOT = Path(__file__).resolve().parent.parent
GENERATED_API_TOKEN = "api-token"
"""The file, next to the embedded SQLite database (``var/``), holding the API token ``yezhu demo`` generated."""
WECHAT_API_BASE = "https://api.weixin.qq.com"


class WeChatAccount(BaseModel):
    """One WeChat Official Account (公众号) whose server URL is ``/wechat/{name}``."""

    name: str = "default"
    token: str = ""
    app_id: str = ""
    app_secret: SecretStr = SecretStr("")
    aes_key: str | None = None
    api_base: str = WECHAT_API_BASE
    project: str | None = None
    """The project (楼盘) code this account serves, when it serves only one."""
    mode: Literal["plaintext", "compatible", "safe"] | None = None
    """消息加解密方式 as set in WeChat's back office. Unset: ``safe`` with an ``aes_key`` (encrypted
    messages only), ``plaintext`` without; ``compatible`` accepts both and must be set explicitly."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="YEZHU_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(default=f"sqlite+aiosqlite:///{ROOT / 'var' / 'yezhu.db'}")
    redis_url: str | None = None
    api_token: SecretStr | None = None
    admin_password: SecretStr | None = None
    secret_key: SecretStr | None = None
    config: Path | None = None

    host: str = "127.0.0.1"
    port: int = 8080
    trusted_proxies: str = ""
    """Reverse proxies in front of Yezhu (IP addresses or networks, comma-separated). Only when a request
    comes from one of them is ``proxy_header`` believed for the client's address (bot/proxies.py)."""
    proxy_header: str = "X-Forwarded-For"
    """The header the trusted proxies put the client's address in (``X-Forwarded-For`` or ``X-Real-IP``)."""
    processes: int = Field(default=1, ge=1)
    """Web processes of ``yezhu run`` sharing the port (SO_REUSEPORT); more than one needs Redis and
    PostgreSQL."""
    log_level: str = "INFO"
    log_json: bool = False

    wechat_token: str = ""
    wechat_app_id: str = ""
    wechat_app_secret: SecretStr = SecretStr("")
    wechat_aes_key: str | None = None
    wechat_mode: Literal["plaintext", "compatible", "safe"] | None = None
    """The default account's 消息加解密方式 (unset: safe with an EncodingAESKey, else plaintext)."""
    wechat_api_base: str = WECHAT_API_BASE

    reply_budget: float = 3.0
    """Seconds to wait for the bot's answer before replying ``success`` and sending it later (WeChat: 5 s)."""
    signature_window: int = 300
    """Seconds a signed request's timestamp may differ from our clock."""
    max_body_bytes: int = 64 * 1024
    redis_timeout: float = 0.5
    """Seconds any one Redis call may take before the caller takes its fallback (docs/ARCHITECTURE.md,
    "When something fails"); after a failure calls fail fast for a second, then one tries again."""
    delivery_sweep_after: float = 120.0
    """Seconds after which a reply still ``queued`` or ``sending`` (its hand-off to the job queue failed,
    the queue lost it, or its worker died) is handed to the job queue again by the delivery sweep."""
    webhook_max_inflight: int = 256
    """Webhook requests one process works on at once; beyond that it answers 503 at once (WeChat retries
    after 5 s) instead of queueing requests it could not answer within WeChat's 5 s anyway."""
    turn_recovery_after: float = 60.0
    """Seconds after which a stored inbound message whose turn never finished (its process died) has
    its turn run by the recovery sweep; 0 turns the sweep off."""
    turn_recovery_interval: float = 30.0
    turn_concurrency: int = 16
    """Bot turns one process runs at once; more wait their turn, so a burst of messages cannot starve
    the accept step (which commits each message and answers the webhook) of CPU and connections."""

    nlu_backend: str = "yezhu"
    rasa_url: str | None = None

    job_max_retries: int = 5
    job_retry_base: float = 2.0
    job_queue: str = "yezhu:jobs"
    job_redelivery_seconds: float = 60.0
    """A job left unacknowledged this long (its worker died) is run again by another worker."""

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        parse_networks(value)
        return value

    @cached_property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.trusted_proxies)

    _api_token_file: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _embedded_api_token(self) -> Self:
        """``YEZHU_API_TOKEN`` (environment or ``.env``) when set; otherwise, on the embedded database, the
        token ``yezhu demo`` generated next to it (``var/api-token``), so the demo's API works at once.
        An empty value counts as unset: an empty token must never authorise anything."""
        if self.api_token is not None and not self.api_token.get_secret_value().strip():
            self.api_token = None
        path = self.generated_api_token_path()
        if self.api_token is None and path is not None and path.is_file():
            token = path.read_text(encoding="utf-8").strip()
            if token:
                self.api_token, self._api_token_file = SecretStr(token), path
        return self

    def generated_api_token_path(self) -> Path | None:
        """Where ``yezhu demo`` keeps a generated API token: next to the SQLite file; None on PostgreSQL
        (production sets ``YEZHU_API_TOKEN``)."""
        db = self.sqlite_path()
        return db.parent / GENERATED_API_TOKEN if db is not None else None

    @property
    def api_token_file(self) -> Path | None:
        """The generated token file the API token was read from (None: from ``YEZHU_API_TOKEN`` or unset)."""
        return self._api_token_file

    @cached_property
    def file_config(self) -> dict[str, Any]:
        if not self.config:
            return {}
        data = yaml.safe_load(Path(self.config).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{self.config}: the top level must be a mapping")
        return data

    @cached_property
    def wechat_accounts(self) -> dict[str, WeChatAccount]:
        accounts = {
            "default": WeChatAccount(
                name="default",
                token=self.wechat_token,
                app_id=self.wechat_app_id,
                app_secret=self.wechat_app_secret,
                aes_key=self.wechat_aes_key or None,
                api_base=self.wechat_api_base,
                mode=self.wechat_mode,
            )
        }
        for name, raw in (self.file_config.get("wechat") or {}).items():
            accounts[name] = WeChatAccount(name=name, **raw)
        return accounts

    @property
    def embedded(self) -> bool:
        """True when running on the embedded defaults (no Redis): jobs run in-process."""
        return not self.redis_url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        path = self.database_url.split("///", 1)[-1]
        return Path(path) if path and path != ":memory:" else None


def get_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
