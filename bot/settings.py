"""All of Yezhu's settings, in one pydantic-settings class (environment variables and ``.env``).

More WeChat accounts and SMS providers come from an optional YAML config file (``YEZHU_CONFIG``);
the default WeChat account is configured from the environment and served at ``/wechat/default``.
"""

from __future__ import annotations

from decimal import Decimal
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
DEMO_CONFIG = Path(__file__).resolve().parent / "demo_config.yml"
"""The demo configuration: example values for every YAML section (SMS templates, duty rosters …). Its
SMS template catalogue is also the default when the configured file has none."""

SmsCategory = Literal["verification", "emergency", "staff", "notice", "reply", "marketing"]
URGENT_CATEGORIES = frozenset({"verification", "emergency", "staff"})
"""Sent at once, whatever the hour and whatever the owner opted out of (DOMAIN.md)."""
OPT_OUT_MARK = ("拒收请回复R", "回T退订", "退订回T", "回TD退订")


class SmsTemplate(BaseModel):
    """One message kind of the SMS template catalogue: the approved text and each provider's code."""

    kind: str
    text: str
    """The approved template body with ``${name}`` parameters (the signature is added in front)."""
    category: SmsCategory = "notice"
    params: list[str] = Field(default_factory=list)
    """Parameter names in the template's order (Tencent's ``{1}``, ``{2}`` … follow this order)."""
    param_max: int = 35
    """Characters per parameter value (the providers' rule for notification templates)."""
    aliyun: str | None = None
    """Aliyun template code (SMS_…); unset: no approved template on Aliyun."""
    tencent: str | None = None
    """Tencent template id; unset: no approved template on Tencent Cloud."""
    window: str | None = None
    """Sending window for this kind (``08:00-21:00``), over the project's."""

    @model_validator(mode="after")
    def _marketing_has_opt_out(self) -> SmsTemplate:
        if self.category == "marketing" and not self.text.rstrip("。. ").endswith(OPT_OUT_MARK):
            raise ValueError(f"SMS template {self.kind}: a marketing template must end with 拒收请回复R")
        return self

    def code_for(self, provider: str) -> str | None:
        if provider == "dev":
            return self.kind
        return getattr(self, provider, None)

    @property
    def urgent(self) -> bool:
        return self.category in URGENT_CATEGORIES


