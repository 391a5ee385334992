"""What the console shows and how: the Jinja environment, its filters over :mod:`actions.labels` (words,
not codes), times, masked phones, staff display names and the audit log's actions and fields
(docs/CONSOLE.md "A desk's whole day").

Nothing here reads a request: :func:`make_templates` builds the environment, :func:`register` puts the
filters and tables on it, :func:`staff_names` loads the username → display name map.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import jinja2
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from actions import labels as L
from actions.workflow import CHINA, fmt_time
from bot.store.models import StaffUser, utcnow

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"

AUDIT_ACTION_LABELS = {
    "conversation.claim": "接入会话", "conversation.close": "关闭会话", "conversation.hand_back": "交还机器人",
    "conversation.note": "会话备注", "conversation.reply": "回复业主", "conversation.sms": "短信回复",
    "conversation.transfer": "转交会话", "conversation.view": "查看会话",
    "knowledge.add_alternative": "增加问法", "knowledge.create": "新增词条", "knowledge.delete": "删除词条",
    "knowledge.dismiss_unanswered": "忽略未答问题", "knowledge.update": "修改词条",
    "owner.search": "搜索业主", "owner.view": "查看业主档案", "search": "综合搜索",
    "staff.add": "新增员工", "staff.login": "登录", "staff.login_failed": "登录失败",
    "staff.login_throttled": "登录受限", "staff.logout": "退出", "staff.update": "修改员工", "staff.passwd": "修改密码",
    "ticket.view": "查看工单", "ticket.create": "新建工单", "ticket.edit": "修改工单", "ticket.photo": "上传照片",
    "ticket.quote": "报价", "import.run": "导入名册",
    "survey.template": "修改问卷模板", "survey.record": "登记回访", "survey.recovery": "登记补救结果",
    "case.create": "新增案例", "case.update": "修改案例", "case.delete": "删除案例", "case.export": "导出案例库",
    "certificate.collect": "登记证书领取", "certificate.register": "导出签收登记表",
    **{f"ticket.{verb}": f"工单：{word}" for verb, word in {
        "dispatch": "派单", "start": "开始处理", "complete": "完工", "request_acceptance": "请业主验收",
        "close": "关闭", "reopen": "返修", "reassign": "更换负责人", "visit_time": "改约上门时间", "note": "备注",
    }.items()},
}
IMPORT_KIND_LABELS = {"owners": "业主花名册", "certificates": "办证台账"}
CHANGE_LABELS = {"category": "类别", "priority": "紧急程度", "location": "位置", "description": "问题描述",
                 "warranty": "保修判定", "due_at": "处理时限", "visit_time": "上门时间"}
TARGET_LABELS = {"owner": "业主", "ticket": "工单", "conversation": "会话", "staff": "员工", "knowledge": "词条",
                 "import": "导入", "case": "案例", "cases": "案例库", "certificate": "办证记录", "batch": "办证批次",
                 "campaign": "群发通知"}
CASE_FIELD_LABELS = {"title": "标题", "area": "业务领域", "category": "类别", "happened": "事情经过",
                     "learned": "经验教训", "audience": "适用对象", "project_id": "楼盘", "q": "关键词"}
"""A case's fields in the audit log (``case.update``'s changed fields and previous values, export filters)."""
FIELD_LABELS = {
    "ip": "地址", "message_id": "消息", "note": "备注", "owner_id": "业主", "query": "搜索", "question": "问题",
    "reason": "原因", "results": "结果数", "role": "角色", "sms_outbox_id": "短信", "to": "转交给",
    "unanswered_id": "未答问题", "assignee_id": "负责人", "visit_time": "上门时间", "changes": "修改",
    "origin": "来源", "kind": "类型", "amount": "金额", "file": "文件", "rows": "行数", "errors": "错误",
    "slug": "词条", "active": "在岗", "password": "密码", "name": "姓名",
    "via": "来源", "title": "标题", "ticket_id": "工单", "conversation_id": "会话", "changed": "修改",
    "before": "原内容", "filters": "筛选", "area": "业务领域", "category": "类别",
    "house": "房屋", "batch": "批次", "at": "时间", "relation": "领取方式", "proxy_letter": "委托书", "id_checked": "核验身份证",
}


def _case_value(key: str, value: Any) -> str:
    if key == "audience":
        return "、".join(L.label(L.CASE_AUDIENCE_LABELS, str(v)) for v in (value if isinstance(value, list) else [value]))
    if key == "category":
        return L.category_label(None, str(value)) if value else ""
    return str(value)


WECHAT_ERRORS = {
    "45015": "业主超过48小时未留言，微信客服消息窗口已关闭", "45047": "客服消息条数已达上限",
    "43004": "业主已取消关注公众号", "40001": "公众号接口凭证无效", "42001": "公众号接口凭证已过期",
    "40003": "业主的微信号无效", "45002": "消息内容过长",
}


def delivery_error(value: str | None) -> str:
    """A failed delivery's reason in words (WeChat answers with numeric codes and English text)."""
    text = (value or "").strip()
    code = text.split(" ", 1)[0]
    if code in WECHAT_ERRORS:
        return WECHAT_ERRORS[code]
    if code.isdigit():
        return f"微信接口错误（错误码 {code}）"
    return "" if text.isascii() else text


