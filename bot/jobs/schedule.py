"""The job registry's cron schedules, run by taskiq's scheduler loop in every ``yezhu run``/``yezhu worker``.

A schedule is one line in ``SCHEDULES`` (a registered task name and a cron expression in Beijing time).
taskiq's ``LabelScheduleSource`` reads them from the tasks' labels, taskiq's cron matching decides what is
due each minute, and taskiq's scheduler (``on_ready``) enqueues it;
:class:`OncePerTickScheduler` makes that safe in any number of processes: each tick of each schedule is
claimed with ``SET NX`` in the shared de-dup set (Redis in production, in-process in the embedded mode),
so exactly one process enqueues it and one worker runs it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from taskiq import AsyncBroker, ScheduledTask, ScheduleSource, TaskiqScheduler
from taskiq.cli.scheduler.run import CronValueError, is_cron_task_now
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
CAMPAIGN_TICK = "yezhu.campaign_tick"
WARRANTY_REMINDERS = "yezhu.warranty_reminders"
CERTIFICATE_REMINDERS = "yezhu.certificate_reminders"
SURVEY_SWEEP = "yezhu.survey_sweep"
SURVEY_HANDOVERS = "yezhu.survey_handovers"

SCHEDULES: tuple[CronJob, ...] = (
    CronJob(SMS_SWEEP, "* * * * *", "send deferred SMS that are due, settle stale sends, query unknown ones"),
    CronJob(ALERT_ESCALATION, "* * * * *",
            "repeat unacknowledged emergency alerts to the supervisor; alert overdue emergency tickets"),
    CronJob(CAMPAIGN_TICK, "* * * * *",
            "start scheduled campaigns whose time has come; hand campaigns whose dispatcher died to another"),
    CronJob(WARRANTY_REMINDERS, "30 8 * * *",
            "draft warranty-expiry reminders (for approval) two months before a main item's warranty ends"),
    CronJob(CERTIFICATE_REMINDERS, "0 10 * * *",
            "remind owners who have not collected a ready certificate N days after the notice (actions/collection.py)"),
    CronJob(SURVEY_SWEEP, "* * * * *",
            "send due callback-survey invitations inside the sending window; expire unanswered ones"),
    CronJob(SURVEY_HANDOVERS, "7 * * * *", "schedule the handover survey of houses whose handover date arrived"),
    # Reports add theirs here, e.g. CronJob("yezhu.monthly_report", "0 8 1 * *", "…").
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
        self.stopped = False
        self.in_flight: set[asyncio.Future[Any]] = set()
        self.tick_at: datetime | None = None
        """The minute being sent (set by :class:`Scheduler`); the current minute otherwise."""

    async def on_ready(self, source: ScheduleSource, task: ScheduledTask) -> None:
        if self.stopped:
            return
        current = asyncio.current_task()
        if current is not None:  # stop() waits for sends under way (a kick after shutdown would be lost)
            self.in_flight.add(current)
        try:
            tick = (self.tick_at or datetime.now(UTC)).strftime("%Y%m%d%H%M")
            if await self.dedup.first_seen(f"cron:{task.task_name}:{tick}", 180):
                await super().on_ready(source, task)
        finally:
            if current is not None:
                self.in_flight.discard(current)


class Scheduler:
    """Runs the cron schedules in this process until stopped: once a minute, taskiq's cron matching over
    the schedules its ``LabelScheduleSource`` collected, each due one handed to the scheduler."""

    def __init__(self, broker: AsyncBroker, dedup: Any) -> None:
        self.source = LabelScheduleSource(broker)
        self.scheduler = OncePerTickScheduler(broker, [self.source], dedup)
        self._task: asyncio.Future[None] | None = None

    async def start(self) -> None:
        await self.source.startup()
        self._task = asyncio.ensure_future(self._run())

    async def tick(self, now: datetime) -> list[str]:
        """Send the schedules due at ``now`` (a minute); returns their task names."""
        due = []
        for task in await self.source.get_schedules():
            try:
                if task.cron and is_cron_task_now(task.cron, now, offset=task.cron_offset):
                    due.append(task)
            except CronValueError:
                log.error("schedule of %s has a bad cron %r", task.task_name, task.cron)
        self.scheduler.tick_at = now
        for task in due:
            try:
                await self.scheduler.on_ready(self.source, task)
            except Exception:
                log.exception("could not enqueue the scheduled %s", task.task_name)
        return [t.task_name for t in due]

    async def _run(self) -> None:
        while True:
            now = datetime.now(UTC)
            await asyncio.sleep(60 - now.second - now.microsecond / 1e6 + 0.05)  # just past the next minute
            await self.tick(datetime.now(UTC).replace(second=0, microsecond=0))

    async def stop(self) -> None:
        self.scheduler.stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.scheduler.in_flight:
            await asyncio.gather(*self.scheduler.in_flight, return_exceptions=True)
