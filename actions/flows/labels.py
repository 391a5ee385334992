"""What the bot tells owners (Simplified Chinese): safety advice per emergency, a status with its next step.

The words for codes (categories, emergencies) are the one table in actions/labels.py, shared with the
console; the names below are that table under the flows' names.
"""

from __future__ import annotations

from actions.labels import COMPLAINT_CATEGORY_LABELS as COMPLAINT_LABEL
from actions.labels import REPAIR_CATEGORY_LABELS as REPAIR_LABEL
from actions.labels import URGENCY_LABELS as URGENCY_LABEL

__all__ = ["COMPLAINT_LABEL", "REPAIR_LABEL", "SAFETY", "STATUS_LABEL", "URGENCY_CATEGORY", "URGENCY_LABEL"]

SAFETY = {
    "gas_leak": "请立即关闭燃气总阀，打开门窗通风；不要开关任何电器、不要使用明火，也不要在室内打电话，请先撤离到室外。",
    "flooding": "请先关闭入户水阀总闸，断开可能被水浸到的电源，把贵重物品移到高处，注意防滑。",
    "burning": "请立即断开电源总闸，不要用水扑救电器起火；如有明火或浓烟，请马上拨打119并撤离。",
    "sparks": "请立即断开电源总闸，远离冒火花的位置，不要触碰电线或开关。",
    "trapped": "请保持冷静，不要强行扒门或攀爬，按下电梯内的紧急呼叫按钮，救援人员正在赶来。",
    "falling": "请立即远离坠物区域，不要在下方停留，并提醒家人和邻居注意安全。",
    "structural": "请立即离开出现开裂、变形或有掉落危险的位置，不要在下方停留，并提醒家人和邻居远离；情况危急请拨打119。",
}
URGENCY_CATEGORY = {"gas_leak": "gas", "trapped": "elevator", "flooding": "plumbing", "burning": "electrical",
                    "sparks": "electrical"}
STATUS_LABEL = {
    "new": ("待派工", "我们正在为您安排负责的工程师。"),
    "dispatched": ("已派工", "工程师会按约定时间上门。"),
    "in_progress": ("处理中", "工程师正在处理。"),
    "done": ("已完工", "请您检查维修效果，2天内回复“验收通过”或“还没修好”。"),
    "awaiting_acceptance": ("待验收", "请您检查维修效果，2天内回复“验收通过”或“还没修好”。"),
    "closed": ("已完结", ""),
    "reopened": ("返修中", "我们会尽快安排工程师再次上门。"),
}