def delivery_reason(value: str | None) -> str:
    """A campaign delivery's reason (``Delivery.error``) in words."""
    text = (value or "").strip()
    if not text:
        return ""
    if text in L.CAMPAIGN_REASON_LABELS:
        return L.CAMPAIGN_REASON_LABELS[text]
    code = text.split(":", 1)[0].strip()
    return L.CAMPAIGN_REASON_LABELS.get(code) or delivery_error(text) or "发送失败"


def actor(value: str | None, names: dict[str, str] | None = None) -> str:
    """``staff:kefu`` / ``kefu`` → 客服小李; ``bot`` → 机器人."""
    if not value:
        return ""
    username = value[6:] if value.startswith("staff:") else value
    if names and username in names:
        return names[username]
    return L.ACTOR_LABELS.get(username, username)


def audit_target(value: str | None, names: dict[str, str] | None = None) -> str:
    """``ticket:BX…`` → 工单 BX…; ``staff:kefu`` → 员工 客服小李; an import job → 名册导入."""
    if not value:
        return ""
    kind, _, ident = value.partition(":")
    if kind == "staff":
        return f"员工 {actor(ident, names)}"
    if kind == "import":
        return "名册导入"
    return f"{TARGET_LABELS[kind]} {ident}".strip() if kind in TARGET_LABELS else "其他"


def audit_details(data: dict[str, Any] | None, names: dict[str, str] | None = None) -> str:
    parts = []
    for key, value in (data or {}).items():
        if value in (None, "", [], {}):
            continue
        if key == "role":
            value = L.ROLE_LABELS.get(str(value), value)
        elif key == "origin":
            value = L.ORIGIN_LABELS.get(str(value), value)
        elif key == "kind":
            value = {**L.KIND_LABELS, **IMPORT_KIND_LABELS}.get(str(value), value)
        elif key == "changes" and isinstance(value, list):
            value = "、".join(CHANGE_LABELS.get(str(v), "其他") for v in value)
        elif key == "to":
            value = actor(str(value), names)
        elif key == "via":
            value = L.label(L.CHANNEL_LABELS, str(value))
        elif key == "category":
            value = _case_value(key, value)
        elif key == "changed" and isinstance(value, list):
            value = "、".join(CASE_FIELD_LABELS.get(str(v), "其他") for v in value)
        elif key in ("before", "filters") and isinstance(value, dict):
            value = "；".join(f"{CASE_FIELD_LABELS.get(k, '其他')}={_case_value(k, v)}" for k, v in value.items())
        elif key == "relation":
            value = L.label(L.COLLECTOR_RELATION_LABELS, str(value))
        elif isinstance(value, bool):
            value = "是" if value else "否"
        elif isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{FIELD_LABELS.get(key, '其他')}：{value}")
    return "；".join(parts)