class WeChatTemplate(BaseModel):
    """One message kind's WeChat template message (模板消息): the template id the Official Account's
    back office gave, and each field's value with ``${name}`` parameters (the same names as the SMS
    template of the kind, so one ``params`` mapping fills both)."""

    kind: str
    template_id: str
    fields: dict[str, str]
    """Template field (``first``, ``keyword1`` … or ``thing1``, ``time2`` …) → value with ``${name}``."""
    value_max: int = 20
    """Characters per field value (WeChat's limit for ``thing`` fields); longer values are shortened with …"""
    url: str | None = None
    """Where tapping the message leads (optional)."""


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
    wechat_retry_base: float = Field(default=0.2, ge=0)
    """Seconds before the first in-place retry of a failed WeChat API call (then doubling, 4 attempts);
    after that the send job's own retries (``job_retry_base``) take over."""
    job_queue: str = "yezhu:jobs"
    job_redelivery_seconds: float = 60.0
    """A job left unacknowledged this long (its worker died) is run again by another worker."""
    scheduler: bool = True
    """Run the cron schedule in this process (``bot/jobs/schedule.py``); safe in every process."""

    sms_provider: Literal["dev", "aliyun", "tencent"] = "dev"
    sms_sign_name: str = "物业客服"
    """The approved signature (签名), shown as 【…】 in front of every SMS; a project's ``sms_sign`` wins."""
    sms_endpoint: str | None = None
    """The provider API's host (tests: ``http://127.0.0.1:PORT`` of a local fake provider)."""
    sms_timeout: float = 5.0
    sms_callback_key: SecretStr | None = None
    """Mounts ``/sms/{provider}/{key}/inbound|receipt``; unset: no callback routes."""
    sms_callback_allowlist: str = ""
    """Comma-separated addresses or networks allowed to push callbacks (empty: any)."""
    sms_rate_limit: float = 20.0
    """Requests per second to the provider, shared by every process (through Redis)."""
    sms_daily_cap: int = 10
    """Non-urgent SMS per phone per day; more wait for the next day."""
    sms_price: Decimal = Decimal("0.045")
    """元 per billed SMS part, for the cost the console shows while staff type (a project's ``sms_price`` wins)."""
    sms_window: str = "08:00-21:00"
    """Beijing-time sending window for non-urgent SMS (a project's ``sms_window`` wins)."""
    aliyun_access_key_id: str = ""
    aliyun_access_key_secret: SecretStr = SecretStr("")
    tencent_secret_id: str = ""
    tencent_secret_key: SecretStr = SecretStr("")
    tencent_sms_app_id: str = ""
    tencent_region: str = "ap-guangzhou"
    wecom_webhook: str | None = None
    """WeCom group robot (企业微信群机器人) webhook URL for staff alerts (a roster's ``wecom_webhook`` wins)."""
    alert_repeat_minutes: float = 10.0
    """An unacknowledged emergency alert is repeated to the supervisor after this many minutes."""
    campaign_approval_threshold: int = 200
    """A campaign to more owners than this needs a supervisor's approval (the YAML ``campaigns:``
    ``approval_threshold`` and a project's own value win)."""
    campaign_batch: int = 200
    """Deliveries one dispatcher claims (``queued`` → ``sending``) at a time."""
    campaign_concurrency: int = 64
    """Sends one dispatcher has in flight at once."""
    campaign_lease: float = 30.0
    """Seconds a campaign's dispatcher holds it without renewing; after that (its process died) the next
    ``yezhu campaign send``, worker or the minute's tick takes over and resolves its ``sending`` rows."""
    certificate_reminder_days: int = Field(default=14, ge=0)
    """Days after the last certificate notice (or reminder) before an owner who has not collected a ready
    certificate is reminded; 0 = never (per project: ``certificate_reminders`` in the YAML config)."""
    certificate_reminder_max: int = Field(default=3, ge=0)
    """Reminders per certificate at most."""
    campaign_reply_days: float = Field(default=7.0, ge=0)
    """Days after a notice during which the owner's replies are read in its context ("收到", "能代领吗")."""
    survey_delay: float | None = Field(default=None, ge=0)
    """Seconds from a trigger (a ticket closed, a house handed over, a recovery call) to its callback
    survey's invitation, for every project and kind (tests, demos); unset: the ``surveys`` section of
    the YAML config (docs/SURVEYS.md)."""

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

    @cached_property
    def sms_templates(self) -> dict[str, SmsTemplate]:
        """The SMS template catalogue: ``sms.templates`` of the config file, else the demo's."""
        raw = (self.file_config.get("sms") or {}).get("templates")
        if raw is None:
            raw = (yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8")).get("sms") or {}).get("templates") or {}
        return {kind: SmsTemplate(kind=kind, **spec) for kind, spec in raw.items()}

    @cached_property
    def wechat_templates(self) -> dict[str, WeChatTemplate]:
        """The WeChat template-message catalogue: ``wechat_templates`` of the config file, else the demo's."""
        raw = self.file_config.get("wechat_templates")
        if raw is None:
            raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8")).get("wechat_templates") or {}
        return {kind: WeChatTemplate(kind=kind, **spec) for kind, spec in raw.items()}

    @cached_property
    def campaigns_config(self) -> dict[str, Any]:
        """The ``campaigns:`` section (kinds' texts, channels, params; per-project overrides; the approval
        threshold): the config file's, else the demo's."""
        raw = self.file_config.get("campaigns")
        if raw is None:
            raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8")).get("campaigns") or {}
        if not isinstance(raw, dict):
            raise ValueError("campaigns: must be a mapping")
        return raw

    @cached_property
    def duty_rosters(self) -> dict[str, dict[str, Any]]:
        """Per project code: ``{"weekdays": {"mon": [usernames] …}, "supervisor": username, "wecom_webhook"}``."""
        return dict(self.file_config.get("duty") or {})

    @cached_property
    def surveys(self) -> dict[str, Any]:
        """The ``surveys`` section of the config file (delays, expiry, required rates, per project)."""
        raw = self.file_config.get("surveys") or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{self.config}: surveys must be a mapping")
        return raw

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
