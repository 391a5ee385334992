"""Every code staff and owners might see, in words (Simplified Chinese): the one module of label tables.

Codes (``repair``, ``hvac``, ``no_show``, ``awaiting_acceptance``…) are what the code and the database
speak; people read the words. Tables here are the only definitions: the ticket workflow, the console
and reports import them (docs/CONSOLE.md "Words, not codes"). A code missing from a table is shown by
:func:`label` as a neutral word, never as the code itself.
"""

from __future__ import annotations

from collections.abc import Mapping

KIND_LABELS = {"repair": "报修", "complaint": "投诉", "inquiry": "咨询", "certificate": "办证", "recovery": "服务补救"}
STATUS_LABELS = {
    "new": "新建", "dispatched": "已派单", "in_progress": "处理中", "done": "已完工",
    "awaiting_acceptance": "待验收", "closed": "已关闭", "reopened": "返修",
}
PRIORITY_LABELS = {"normal": "一般", "urgent": "紧急", "serious": "严重", "group": "群体"}
TICKET_EVENT_LABELS = {
    "created": "创建工单", "dispatched": "派单", "started": "开始处理", "done": "完工",
    "awaiting_acceptance": "请业主验收", "closed": "关闭", "reopened": "返修", "reassigned": "更换负责人",
    "note": "内部备注", "visit_time": "改约上门时间", "owner_notified": "已通知业主",
    "owner_not_notified": "未能通知业主", "due_changed": "调整时限", "edited": "修改工单",
    "photo": "添加照片", "quote": "报价", "quote_accepted": "业主同意报价", "quote_declined": "业主拒绝报价",
    "owner_followup": "业主补充", "linked": "关联工单", "emergency_update": "紧急情况补充",
    "callback_recorded": "登记回访", "recovery_opened": "回访低分，已转主管", "recovery_outcome": "补救回访结果",
}
SURVEY_KIND_LABELS = {"repair": "维修回访", "complaint": "投诉回访", "handover": "交付回访", "periodic": "居住体验调查",
                      "recheck": "补救后二次回访", "recovery": "补救回访"}
SURVEY_STATUS_LABELS = {
    "scheduled": "待发送", "invited": "已邀请", "in_progress": "答题中", "complete": "已完成", "partial": "部分完成",
    "expired": "未回复", "declined": "业主拒答", "cancelled": "已取消",
}
SURVEY_SOURCE_LABELS = {"bot": "机器人", "staff": "人工"}
REPAIR_CATEGORY_LABELS = {
    "plumbing": "给排水/漏水", "drainage": "下水堵塞", "electrical": "电路", "gas": "燃气", "door_window": "门窗锁具",
    "wall_floor": "墙地面/瓷砖/裂缝", "hvac": "暖通空调", "elevator": "电梯", "intercom": "门禁对讲",
    "public_facility": "公共设施", "fire": "消防设施", "other": "其他",
}
COMPLAINT_CATEGORY_LABELS = {
    "noise": "噪音", "staff_attitude": "服务态度", "no_show": "无人处理", "fees": "收费", "parking": "停车",
    "hygiene": "环境卫生", "security": "安全管理", "sales_promise": "销售承诺", "construction_quality": "工程质量",
    "other": "其他",
}
URGENCY_LABELS = {
    "gas_leak": "燃气泄漏", "flooding": "漏水/水浸", "burning": "焦糊味/起火", "sparks": "电线打火",
    "trapped": "有人被困电梯", "lift_entrapment": "有人被困电梯", "falling": "高空坠物", "fire": "起火",
    "structural": "结构安全",
}
CHANNEL_LABELS = {"wechat": "微信", "sms": "短信", "api": "接口", "terminal": "终端", "phone": "电话",
                  "walk_in": "来访", "console": "客服录入"}
ORIGIN_LABELS = {"phone": "电话", "walk_in": "来访", "wechat": "微信", "sms": "短信"}
"""Channels a ticket can come from when staff open it (``Ticket.origin``)."""
HANDOVER_REASON_LABELS = {
    "human": "业主要求人工", "owner_asked": "业主要求人工", "asked": "业主要求人工", "request": "业主要求人工",
    "menu": "业主点击人工客服菜单",
    "unsure": "机器人无法理解", "low_confidence": "机器人无法理解", "fallback": "机器人无法理解",
    "misunderstood": "机器人无法理解", "gave_up": "机器人无法理解",
    "unanswered": "知识库无答案", "unknown_question": "知识库无答案",
    "emergency": "紧急情况", "complaint": "投诉",
    "complaint_serious": "严重投诉", "serious_complaint": "严重投诉", "serious": "严重投诉",
    "complaint_group": "群体投诉", "group_complaint": "群体投诉", "group": "群体投诉",
    "repeated": "反复咨询", "staff": "客服接入",
}
CONVERSATION_EVENT_LABELS = {
    "created": "会话开始", "hand_over": "转人工", "claim": "接入", "transfer": "转交", "hand_back": "交还机器人",
    "close": "关闭会话", "reopen": "重新打开",
}
MODE_LABELS = {"bot": "机器人接待中", "waiting": "等待人工", "staff": "人工接待中", "closed": "已关闭"}
INTENT_LABELS = {
    "repair": "报修", "complaint": "投诉", "inquiry": "咨询", "certificate": "办证", "human": "转人工",
    "greet": "问候", "thanks": "感谢", "affirm": "肯定", "deny": "否定", "optout": "退订", "other": "其他",
}
ENTITY_LABELS = {
    "house": "房号", "phone": "电话", "time": "时间", "location": "位置", "urgency": "紧急情况",
    "repair_category": "报修类别", "complaint_category": "投诉类别", "severity": "严重程度", "building": "楼栋",
    "unit": "单元", "room": "房间", "topic": "话题", "amount": "金额", "date": "日期", "project": "楼盘",
}
CERT_LABELS = {"processing": "办理中", "ready": "可领取", "collected": "已领取", "mailed": "已邮寄", "on_hold": "暂缓"}
DELIVERY_LABELS = {"passive": "已送达", "inline": "已送达", "queued": "发送中", "sent": "已发送", "failed": "发送失败",
                   "stored": "已送达"}