def entity_text(entity: dict[str, Any]) -> str:
    """An NLU entity as staff read it: ``urgency=gas_leak`` → 紧急情况：燃气泄漏."""
    name, value = str(entity.get("entity") or ""), str(entity.get("value") or "")
    table = {"urgency": L.URGENCY_LABELS, "repair_category": L.REPAIR_CATEGORY_LABELS,
             "complaint_category": L.COMPLAINT_CATEGORY_LABELS}.get(name)
    if table is not None:
        value = L.label(table, value)
    return f"{L.label(L.ENTITY_LABELS, name)}：{value}"


async def staff_names(s: AsyncSession) -> dict[str, str]:
    return dict((await s.execute(sa.select(StaffUser.username, StaffUser.display_name))).all())


def register(env: jinja2.Environment) -> None:
    env.filters.update(
        actor=actor, target=audit_target, details=audit_details,
        cat=lambda t: L.category_label(t.kind, t.category), catof=lambda c, kind: L.category_label(kind, c),
        kind=lambda c: L.label(L.KIND_LABELS, c), status=lambda c: L.label(L.STATUS_LABELS, c),
        priority=lambda c: L.label(L.PRIORITY_LABELS, c), channel=lambda c: L.label(L.CHANNEL_LABELS, c),
        origin=lambda c: L.label(L.ORIGIN_LABELS, c), cert=lambda c: L.label(L.CERT_LABELS, c),
        mode=lambda c: L.label(L.MODE_LABELS, c), action=lambda c: AUDIT_ACTION_LABELS.get(c, "其他操作"),
        warranty_item=lambda c: L.label(L.WARRANTY_ITEM_LABELS, c), delivery=lambda c: L.label(L.DELIVERY_LABELS, c),
        delivery_error=delivery_error, delivery_reason=delivery_reason,
    )
    env.globals.update(
        KIND_LABELS=L.KIND_LABELS, STATUS_LABELS=L.STATUS_LABELS, PRIORITY_LABELS=L.PRIORITY_LABELS,
        ROLE_LABELS=L.ROLE_LABELS, ORIGIN_LABELS=L.ORIGIN_LABELS, REPAIR_CATEGORY_LABELS=L.REPAIR_CATEGORY_LABELS,
        COMPLAINT_CATEGORY_LABELS=L.COMPLAINT_CATEGORY_LABELS, CERT_LABELS=L.CERT_LABELS,
    )


# --- templates ----------------------------------------------------------------------------------


def mask_phone(phone: str | None) -> str:
    """``13800000001`` → ``138****0001``; short numbers keep only their last two digits."""
    if not phone:
        return ""
    if len(phone) >= 7:
        return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]
    return "*" * (len(phone) - 2) + phone[-2:]


def local(value: dt.datetime | None, fmt: str = "%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return value.astimezone(CHINA).strftime(fmt)


def ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """``不到1分钟``, ``12分钟``, ``3小时5分``, ``2天``."""
    if value is None:
        return ""
    seconds = max(0, int(((now or utcnow()) - value).total_seconds()))
    if seconds < 60:
        return "不到1分钟"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}分钟"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}小时{minutes}分" if minutes else f"{hours}小时"
    return f"{hours // 24}天{hours % 24}小时" if hours % 24 else f"{hours // 24}天"


NAV = [
    ("queue", "/console/", "会话队列", "chat"),
    ("tickets", "/console/tickets", "工单", "tickets.view"),
    ("callbacks", "/console/callbacks", "回访", "tickets.dispatch"),
    ("owners", "/console/owners", "业主", "owners"),
    ("knowledge", "/console/knowledge", "知识库", "knowledge"),
    ("cases", "/console/cases", "案例库", "cases"),
    ("dashboard", "/console/dashboard", "看板", "dashboard"),
    ("reports", "/console/reports", "月报", "dashboard"),
    ("staff", "/console/staff", "员工", "staff.admin"),
    ("campaigns", "/console/campaigns", "群发通知", "campaigns"),
    ("certificates", "/console/certificates", "办证签收", "certificates"),
    ("imports", "/console/imports", "导入", "imports"),
    ("audit", "/console/audit", "审计日志", "audit"),
]


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(local=local, ago=ago, fmt_time=fmt_time, mask=mask_phone)
    env.globals.update(ROLES=tuple(L.ROLE_LABELS))
    register(env)
    return env


def asset_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]
