"""Entity extraction: houses, public locations, phones, times and the business categories.

This module owns the rules that turn an owner's words into the slots a service desk fills in: which
house (building–unit–room) or which public spot, a contact phone, a visit time, what kind of repair and
how urgent (emergencies: :mod:`nlu.emergency`), what kind of complaint and how serious, what the certificate
question is about.

Rules work on the NORMALISED text (digits Arabic, Simplified, lower case; see :mod:`nlu.normalize`) and
report offsets into the ORIGINAL text through :meth:`Normalized.span`. They are deliberately rules, not
a learned tagger: addresses and phone numbers have a closed set of shapes, and a desk wants the same
answer every time for 煤气味 or 12345. Category lexicons are single regexes with one named group per
category, so extraction costs one scan per entity type. No ``\\b`` anywhere: it never matches between
Chinese characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from nlu.emergency import detect_emergencies
from nlu.normalize import Normalized
from nlu.timeparse import find_times
from nlu.types import Entity

__all__ = ["extract_entities"]


def _alt(words: Iterable[str]) -> str:
    # Longest first so that 地下车库 wins over 车库; every keyword escaped.
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


def _lexicon(groups: dict[str, list[str]], skip: Iterable[str] = ()) -> re.Pattern[str]:
    """One regex, one named group per category; ``skip`` words are matched first and ignored, so that
    a longer word hides the keyword inside it (卫生间 is not 卫生, 大门口 not 门)."""
    groups = {name: list(words) for name, words in groups.items()}
    parts = [f"(?P<{name}>{_alt(words)})" for name, words in groups.items()]
    skip = list(skip)
    if skip:
        parts.insert(0, f"(?P<_skip>{_alt(skip)})")
    # A look-ahead on the possible first characters lets the engine skip most positions at once;
    # without it every position tries every named group (the optimiser cannot see into groups).
    firsts = {w[0] for words in [*groups.values(), skip] for w in words}
    firsts |= {c.upper() for c in firsts if c.isascii() and c.isalpha()}
    head = "".join(re.escape(c) for c in sorted(firsts))
    return re.compile(f"(?=[{head}])(?:{'|'.join(parts)})")


# --------------------------------------------------------------------------------------------------
# Houses. Building: 1–3 digits or one letter (B座). Unit: 1–2 digits. Room: 3–4 digits (floor + door).

_B = r"(?P<b>\d{1,3}|[a-z])"
_HOUSE_FORMS: tuple[re.Pattern[str], ...] = (
    # 3栋2单元501(室), 三号楼二单元501室, 8幢1203, 12#1804, b座1203, 12栋3-1804, 3栋2单元
    re.compile(
        rf"(?<![\da-z.])(?:{_B}\s?(?P<bm>号楼|栋楼|栋|幢|座|#楼?|号)(?:的)?\s?)"
        r"(?:(?P<u>\d{1,2})\s?(?:单元|-)(?:的)?\s?)?(?:(?P<r>\d{3,4})\s?(?P<rm>室|号房|号|房)?)?(?!\d)"
    ),
    # 3-2-501, b-2-501
    re.compile(r"(?<![\d.:/-])(?P<b>\d{1,3}|[a-z])-(?P<u>\d{1,2})-(?P<r>\d{3,4})(?![\d-])"),
    # 8-1203 (building-room); not a date (11-25), a time range (2-4点) or a phone fragment
    re.compile(r"(?<![\d.:/-])(?P<b>\d{1,3})-(?P<r>\d{3,4})(?![\d\-点号月日时:])"),
    # 2单元501
    re.compile(r"(?<![\d.])(?P<u>\d{1,2})\s?单元\s?(?:(?P<r>\d{3,4})\s?(?P<rm>室|号房|号|房)?)?(?!\d)"),
    # 1203室, 1203房
    re.compile(r"(?<![\d.#-])(?P<r>\d{3,4})\s?(?P<rm>室|号房)"),
)

# --------------------------------------------------------------------------------------------------
# Public locations (the property company's duty: no house needed, a precise spot is).

_LOCATIONS = _lexicon({
    "elevator": ["电梯", "电梯间", "电梯厅", "电梯口", "轿厢", "lift", "elevator"],
    "garage": ["地下车库", "地库", "车库", "停车场", "地下停车场", "地下室停车场", "garage", "parking lot"],
    "corridor": ["楼道", "走廊", "过道", "楼梯间", "楼梯", "消防通道", "安全通道", "楼梯口"],
    "lobby": ["大堂", "大厅", "一楼大厅", "单元大堂", "lobby"],
    "gate": ["门岗", "岗亭", "小区大门", "小区门口", "大门口", "大门", "东门", "西门", "南门", "北门", "侧门",
             "人行入口", "车行入口", "出入口", "gate"],
    "unit_door": ["单元门", "单元门口", "楼下大门"],
    "roof": ["楼顶", "天台", "屋顶", "屋面"],
    "basement": ["地下室", "设备间", "水泵房", "配电房"],
    "garden": ["花园", "绿化带", "草坪", "草地", "中庭", "景观", "水景", "小花园", "广场"],
    "playground": ["儿童乐园", "游乐场", "儿童游乐区", "健身区", "健身器材", "篮球场"],
    "clubhouse": ["会所", "游泳池", "泳池"],
    "waste_station": ["垃圾站", "垃圾房", "垃圾桶", "垃圾分类点", "垃圾堆"],
    "service_centre": ["物业中心", "物业服务中心", "客服中心", "物业办公室", "物业前台"],
    "parcel_locker": ["快递柜", "丰巢"],
    "road": ["小区道路", "主干道", "路面", "人行道", "路灯"],
    "exterior_wall": ["外墙", "外立面"],
})
_BUILDING_BEFORE = re.compile(
    r"(?<![\da-z])(?P<b>\d{1,3}|[a-z])\s?(?:号楼|栋楼|栋|幢|座|#楼?|号)(?:(?P<u>\d{1,2})单元)?(?:的|那个|这个)?\s?$"
)
_GARAGE_LEVEL = re.compile(r"(?:地下|负|-|b)\s?(?P<n>\d)\s?(?:层|楼)?")

# --------------------------------------------------------------------------------------------------
# Phones. Mobile: 11 digits starting 1[3-9], optionally +86 and grouped 3-4-4. Landline: an area code
# 0xx(x) and 7–8 digits, or a 400/95 service number. A bare 7–8 digit number is a phone only after a
# phone word (电话, 座机, 打) — otherwise it is an order number or an amount.

_MOBILE = re.compile(r"(?<![\d])(?:\+?86[\s-]?)?(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?!\d)")
_LANDLINE = re.compile(
    r"(?<![\d])(?:(?P<area>0\d{2,3})[\s-]?(?P<num>[2-9]\d{2,3}[\s-]?\d{4})(?:-(?P<ext>\d{1,5}))?"
    r"|(?P<svc>400[\s-]?\d{3}[\s-]?\d{4}))(?!\d)"
)
_LOCAL = re.compile(r"(?:电话|座机|号码|打|拨|call)[^\d]{0,4}(?<!\d)(?P<num>[2-9]\d{6,7})(?!\d)")

# --------------------------------------------------------------------------------------------------
# Categories.

_REPAIR = _lexicon({
    "gas": ["燃气", "煤气", "天然气", "燃气灶", "燃气表", "漏气", "打不着火", "点不着火", "打不着", "燃气热水器",
            "gas"],
    "elevator": ["电梯", "轿厢", "lift", "elevator", "困人", "扶梯"],
    "intercom": ["可视对讲", "楼宇对讲", "对讲", "门禁", "门禁卡", "刷卡", "人脸识别", "门铃", "单元门", "intercom",
                 "刷脸", "access card"],
    "fire": ["消防栓", "消火栓", "灭火器", "烟感", "烟雾报警", "喷淋", "消防通道", "应急灯", "安全出口", "消防",
             "火警", "fire alarm"],
    "public_facility": ["路灯", "楼道灯", "声控灯", "健身器材", "游乐设施", "滑梯", "秋千", "垃圾桶", "道闸",
                        "快递柜", "监控", "摄像头", "井盖", "围墙", "栏杆", "扶手", "座椅", "长椅", "喷泉", "车库门",
                        "伸缩门", "单元门口", "大门", "小区门", "绿化", "草坪", "树枝", "led屏", "公告栏"],
    "drainage": ["堵", "堵塞", "堵了", "下水道", "下水", "地漏", "马桶", "坐便", "蹲便", "排水", "返水", "反水",
                 "化粪池", "污水", "反味", "返味", "冲不下去", "溢出来", "排污", "淤", "不下水", "下不去", "臭味",
                 "blocked", "clogged", "toilet", "drain"],
    "electrical": ["停电", "没电", "跳闸", "插座", "开关", "电线", "灯不亮", "灯坏", "灯泡", "灯管", "漏电", "短路",
                   "电表", "配电箱", "空开", "断电", "电路", "灯", "电闸", "power", "socket", "light"],
    "hvac": ["暖气", "地暖", "暖气片", "供暖", "空调", "新风", "制冷", "制热", "外机", "冷凝水", "heating",
             "aircon", "air conditioner", "不热"],
    "plumbing": ["漏水", "渗水", "渗漏", "滴水", "跑水", "爆管", "水管", "水龙头", "龙头", "冒水", "没水", "没有水",
                 "停水", "水压", "热水器", "水表", "阀门", "角阀", "花洒", "淋浴", "面盆", "洗手盆", "水槽", "漏了",
                 "水渍", "洇水", "水印", "往下滴", "leak", "leaking", "water pipe", "漏"],
    "door_window": ["门锁", "锁坏", "锁芯", "锁打不开", "门打不开", "门关不上", "入户门", "防盗门", "房门", "卧室门",
                    "推拉门", "窗户", "窗", "纱窗", "玻璃", "窗框", "合页", "门把手", "把手", "密码锁", "指纹锁",
                    "钥匙", "门", "锁", "door", "window", "lock"],
    "wall_floor": ["墙皮", "墙面", "墙体", "脱落", "空鼓", "瓷砖", "地砖", "墙砖", "地板", "木地板", "裂缝", "开裂",
                   "裂了", "起皮", "发霉", "霉", "吊顶", "天花板", "踢脚线", "墙", "crack", "tile", "floor"],
})


_SEVERITY = _lexicon({
    "media": ["媒体", "曝光", "记者", "电视台", "报社", "上新闻", "新闻", "抖音", "微博", "小红书",
              "发到网上", "网上曝光", "头条", "热搜", "发朋友圈", "media"],
    "hotline": ["12345", "市长热线", "投诉热线", "政府热线", "住建局", "住建委", "房管局", "消协", "消费者协会", "信访", "街道办",
                "居委会", "城管", "市长信箱", "政府"],
    "legal": ["律师", "起诉", "法院", "告你们", "打官司", "诉讼", "法律途径", "仲裁", "报警", "派出所", "法律责任",
              "lawyer", "sue"],
    "rights": ["维权", "拉横幅", "横幅", "抗议", "退房", "赔偿", "讨说法", "要个说法", "给个说法", "拒交", "不交物业费",
               "罢交"],
    "repeated": ["多次", "好几次", "几次", "又", "再次", "三番五次", "反复", "一直", "老是", "总是", "还是没", "屡次",
                 "第2次", "第3次", "第4次", "第5次", "n次", "n遍", "好多次", "无数次", "again"],
    "group": ["业主群", "大家都", "大家伙", "我们业主", "好多业主", "很多业主", "其他业主", "全体业主", "邻居们", "邻居都",
              "全楼", "整栋", "整栋楼", "大家一起", "联名", "一起去", "集体", "我们几户", "好几户"],
})

_COMPLAINT = _lexicon({
    "noise": ["噪音", "噪声", "太吵", "很吵", "吵死", "吵得", "吵", "扰民", "装修声", "电钻", "广场舞", "狗叫",
              "noise", "noisy"],
    "staff_attitude": ["态度", "骂人", "很凶", "不耐烦", "爱理不理", "敷衍", "推诿", "踢皮球", "挂电话", "挂我电话",
                       "甩脸", "不理人", "不搭理", "服务太差", "服务差", "service", "rude", "attitude"],
    "no_show": ["没人来", "没有人来", "没人管", "没人处理", "没人理", "没派人", "不派人", "放鸽子", "一直没人",
                "迟迟", "没上门", "没有上门", "没人上门", "不上门", "没人回复", "没回复", "石沉大海", "没有下文",
                "no one came", "nobody came"],
    "fees": ["物业费", "乱收费", "收费", "多收", "费用", "电费", "水费", "停车费", "涨价", "账单", "滞纳金", "公摊",
             "fee", "fees", "charge"],
    "parking": ["停车", "车位", "占车位", "乱停", "堵车位", "挡住", "充电桩", "道闸", "parking"],
    "hygiene": ["卫生", "垃圾", "脏", "臭", "保洁", "打扫", "蟑螂", "老鼠", "蚊子", "狗屎", "粪便", "清洁",
                "dirty"],
    "security": ["保安", "安全", "偷", "被盗", "小偷", "陌生人", "监控", "失窃", "打架", "security", "盗"],
    "sales_promise": ["销售", "售楼", "承诺", "宣传", "样板间", "虚假宣传", "学校", "地铁", "配套", "延期交房",
                      "延迟交付", "交房时间", "合同上写", "广告", "开发商说", "置业顾问", "说好的"],
    "construction_quality": ["质量", "偷工减料", "豆腐渣", "墙体开裂", "不合格", "工程质量", "房子质量", "精装修",
                             "空鼓", "裂缝", "渗漏", "quality"],
}, skip=["卫生间", "安全出口", "安全通道", "停车场在哪", "收费标准", "交费", "缴费"])

_CERTIFICATE = _lexicon({
    "mortgage": ["按揭", "贷款", "抵押", "银行", "公积金", "解押", "他项权证", "还清", "提前还款", "mortgage"],
    "proxy": ["代领", "委托", "委托书", "代办", "家人去领", "帮我领", "替我领", "代为", "授权", "别人去领",
              "亲戚去领", "家里人去领"],
    "mail": ["邮寄", "寄给我", "快递", "寄到", "邮到", "寄过来", "顺丰", "ems", "post", "mail"],
    "name_change": ["更名", "改名", "加名", "加名字", "去掉名字", "减名", "名字写错", "名字错了", "过户",
                    "继承", "离婚", "写谁的名", "写名字"],
    "taxes": ["契税", "维修基金", "维修资金", "专项维修", "印花税", "登记费", "工本费", "税费", "交多少钱", "多少钱",
              "税", "个税", "tax"],
    "documents": ["带什么", "材料", "资料", "证件", "身份证", "户口本", "结婚证", "需要什么", "准备什么", "原件",
                  "复印件", "购房合同", "发票", "带哪些", "documents"],
    "collection": ["领取", "去哪领", "哪里领", "在哪领", "哪领", "领证地点", "上班时间", "周末能", "地址", "怎么领",
                   "哪天领", "现场领", "去领", "可以领", "能领", "领了", "领"],
    "progress": ["进度", "办好了", "好了没", "好了吗", "多久", "还要多久", "到哪一步", "下来了吗", "下来没",
                 "出来了吗", "出来没", "办到哪", "什么时候", "啥时候", "几时", "何时", "还没办", "没办下来",
                 "status"],
})
_COMPLAINT_WEAK = frozenset({"保安", "保洁", "监控", "安全", "费用", "收费", "车位", "停车", "卫生"})
_CERTIFICATE_WEAK = frozenset({"领", "能领", "可以领", "去领", "领了", "什么时候", "啥时候", "几时", "何时", "多少钱",
                               "税", "交多少钱"})
_CERT_CONTEXT = re.compile(r"房产证|不动产|产权证|房本|办证|领证|证书|大产证|小产证|证")


def _house_entity(norm: Normalized, m: re.Match[str]) -> Entity | None:
    groups = m.groupdict()
    b, u, r = groups.get("b"), groups.get("u"), groups.get("r")
    marker = groups.get("bm")
    if marker == "号" and not r:
        return None  # 25号 is a date, 3号 a day; only 12号1804 is a house
    if marker is None and b is not None and not r:
        return None
    if b is None and u is None and r is None:
        return None
    if b is not None and b.isalpha() and marker not in {"座", "栋", "幢", "号楼", "栋楼"} and not u:
        return None  # a letter is a building only as B座 / A栋 or in b-2-501
    a_, z_ = m.span()
    # The span ends at the last address character, not at a trailing space, 的 or dash.
    while z_ > a_ and norm.text[z_ - 1] in " 的-":
        z_ -= 1
    start, end = norm.span(a_, z_)
    extra: dict[str, str] = {}
    parts = []
    if b is not None:
        extra["building"] = b.upper()
        # Letter buildings are 座 (B座), numbered ones 栋: the form the owner and the records use.
        parts.append(f"{b.upper()}座" if b.isalpha() else f"{b}栋")
    if u is not None:
        extra["unit"] = str(int(u))
        parts.append(f"{int(u)}单元")
    if r is not None:
        extra["room"] = r
        parts.append(r)
    return Entity("house", "".join(parts), start, end, extra)


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _find_houses(norm: Normalized) -> list[tuple[int, int, Entity]]:
    text = norm.text
    found: list[tuple[int, int, Entity]] = []
    for pattern in _HOUSE_FORMS:
        for m in pattern.finditer(text):
            if any(_overlaps(m.span(), (a, b)) for a, b, _ in found):
                continue
            ent = _house_entity(norm, m)
            if ent is not None:
                found.append((m.start(), m.end(), ent))
    return found


def _find_locations(norm: Normalized) -> list[tuple[int, int, Entity]]:
    text = norm.text
    found: list[tuple[int, int, Entity]] = []
    for m in _LOCATIONS.finditer(text):
        kind = m.lastgroup or "other"
        a, z = m.span()
        extra: dict[str, str] = {"name": m.group(0)}
        building = _BUILDING_BEFORE.search(text[max(0, a - 10):a])
        if building:
            a -= len(building.group(0))
            extra["building"] = building.group("b").upper()
            if building.group("u"):
                extra["unit"] = building.group("u")
        if kind == "garage":
            # 车库b2, b2车库, 地下2层车库, 负1楼停车场
            after = _GARAGE_LEVEL.match(text, z)
            before = re.search(r"(?:地下|负|-|b)\s?(\d)\s?(?:层|楼)?(?:的)?$", text[max(0, a - 6):a])
            if after:
                extra["level"] = f"B{after.group('n')}"
                z = after.end()
            elif before:
                extra["level"] = f"B{before.group(1)}"
                a -= len(before.group(0))
        start, end = norm.span(a, z)
        label = (f"{extra['building']}栋" if "building" in extra else "") + m.group(0) + extra.get("level", "")
        extra["label"] = label
        found.append((a, z, Entity("location", kind, start, end, extra)))
    return found


def _find_phones(norm: Normalized) -> list[tuple[int, int, Entity]]:
    text = norm.text
    found: list[tuple[int, int, Entity]] = []
    for m in _MOBILE.finditer(text):
        value = "".join(m.groups())
        start, end = norm.span(*m.span())
        found.append((m.start(), m.end(), Entity("phone", value, start, end, {"kind": "mobile"})))
    for m in _LANDLINE.finditer(text):
        if any(_overlaps(m.span(), (a, b)) for a, b, _ in found):
            continue
        if m.group("svc"):
            value = re.sub(r"[\s-]", "", m.group("svc"))
        else:
            number = re.sub(r"[\s-]", "", m.group("num"))
            value = f"{m.group('area')}-{number}" + (f"-{m.group('ext')}" if m.group("ext") else "")
        start, end = norm.span(*m.span())
        found.append((m.start(), m.end(), Entity("phone", value, start, end, {"kind": "landline"})))
    for m in _LOCAL.finditer(text):
        span = m.span("num")
        if any(_overlaps(span, (a, b)) for a, b, _ in found):
            continue
        start, end = norm.span(*span)
        found.append((span[0], span[1], Entity("phone", m.group("num"), start, end, {"kind": "landline"})))
    return found


def _find_times(norm: Normalized, now: datetime) -> list[tuple[int, int, Entity]]:
    found = []
    for tm in find_times(norm.text, now):
        start, end = norm.span(tm.start, tm.end)
        found.append((tm.start, tm.end, Entity("time", tm.iso, start, end, dict(tm.extra))))
    return found


def _categories(norm: Normalized, name: str, pattern: re.Pattern[str], *,
                first_only: bool = True, weak: frozenset[str] = frozenset()) -> list[Entity]:
    """One entity per category value (its first mention), in text order.

    ``weak`` keywords only name a subject (保安, 领) and count only when nothing more specific is said:
    保安态度太差 is about attitude, 领房产证要带什么 about documents.
    """
    seen: set[str] = set()
    out: list[Entity] = []
    text = norm.text
    for m in pattern.finditer(text):
        value = m.lastgroup or "other"
        if value == "_skip":
            continue
        if first_only and value in seen:
            continue
        seen.add(value)
        start, end = norm.span(*m.span())
        out.append(Entity(name, value, start, end, {"keyword": m.group(0)}))
    strong = [e for e in out if e.extra["keyword"] not in weak]
    if strong and len(strong) < len(out):
        strong_values = {e.value for e in strong}
        out = [e for e in out if e.extra["keyword"] not in weak and e.value in strong_values]
    return out


def extract_entities(norm: Normalized, now: datetime) -> list[Entity]:
    """All entities of one message, ordered by start offset; offsets are into ``norm.original``."""
    # Span entities compete for text: a phone beats a house reading of its digits, a house beats a
    # date reading (12号1804), a location keeps its building prefix (3栋的电梯 is not a house).
    spans: list[tuple[int, int, Entity]] = []
    for group in (_find_phones(norm), _find_locations(norm), _find_houses(norm), _find_times(norm, now)):
        for a, b, ent in group:
            if any(_overlaps((a, b), (x, y)) for x, y, _ in spans):
                continue
            spans.append((a, b, ent))
    entities = [ent for _, _, ent in spans]
    entities += _categories(norm, "repair_category", _REPAIR)
    for emergency in detect_emergencies(norm.text):
        start, end = norm.span(emergency.start, emergency.end)
        entities.append(Entity("urgency", emergency.kind, start, end,
                               {"keyword": emergency.keyword, "detail": emergency.detail}))
    entities += _categories(norm, "complaint_category", _COMPLAINT, weak=_COMPLAINT_WEAK)
    entities += _categories(norm, "severity", _SEVERITY)
    if _CERT_CONTEXT.search(norm.text):
        entities += _categories(norm, "certificate_topic", _CERTIFICATE, weak=_CERTIFICATE_WEAK)
    entities.sort(key=lambda e: (e.start, e.end))
    return entities