ROLE_LABELS = {"agent": "客服", "engineer": "工程师", "supervisor": "主管", "admin": "管理员"}
ACTOR_LABELS = {"bot": "机器人", "system": "系统", "owner": "业主", "cli": "命令行", "import": "导入", "demo": "示例数据",
                "-": "未知用户"}
CASE_AUDIENCE_LABELS = {"design": "设计", "engineering": "工程", "service": "服务"}
"""Whom a case in the case library (客服案例库) is written for (``CaseEntry.audience``)."""
WARRANTY_ITEM_LABELS = {
    "waterproofing": "防水", "plumbing": "给排水管道", "electrical": "电气管线", "equipment": "设备安装",
    "decoration": "装修工程", "hvac": "供热与供冷系统", "door_window": "门窗及配件",
}

UNKNOWN = "其他"


def label(table: Mapping[str, str], code: str | None, default: str = UNKNOWN) -> str:
    """The word for ``code``; a code the table does not know is not shown raw.

    Free text that is already Chinese (a category typed by staff, say) is shown as it is.
    """
    if not code:
        return ""
    if code in table:
        return table[code]
    return code if not code.isascii() else default


def category_label(kind: str | None, category: str | None) -> str:
    """A ticket's category in words: repair and complaint categories have their own tables."""
    table = COMPLAINT_CATEGORY_LABELS if kind == "complaint" else REPAIR_CATEGORY_LABELS
    if category in table:
        return table[category or ""]
    return label({**REPAIR_CATEGORY_LABELS, **COMPLAINT_CATEGORY_LABELS}, category)


def categories_for(kind: str) -> dict[str, str]:
    """The categories staff may choose for a ticket of ``kind``."""
    if kind == "repair":
        return REPAIR_CATEGORY_LABELS
    if kind == "complaint":
        return COMPLAINT_CATEGORY_LABELS
    return {}
SMS_PARAM_LABELS = {
    "kind": "类型", "number": "单号", "assignee": "负责人", "visit_time": "上门时间", "summary": "事项",
    "location": "地点", "code": "验证码", "content": "内容", "project": "项目", "house": "房屋",
    "place": "地点", "hours": "时间", "documents": "所需材料", "time": "时间", "reason": "原因",
}
"""How a notice's parameters read when a kind has no SMS template (the recorded text of a skipped SMS)."""
COLLECTOR_RELATION_LABELS = {"owner": "业主本人", "proxy": "代领", "mail": "邮寄"}
"""Who took a certificate at the counter (``CertificateRecord.collector_relation``)."""
CAMPAIGN_KIND_LABELS = {
    "certificate_collection": "办证通知", "handover": "交付通知", "outage": "停水停电通知",
    "construction_progress": "工程进展", "warranty_expiry": "保修到期提醒", "survey": "回访邀请", "notice": "一般通知",
}
CAMPAIGN_STATUS_LABELS = {
    "draft": "草稿", "pending_approval": "待审批", "approved": "已审批", "scheduled": "已定时", "sending": "发送中",
    "paused": "已暂停", "done": "已完成", "cancelled": "已取消",
}
CAMPAIGN_DELIVERY_LABELS = {
    "queued": "排队中", "sending": "发送中", "sent": "已发送", "delivered": "已送达", "acknowledged": "已确认",
    "failed": "失败", "skipped": "未发送",
}
UTILITY_LABELS = {"water": "水", "power": "电", "gas": "燃气"}
CAMPAIGN_REASON_LABELS = {
    "opted_out": "业主已退订短信通知", "no_phone": "没有手机号", "not_bound": "未绑定微信", "no_template": "没有已审核的模板",
    "duplicate_house": "同一房屋已有收件人", "no_consent": "未同意接收营销短信", "quiet_hours": "非发送时段，已顺延",
    "failed:user block": "业主拒收公众号消息", "failed: system failed": "微信系统发送失败", "cap": "已达当日发送上限",
    "cancelled": "通知已取消", "unsubscribed": "业主已取消关注公众号",
}
"""Why a campaign's delivery was skipped or failed (``Delivery.error``), in words."""
