"""The job registry's cron schedules: every scheduled job is a registered task, and a tick is sent once
however many processes run the scheduler (the tick is claimed in the shared de-dup set)."""

from __future__ import annotations

import asyncio

import pytest
from taskiq import InMemoryBroker, ScheduledTask
from taskiq.schedule_sources import LabelScheduleSource

from bot.jobs.schedule import SCHEDULES, OncePerTickScheduler, schedule_labels
from bot.services import memory_services, redis_services
from tests.conftest import YezhuFactory
from tests.sms.conftest import runtime


async def test_every_schedule_is_a_registered_task_with_its_cron(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    tasks = runtime(client).jobs.broker.get_all_tasks()
    for job in SCHEDULES:
        assert job.task in tasks, job.task
        assert {"cron": job.cron, "cron_offset": "Asia/Shanghai"} in tasks[job.task].labels["schedule"]
    assert schedule_labels("yezhu.no_such_job") == {}


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_tick_runs_once_across_schedulers(backend: str, request: pytest.FixtureRequest) -> None:
    services = memory_services() if backend == "memory" else redis_services(request.getfixturevalue("redis_url"))
    broker = InMemoryBroker()
    runs: list[int] = []

    async def tick() -> None:
        runs.append(1)

    broker.register_task(tick, task_name="yezhu.test_tick")
    await broker.startup()
    try:
        # Two processes' schedulers, the same minute: one of them sends it.
        schedulers = [OncePerTickScheduler(broker, [], services.dedup) for _ in range(2)]
        task = ScheduledTask(task_name="yezhu.test_tick", labels={}, args=[], kwargs={}, cron="* * * * *")
        source = LabelScheduleSource(broker)
        await asyncio.gather(*(s.on_ready(source, task) for s in schedulers))
        await broker.wait_all()
        assert runs == [1]
    finally:
        await broker.shutdown()
        await services.close()


async def test_a_tick_sends_deferred_sms_that_are_due(yezhu: YezhuFactory) -> None:
    """The embedded mode end to end: the minute's tick enqueues the sweep in-process, which sends a due SMS."""
    import datetime as dt

    import sqlalchemy as sa

    from bot.events import EventBatch
    from bot.store.models import SmsMessage, utcnow
    from tests.sms.conftest import settle

    client = await yezhu(turn_recovery_after=0, sms_window="00:00-24:00")
    rt = runtime(client)
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        row = await rt.notifier.sms(s, batch, phone="13800000002", kind="notice",
                                    params={"project": "示范花园", "content": "明日停水"})
        row.status, row.not_before = "deferred", utcnow() - dt.timedelta(seconds=1)
    await rt.jobs.scheduler.source.startup()
    minute = utcnow().replace(second=0, microsecond=0)
    assert "yezhu.sms_sweep" in await rt.jobs.scheduler.tick(minute)
    await settle(rt)
    async with rt.db.session() as s:
        assert (await s.get_one(SmsMessage, row.id)).status == "sent"
        sent = await s.scalar(sa.select(sa.func.count()).select_from(SmsMessage).where(SmsMessage.status == "sent"))
    assert sent == 1
    # The minute is claimed in the shared de-dup set: another process's tick of it enqueues nothing.
    assert not await rt.services.dedup.first_seen(f"cron:yezhu.sms_sweep:{minute:%Y%m%d%H%M}", 180)
    later = minute + dt.timedelta(minutes=1)
    assert await rt.services.dedup.first_seen(f"cron:yezhu.sms_sweep:{later:%Y%m%d%H%M}", 180)
