"""Prometheus metrics, one registry per process (``/metrics``).

A registry per :class:`Metrics` instance (not the global default) so tests can build many apps in
one process without "duplicated timeseries" errors.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages_in = Counter(
            "yezhu_messages_in", "Inbound messages accepted", ["channel"], registry=r
        )
        self.messages_out = Counter(
            "yezhu_messages_out", "Outbound messages by delivery path", ["channel", "delivery"], registry=r
        )
        self.dedup_hits = Counter(
            "yezhu_dedup_hits", "Inbound messages dropped as duplicates", ["channel"], registry=r
        )
        self.rejected = Counter(
            "yezhu_requests_rejected", "Inbound requests rejected before processing", ["channel", "reason"],
            registry=r,
        )
        self.turns_recovered = Counter(
            "yezhu_turns_recovered", "Turns run again because their process stopped before they finished",
            ["channel"], registry=r,
        )
        self.latency = Histogram(
            "yezhu_message_latency_seconds",
            "From receipt of an inbound message to the bot's replies being ready",
            ["channel"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.redis_failures = Counter(
            "yezhu_redis_failures", "Redis calls that failed, timed out or failed fast while Redis was down",
            ["operation"], registry=r,
        )
        self.degraded = Counter(
            "yezhu_degraded", "Steps that took their fallback because a shared service was unavailable",
            ["step"], registry=r,
        )
        self.enqueue_failures = Counter(
            "yezhu_job_enqueue_failures", "Jobs that could not be handed to the job queue (the sweep retries)",
            ["job"], registry=r,
        )
        self.deliveries_swept = Counter(
            "yezhu_deliveries_swept", "Replies handed to the job queue again by the delivery sweep", ["outcome"],
            registry=r,
        )
        self.job_runs = Counter("yezhu_jobs", "Jobs run", ["job", "outcome"], registry=r)
        self.job_failures = Counter("yezhu_job_failures", "Jobs that failed", ["job"], registry=r)
        self.nlu_intents = Counter("yezhu_nlu_intents", "Parsed intents", ["intent"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
