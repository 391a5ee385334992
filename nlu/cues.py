"""Cue lexicons: what an experienced service-desk agent listens for, as classifier features.

Character n-grams learn the words of the training data; cues carry the desk's knowledge beyond it —
that 凭什么 / 石沉大海 / 忍无可忍 is a complaint whatever it is about, that 请问 … 吗 is a question, that
人工 / 真人 / 经理 asks for a person, that 房产证 / 契税 / 不动产 is the certificate business, that 坏 / 漏
/ 堵 / 不亮 report a fault. Each cue that fires adds one feature (``c:<name>``) whose weight the model
learns, so a cue is evidence, never a rule. Works on normalised text; keywords are escaped, and there
is no ``\\b`` (it never matches between Chinese characters).
"""

from __future__ import annotations

import re

__all__ = ["CUES", "cue_features"]


def _words(*words: str) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


CUES: dict[str, re.Pattern[str]] = {
    "complaint": re.compile(_words(
        "投诉", "差评", "太差", "很差", "真差", "最差", "垃圾物业", "什么破", "破物业", "凭什么", "乱收费", "不作为",
        "不负责", "忍无可忍", "太过分", "过分", "气愤", "生气", "愤怒", "不满", "失望", "恶心", "坑人", "坑爹", "黑心",
        "骗人", "欺负", "敷衍", "推诿", "踢皮球", "给个说法", "讨说法", "要个说法", "交代", "责任心", "什么态度",
        "态度", "扰民", "没人管", "没人来", "没人理", "不处理", "不解决", "不通知", "不打扫", "不管", "石沉大海",
        "视而不见", "形同虚设", "不像话", "离谱", "受不了", "忍不了", "白交", "不配", "赔偿", "负责", "曝光", "12345",
        "市长热线", "律师", "起诉", "维权", "横幅", "媒体", "举报", "强制", "私自", "莫名其妙", "不合理", "不公平",
        "承诺", "虚假", "宣传", "骗", "退钱", "退房", "complain", "worst", "unacceptable", "terrible", "rude",
        "唔理", "冇人理", "好差", "太慢", "效率", "涨价", "乱停", "占用", "占了", "被偷", "被盗", "偷工减料", "豆腐渣",
        "吵", "噪音", "躁音", "早音", "脏", "臭", "乱", "没下文", "拖了", "一直拖", "又", "再次", "多次", "几次",
    )),
    "fault": re.compile(_words(
        "坏", "漏", "堵", "不亮", "不响", "不转", "不热", "不凉", "不冻", "不制冷", "不制热", "打不开", "关不上", "关不严",
        "打不着", "点不着", "没电", "没水", "停水", "停电", "裂", "掉", "脱落", "松动", "卡住", "异响", "反味", "返味",
        "跳闸", "滴水", "渗", "冒水", "冒烟", "火花", "断了", "失灵", "没反应", "故障", "报修", "维修", "修一下", "来修",
        "修理", "师傅", "上门", "broken", "leak", "blocked", "fix", "not working", "坏咗", "唔着", "唔凉", "塞咗", "整下",
        "空鼓", "发霉", "起皮", "变形", "生锈", "鼓包", "积水", "返水", "反水", "溢", "困", "没有热水", "没声音",
        "没画面", "刷不开", "进不去", "出不来",
    )),
    "question": re.compile(
        _words(
            "吗", "么", "呢", "怎么", "怎样", "如何", "多少", "几点", "哪里", "哪儿", "在哪", "什么时候", "何时", "多久",
            "能不能", "可不可以", "是否", "有没有", "请问", "咨询", "问一下", "问下", "问问", "想了解", "了解一下",
            "打听", "how", "what", "when", "where", "点样", "几多", "边度", "可唔可以", "系咪", "未", "几时", "咩",
            "需要什么", "要不要", "是不是", "可以吗", "行不行", "?",
        )
    ),
    "certificate": re.compile(_words(
        "房产证", "房产", "不动产", "产权证", "产权", "房本", "办证", "领证", "拿证", "契税", "维修基金", "维修资金",
        "证书", "大产证", "小产证", "登记中心", "他项", "解押", "过户", "加名", "更名", "certificate", "代领", "委托书",
        "初始登记", "首次登记", "完税", "房产正", "房产症", "房铲证", "全证",
    )),
    "human": re.compile(_words(
        "人工", "真人", "活人", "机器人", "机器", "客服", "经理", "领导", "负责人", "主管", "管家", "工作人员",
        "回电", "回个电话", "打电话给我", "给我打电话", "打给我", "联系我", "转接", "转给", "转到", "当面", "见面",
        "找人", "找个人", "搵人", "real person", "human", "agent", "老总", "专员", "人公", "认工", "客复", "值班的人",
        "转人", "换人", "换个人", "有人吗", "人呢",
    )),
    "optout": re.compile(_words(
        "退订", "退訂", "td", "unsubscribe", "stop", "别再发", "不要再发", "别发", "不要发", "取消订阅", "取消关注",
        "拒收", "骚扰", "不再接收", "停止发送", "停止推送", "删掉", "拉黑", "别推送", "不要推送", "别给我发",
    )),
    "thanks": re.compile(_words("谢谢", "感谢", "多谢", "谢了", "谢啦", "辛苦", "唔该", "thank", "thx", "3q", "蟹蟹",
                                "点赞", "好评", "感激")),
    "greet": re.compile(_words("你好", "您好", "在吗", "在不在", "哈喽", "哈罗", "hello", "hi", "早上好", "下午好",
                               "晚上好", "早安", "喂", "嗨", "快乐", "新年好")),
    "ack": re.compile(_words("好的", "可以", "没问题", "行", "对", "是的", "嗯", "ok", "yes", "确认", "同意", "係",
                             "啱", "妥", "当然", "没毛病", "sure")),
    "negation": re.compile(_words("不是", "不用", "不要", "不需要", "不行", "不对", "算了", "没有", "取消", "唔係",
                                  "唔使", "唔要", "no", "错了", "否", "冇", "别")),
    # A grievance about time: what should have happened has not (交房5年了还没办证, 逾期交房, 一拖再拖).
    "grievance": re.compile(
        r"至今|迟迟|一拖再拖|一推再推|遥遥无期|仍未|仍然没|还没(?:有)?(?:办|交|拿|领|下来|修|通|给)|都没(?:有)?(?:办|交|拿)|"
        r"逾期|延期|延迟|推迟|拖延|拖欠|推脱|推诿|互相推|无望|烂尾|停工|未动工|不动工|拒不|拒绝|不兑现|没兑现|违约|"
        r"一直(?:都)?(?:办|拿|领|修|交)?不|办不下来|办不了|拿不到|领不到|交不了房|质量(?:令人|让人)?(?:担忧|堪忧|太差|差)|"
        r"凭什么|到底|谁来管|怎么回事|什么道理|[\d几多]+年了?(?:还|都|仍|也)|(?:几|好几|\d+)个月了?(?:还|都|仍)"
    ),
    # A request to fix something (12345 records: 要求物业维修, 请尽快修复).
    "fix_request": re.compile(
        r"(?:要求|请求|请|麻烦|望|希望)[^,.!?]{0,8}(?:维修|修复|修理|修一下|更换|疏通|检修|抢修|整改|保修|加固|修补)"
    ),
    # The 12345 record register: neutral framing that says nothing about the act.
    "record": re.compile(r"来电人|来电称|市民来电|市民反映|诉求|咨询:|反映:"),
    "business": re.compile(_words(
        "物业", "小区", "业主", "楼", "单元", "电梯", "车位", "停车", "门禁", "装修", "交房", "收房", "保修", "维修",
        "水", "电", "燃气", "暖气", "空调", "卫生间", "厨房", "阳台", "卧室", "客厅", "楼道", "车库", "保安", "保洁",
        "垃圾", "开发商", "售楼", "管理费", "快递",
    )),
}


def cue_features(normalized_text: str) -> list[str]:
    """Names of the cues that fire in a message (``c:complaint``, ``c:question`` …); a cue that fires
    several times counts several times."""
    out: list[str] = []
    for name, pattern in CUES.items():
        n = len(pattern.findall(normalized_text))
        if n:
            out.extend(["c:" + name] * min(n, 3))
    return out
