"""Shared-state services with two implementations each: in-process (embedded) and Redis (production).

De-duplication, per-conversation locks, pub/sub, rate limiting and a small key-value cache (the WeChat
access token lives there). The same contract tests run over both (tests/test_services.py).
"""

from bot.services.base import Services, ServiceUnavailable
from bot.services.memory import memory_services
from bot.services.redis import redis_services

__all__ = ["ServiceUnavailable", "Services", "memory_services", "redis_services"]
