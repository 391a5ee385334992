"""All of Yezhu's settings, in one pydantic-settings class (environment variables and ``.env``).

More WeChat accounts and SMS providers come from an optional YAML config file (``YEZHU_CONFIG``);
the default WeChat account is configured from the environment and served at ``/wechat/default``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
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

    @property
    def mode(self) -> str:
        return "safe" if self.aes_key else "plaintext"


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
    processes: int = Field(default=1, ge=1)
    """Web processes of ``yezhu run`` sharing the port (SO_REUSEPORT); more than one needs Redis and
    PostgreSQL."""
    log_level: str = "INFO"
    log_json: bool = False

    wechat_token: str = ""
    wechat_app_id: str = ""
    wechat_app_secret: SecretStr = SecretStr("")
    wechat_aes_key: str | None = None
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
