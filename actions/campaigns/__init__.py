"""Campaigns (广播通知): broadcast notices to owners over WeChat template messages and SMS, exactly once.

The kinds (``kinds.py``): certificate_collection 办证通知, handover 交付通知, outage 停水停电停气 (planned,
or ``urgent`` for a sudden cut), construction_progress 工程进展 (准业主), warranty_expiry 保修到期提醒,
survey 满意度调查邀请, notice 通知 — each with its text, audience rule, channels and urgency, overridable
per project in the YAML config's ``campaigns:`` section. docs/CAMPAIGNS.md describes them for staff.

Public API (everything takes the process's ``Runtime`` as ``rt``; verbs raise :class:`CampaignError` or
:class:`KindError` with one clear line in Chinese, and write the audit log):

``create(rt, *, kind, project, actor="admin", buildings=None, audience=None, channels=None, urgent=False,
at=None, params=None, name=None) -> Created(campaign, preview)``
    Draft (or ``pending_approval`` over the threshold, or ``scheduled`` with ``at``) and preview it.
``get_preview(rt, id) -> Preview`` — recipients per channel, ``excluded`` {reason: n}, ``sms_segments``,
    ``sms_cost``, ``samples`` per channel, ``needs_approval``; ``Preview.as_dict()`` / ``.lines()``.
``excluded(s, ctx, audience, limit=, offset=)`` (``audience`` module) — everyone excluded, with the reason;
    ``get_context(rt, id)`` gives the ``ctx``.
``read_list(s, project_id, path) -> ListResult(houses, owners, errors[row, value, reason])`` — an xlsx list
    (楼栋 单元 房号, or 手机号) for ``audience={"houses": …, "owners": …}``.
``approve(rt, id, actor)`` (supervisor/admin), ``schedule(rt, id, at, actor)``,
``send(rt, id, actor, progress=None, local=None) -> str`` (embedded: delivers here; production: queues
    the ``campaign_dispatch`` job), ``pause``, ``resume``, ``cancel`` (``rt, id, actor``).
``status(rt, id) -> dict`` (the campaign and ``counts`` by delivery status, ``acknowledged`` included),
``deliveries(rt, id, status=None, channel=None, limit=100, offset=0) -> list[dict]``,
``list_campaigns(rt, status=None)``, ``test_send(rt, id, actor, phone=None, openid=None)``.
``REASONS`` / ``STATUS_LABELS`` — the console's words for exclusion reasons and statuses.

Jobs (bot/jobs): ``campaign_dispatch`` (one campaign), ``campaign_tick`` (every minute: scheduled
campaigns, orphaned ones), ``warranty_reminders`` (daily). The certificate import calls
``certificate_ready``; the WeChat webhook ``dispatch.template_finished``; the SMS receipts job
``dispatch.apply_sms_receipts``.
"""

from actions.campaigns.audience import REASONS, Preview, excluded, read_list
from actions.campaigns.kinds import KINDS, KindError
from actions.campaigns.service import (
    STATUS_LABELS,
    CampaignError,
    Created,
    approve,
    cancel,
    certificate_ready,
    create,
    deliveries,
    get_context,
    get_preview,
    list_campaigns,
    pause,
    resume,
    schedule,
    send,
    status,
    test_send,
    tick,
    warranty_reminders,
)

__all__ = [
    "KINDS", "REASONS", "STATUS_LABELS", "CampaignError", "Created", "KindError", "Preview", "approve", "cancel",
    "certificate_ready", "create", "deliveries", "excluded", "get_context", "get_preview", "list_campaigns",
    "pause", "read_list", "resume", "schedule", "send", "status", "test_send", "tick", "warranty_reminders",
]
