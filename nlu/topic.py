"""Topic: what a message is about, apart from what the owner does with it (the intent is the act).

This module owns the topic vocabulary and how a topic is chosen. 交房5年了还没办房产证 is the act
``complaint`` about the topic ``certificate``; 电梯又坏了 is ``repair`` about ``elevator``; 物业费怎么交 is
``inquiry`` about ``fees``. The dialogue reads both (``ParseResult.topic``, ``getattr(parse, "topic", None)``).

Topics (``TOPICS``):

* owner business: ``certificate`` (房产证, 不动产登记, 契税 …), ``handover`` (交房, 逾期交付, 验房, 停工 …),
  ``sales_promise`` (宣传, 承诺, 规划变更, 学位 …), ``construction_quality`` (质量, 开裂, 渗漏 as a defect of
  the building …), ``fees``, ``parking``, ``noise``, ``hygiene``, ``security``, ``property_service``
  (the property company's handling and staff), ``renovation`` (装修 rules, 违建);
* the repair categories of :mod:`nlu.entities`: ``plumbing``, ``drainage``, ``electrical``, ``gas``,
  ``door_window``, ``wall_floor``, ``hvac``, ``elevator``, ``intercom``, ``public_facility``, ``fire_safety``.

Method: weighted concept lexicons (a specific word such as 房产证 weighs more than a generic one such as
证), scored over the whole text with a small bonus for the headline or opening sentence (where a
message names its subject) and for the last sentence (where a letter states its demand); salutations
and formulae are cut first (:mod:`nlu.letters`). The best-scoring topic wins if it reaches a minimum
score; otherwise the topic is ``None``. A lexicon, not a learned model: topics are a closed, named
vocabulary a desk routes on, the words that name them are few, and a keyword explains itself in
``topic_keyword``. Measured on the real-register evaluation set (docs/NLU.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["REPAIR_TOPICS", "TOPICS", "TopicResult", "detect_topic"]

REPAIR_TOPICS: tuple[str, ...] = (
    "plumbing", "drainage", "electrical", "gas", "door_window", "wall_floor", "hvac", "elevator", "intercom",
    "public_facility", "fire_safety",
)
TOPICS: tuple[str, ...] = (
    "certificate", "handover", "sales_promise", "construction_quality", "fees", "parking", "noise", "hygiene",
    "security", "property_service", "renovation", *REPAIR_TOPICS,
)

# topic -> {weight: words}. 3 = names the topic by itself; 2 = strong evidence; 1 = weak evidence.
_LEXICON: dict[str, dict[int, tuple[str, ...]]] = {
    "certificate": {
        4: ("房产证", "房产正", "房产症", "房铲证", "不动产权证", "不动产证", "不动产登记", "产权证", "房本", "大产证",
            "小产证", "产证", "办证难", "两证", "证件办理", "房屋所有权证", "土地证", "分户证", "确权", "certificate",
            "办不了证", "办不下来证", "拿不到证", "没有证", "没证", "办证", "过户", "转移登记", "变更登记", "抵押登记",
            "注销登记", "解押", "他项权证", "维修资金缴纳", "缴纳维修", "交维修基金", "交维修资金"),
        3: ("领证", "拿证", "契税", "初始登记", "首次登记", "大证", "分证", "产权登记", "不动产", "房产登记",
            "登记中心", "办理产权", "办理房产", "产权办理", "网签", "备案"),
        1: ("维修基金", "维修资金", "证"),
    },
    "handover": {
        4: ("逾期交房", "延期交房", "延迟交房", "推迟交房", "逾期交付", "延期交付", "延迟交付", "交房延期", "烂尾",
            "停工", "未动工", "不动工", "迟迟不交房", "交不了房", "保交楼", "交付标准", "交付条件"),
        2: ("收房", "交房", "交付"),
        3: ("验房", "入伙", "交钥匙", "拿钥匙", "复工", "竣工", "竣工验收", "工地", "施工进度", "工程进度", "联合验收",
            "交楼", "违约金", "逾期"),
    },
    "sales_promise": {
        3: ("虚假宣传", "宣传", "承诺", "样板间", "样板房", "售楼处", "售楼", "销售", "置业顾问", "规划变更", "更改规划",
            "改规划", "变更规划", "擅自变更", "兑现", "口头承诺", "合同附件", "购房合同", "法律效力", "学区", "学位", "配套学校", "幼儿园", "地铁", "商业配套", "容积率", "绿化率", "广告", "合同约定",
            "合同上写", "开发商说", "说好的", "赠送", "送车位", "送花园", "精装标准", "降价", "退房", "捆绑销售"),
        1: ("开发商", "配套"),
    },
    "construction_quality": {
        3: ("质量问题", "工程质量", "房屋质量", "房子质量", "偷工减料", "豆腐渣", "不合格", "以次充好", "质量差",
            "墙体开裂", "楼板开裂", "裂缝", "开裂", "渗漏", "沉降", "下沉", "倾斜", "结构安全", "返修",
            "防水不合格", "墙体", "钢筋", "混凝土", "楼板", "层高不够", "面积缩水", "quality", "安全鉴定",
            "房屋鉴定", "精品住宅", "防水工程"),
        2: ("保修期",),
        1: ("质量", "外墙", "鉴定"),
    },
    "fees": {
        3: ("物业费", "物管费", "管理费", "乱收费", "收费", "收取", "停车费", "费用", "涨价", "滞纳金", "押金", "公摊",
            "账单", "退费", "二次供水费", "垃圾费", "装修押金", "服务费", "多收", "交钱", "退钱", "公共收益", "指导价",
            "收费标准", "收益", "fee", "fees"),
        1: ("钱", "价格", "标准"),
    },
    "parking": {
        3: ("车位", "停车", "乱停", "占用车位", "占车位", "充电桩", "车辆进出", "停车场", "僵尸车", "parking"),
        2: ("车库", "地库"),
    },
    "noise": {
        3: ("噪音", "噪声", "扰民", "太吵", "很吵", "吵闹", "吵得", "广场舞", "狗叫", "施工噪音", "夜间施工", "跺脚",
            "noise", "noisy", "嗡嗡", "轰鸣", "睡不着", "夜不能寐", "睡不好", "打桩", "电钻", "施工声", "麻将声"),
        1: ("吵", "睡觉"),
    },
    "hygiene": {
        3: ("垃圾", "卫生", "保洁", "脏乱差", "清运", "蟑螂", "老鼠", "蚊虫", "狗屎", "粪便", "清洁", "污水横流"),
        2: ("异味", "臭味"),
        1: ("脏", "臭"),
    },
    "security": {
        3: ("保安", "门岗", "被盗", "失窃", "小偷", "盗窃", "偷", "陌生人", "治安", "监控", "外来人员", "高空抛物",
            "打架", "security"),
        1: ("安全隐患",),
    },
    "property_service": {
        3: ("物业公司", "物业服务", "服务态度", "态度", "不作为", "敷衍", "推诿", "更换物业", "换物业", "物业管理",
            "业委会", "业主委员会", "管家", "客服", "选聘物业", "物业不管", "托管", "没有物业", "无物业", "物业撤场", "业主大会"),
        1: ("物业",),
    },
    "renovation": {
        3: ("装修", "违建", "违章搭建", "私搭乱建", "搭建", "封阳台", "阳台封", "拆除", "砸墙", "装修申请", "打通", "拆改",
            "扩建", "私自改"),
    },
    "plumbing": {
        3: ("漏水", "渗水", "水管", "爆管", "停水", "没水", "水压", "水龙头", "热水器", "二次供水", "自来水", "供水",
            "水质", "水表", "一户一表"),
        1: ("漏", "滴水"),
    },
    "drainage": {
        3: ("下水道", "下水", "地漏", "马桶", "堵塞", "堵了", "排水", "返水", "污水", "雨水管", "化粪池", "排污", "疏通"),
        1: ("堵",),
    },
    "electrical": {
        3: ("停电", "没电", "跳闸", "插座", "电线", "线路", "电表", "配电", "供电", "电压", "漏电", "断电", "路灯不亮",
            "用电", "电力", "灯坏", "灯不亮", "照明", "声控灯", "峰谷电", "灯泡"),
        1: ("灯",),
    },
    "gas": {
        3: ("燃气", "煤气", "天然气", "液化气", "燃气灶", "燃气表", "通气", "开通燃气", "燃气管道"),
    },
    "door_window": {
        3: ("门锁", "入户门", "防盗门", "窗户", "纱窗", "推拉门", "门窗", "玻璃", "窗框", "把手", "锁芯", "闭门器", "执手",
            "推拉窗", "密封条", "胶条"),
        1: ("门", "窗", "锁"),
    },
    "wall_floor": {
        3: ("墙皮", "瓷砖", "地砖", "墙砖", "地板", "吊顶", "天花板", "墙面", "发霉", "起皮", "脱落", "空鼓", "起拱"),
    },
    "hvac": {
        3: ("暖气", "供暖", "地暖", "空调", "新风", "不热", "室温", "集中供热", "供热", "采暖"),
    },
    "elevator": {
        4: ("电梯", "升降机", "轿厢", "加装电梯", "lift", "elevator"),
    },
    "intercom": {
        4: ("门禁", "可视对讲", "门禁卡", "人脸识别"),
        3: ("对讲", "刷卡", "门铃"),
    },
    "public_facility": {
        3: ("路灯", "楼道灯", "健身器材", "游乐设施", "井盖", "围墙", "绿化", "草坪", "树木", "喷泉", "快递柜", "公共设施",
            "公共区域", "道路", "路面", "水泵", "二次供水设备", "公厕", "楼道", "单元门", "道闸", "伸缩门", "窨井",
            "申请使用", "动用", "使用维修资金", "维修资金使用", "维修资金怎么", "屋面", "老旧小区改造"),
    },
    "fire_safety": {
        3: ("消防", "消防通道", "消防栓", "灭火器", "烟感", "喷淋", "应急灯", "安全出口", "消防设施", "消防车道",
            "堵塞消防", "fire alarm", "防火门", "电动车充电", "楼道充电", "飞线充电", "充电"),
    },
}

# When two topics tie, the more specific business wins (a certificate delayed by a late handover is
# about the certificate; a fee for a parking space is about parking).
_PRIORITY: tuple[str, ...] = (
    "certificate", "handover", "sales_promise", "construction_quality", "elevator", "gas", "fire_safety",
    "parking", "noise", "hygiene", "security", "renovation", "fees", "hvac", "plumbing", "drainage", "electrical",
    "intercom", "door_window", "wall_floor", "public_facility", "property_service",
)
_MIN_SCORE = 2.5
# Any "…费" (电梯费, 处理费, 开户费) is evidence for fees; a utility's own word (供暖, 燃气) still names the utility.
_FEE = re.compile(r"[\u4e00-\u9fff]费(?!用|劲|力|心|解|时)")
_FEE_WEIGHT = 2.0
# A defect that the developer is blamed for is about construction quality, not a repair category.
_DEVELOPER = re.compile(r"开发商|新房|交房|交付|精装|保修期|精品住宅|工程")
_DEFECT = re.compile(r"质量|偷工|开裂|裂缝|裂了|渗|漏|空鼓|脱落|变形|不合格|豆腐渣|太差")
_SENTENCE = re.compile(r"[^.!?;\n]+[.!?;\n]*")


def _compile() -> tuple[re.Pattern[str], dict[str, tuple[str, int]]]:
    table: dict[str, tuple[str, int]] = {}
    for topic, weights in _LEXICON.items():
        for weight, words in weights.items():
            for word in words:
                table.setdefault(word, (topic, weight))
    alternation = "|".join(re.escape(w) for w in sorted(table, key=len, reverse=True))
    return re.compile(alternation), table


_PATTERN, _TABLE = _compile()


@dataclass(frozen=True, slots=True)
class TopicResult:
    topic: str | None
    score: float
    keyword: str | None
    start: int  # offsets of the deciding keyword in the text given (-1 when no topic)
    end: int
    scores: dict[str, float]


def detect_topic(text: str, intent: str | None = None) -> TopicResult:
    """The topic of a normalised message (formulae already cut), or ``None`` when nothing names one.

    ``intent`` is a hint only: a complaint about a defect that names the developer (新房墙体开裂，开发商
    拒不维修) is about ``construction_quality`` rather than the repair category."""
    if not text:
        return TopicResult(None, 0.0, None, -1, -1, {})
    sentences = [m.span() for m in _SENTENCE.finditer(text)] or [(0, len(text))]
    first_end = sentences[0][1]
    last_start = sentences[-1][0] if len(sentences) > 1 else len(text)
    scores: dict[str, float] = {}
    best_hit: dict[str, tuple[float, str, int, int]] = {}
    spans: list[tuple[int, int]] = []
    for m in _PATTERN.finditer(text):
        topic, weight = _TABLE[m.group(0)]
        gain = float(weight)
        if m.start() < first_end:
            gain *= 1.5  # the headline or the opening names the subject
        elif m.start() >= last_start:
            gain *= 1.25  # the demand at the end
        scores[topic] = scores.get(topic, 0.0) + gain
        spans.append(m.span())
        if topic not in best_hit or gain > best_hit[topic][0]:
            best_hit[topic] = (gain, m.group(0), m.start(), m.end())
    fee_hits = 0
    for m in _FEE.finditer(text):
        if fee_hits >= 2:
            break
        if any(a < m.end() and m.start() < b for a, b in spans):
            continue  # already counted as a lexicon word (物业费)
        fee_hits += 1
        scores["fees"] = scores.get("fees", 0.0) + _FEE_WEIGHT
        best_hit.setdefault("fees", (_FEE_WEIGHT, m.group(0), m.start(), m.end()))
    if not scores:
        return TopicResult(None, 0.0, None, -1, -1, {})
    rank = {t: i for i, t in enumerate(_PRIORITY)}
    topic = max(scores, key=lambda t: (scores[t], -rank.get(t, len(rank))))
    if scores[topic] < _MIN_SCORE:
        return TopicResult(None, scores[topic], None, -1, -1, scores)
    _, keyword, start, end = best_hit[topic]
    if (intent == "complaint" and topic in REPAIR_TOPICS and topic != "elevator" and _DEVELOPER.search(text)
            and _DEFECT.search(text)):
        return TopicResult("construction_quality", scores[topic], keyword, start, end, scores)
    return TopicResult(topic, scores[topic], keyword, start, end, scores)
