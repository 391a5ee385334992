"""Labels the owner reads (Simplified Chinese), one table each: categories, statuses, emergencies."""

from __future__ import annotations

SAFETY = {
    "gas_leak": "请立即关闭燃气总阀，打开门窗通风；不要开关任何电器、不要使用明火，也不要在室内打电话，请先撤离到室外。",
    "flooding": "请先关闭入户水阀总闸，断开可能被水浸到的电源，把贵重物品移到高处，注意防滑。",
    "burning": "请立即断开电源总闸，不要用水扑救电器起火；如有明火或浓烟，请马上拨打119并撤离。",
    "sparks": "请立即断开电源总闸，远离冒火花的位置，不要触碰电线或开关。",
    "trapped": "请保持冷静，不要强行扒门或攀爬，按下电梯内的紧急呼叫按钮，救援人员正在赶来。",
    "falling": "请立即远离坠物区域，不要在下方停留，并提醒家人和邻居注意安全。",
}
URGENCY_LABEL = {"gas_leak": "燃气泄漏", "flooding": "漏水/水浸", "burning": "焦糊味/起火", "sparks": "电线打火",
                 "trapped": "有人被困电梯", "falling": "高空坠物", "structural": "结构安全"}
URGENCY_CATEGORY = {"gas_leak": "gas", "trapped": "elevator", "flooding": "plumbing", "burning": "electrical",
                    "sparks": "electrical"}
REPAIR_LABEL = {
    "plumbing": "给排水/漏水", "drainage": "下水堵塞", "electrical": "电路", "gas": "燃气", "door_window": "门窗锁具",
    "wall_floor": "墙地面/瓷砖/裂缝", "hvac": "暖通空调", "elevator": "电梯", "intercom": "门禁对讲",
    "public_facility": "公共设施", "fire": "消防设施", "other": "其他",
}
COMPLAINT_LABEL = {
    "noise": "噪音", "staff_attitude": "服务态度", "no_show": "无人处理", "fees": "收费", "parking": "停车",
    "hygiene": "环境卫生", "security": "安全管理", "sales_promise": "销售承诺", "construction_quality": "工程质量",
    "other": "其他",
}
STATUS_LABEL = {
    "new": ("待派工", "我们正在为您安排负责的工程师。"),
    "dispatched": ("已派工", "工程师会按约定时间上门。"),
    "in_progress": ("处理中", "工程师正在处理。"),
    "done": ("已完工", "请您检查维修效果，2天内回复“验收通过”或“还没修好”。"),
    "awaiting_acceptance": ("待验收", "请您检查维修效果，2天内回复“验收通过”或“还没修好”。"),
    "closed": ("已完结", ""),
    "reopened": ("返修中", "我们会尽快安排工程师再次上门。"),
}
