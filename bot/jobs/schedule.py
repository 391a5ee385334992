"""The job registry's cron schedules, run by taskiq's scheduler loop in every ``yezhu run``/``yezhu worker``.

A schedule is one line in ``SCHEDULES`` (a registered task name and a cron expression in Beijing time).
taskiq's ``LabelScheduleSource`` reads them from the tasks' labels and its ``SchedulerLoop`` kicks them;
:class:`OncePerTickScheduler` makes that safe in any number of processes: each tick of each schedule is
claimed with ``SET NX`` in the shared de-dup set (Redis in production, in-process in the embedded mode),
so exactly one process enqueues it and one worker runs it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from taskiq import AsyncBroker, ScheduledTask, ScheduleSource, TaskiqScheduler
from taskiq.cli.scheduler.run import SchedulerLoop
from taskiq.schedule_sources import LabelScheduleSource

log = logging.getLogger("yezhu.jobs.schedule")

TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True, slots=True)
class CronJob:
    task: str
    cron: str
    """Minute hour day-of-month month day-of-week, Beijing time."""
    why: str


SMS_SWEEP = "yezhu.sms_sweep"
ALERT_ESCALATION = "yezhu.alert_escalation"

SCHEDULES: tuple[CronJob, ...] = (
    CronJob(SMS_SWEEP, "* * * * *", "send deferred SMS that are due, settle stale sends, query unknown ones"),
    CronJob(ALERT_ESCALATION, "* * * * *", "repeat unacknowledged emergency alerts to the supervisor"),
    # Campaigns and reports add theirs here, e.g. CronJob("yezhu.monthly_report", "0 8 1 * *", "…").
)


def schedule_labels(task: str) -> dict[str, Any]:
    """The taskiq labels that schedule ``task`` (empty if it has no schedule)."""
    crons = [{"cron": c.cron, "cron_offset": TIMEZONE} for c in SCHEDULES if c.task == task]
    return {"schedule": crons} if crons else {}


class OncePerTickScheduler(TaskiqScheduler):
    """taskiq's scheduler, but a tick already claimed by another process is not sent again."""

    def __init__(self, broker: AsyncBroker, sources: list[ScheduleSource], dedup: Any) -> None:
        super().__init__(broker, sources)
        self.dedup = dedup

    async def on_ready(self, source: ScheduleSource, task: ScheduledTask) -> None:
        tick = datetime.now(UTC).strftime("%Y%m%d%H%M")
        if await self.dedup.first_seen(f"cron:{task.task_name}:{tick}", 180):
            await super().on_ready(source, task)


class Scheduler:
    """Runs the cron schedules in this process until stopped."""

    def __init__(self, broker: AsyncBroker, dedup: Any) -> None:
        self.source = LabelScheduleSource(broker)
        self.scheduler = OncePerTickScheduler(broker, [self.source], dedup)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.source.startup()
        loop = SchedulerLoop(self.scheduler, event_loop=asyncio.get_running_loop())
        self._task = asyncio.ensure_future(loop.run(skip_first_run=True, update_interval=timedelta(hours=1),
                                                    send_timeout=30.0))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
