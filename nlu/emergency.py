"""Emergency detection: gas, flooding, fire, a person trapped in a lift, structural or falling danger.

This module owns the decision "this message reports a danger happening now", which routes an owner to
safety advice and the duty phone. It is independent of the intent classifier (an emergency written as a
question, a complaint or a thank-you is still an emergency) and is built for recall first: missing an
emergency is the worst error the bot can make, a false alarm is cheap.

Method: concept lexicons combined by proximity rules, on the normalised text (Simplified, lower case,
ASCII punctuation; see :mod:`nlu.normalize`):

* each kind has *anchors* (a fuel word, a pipe, a lift …) and *events* (leak/smell/hiss, burst, trapped …);
  a rule fires when an anchor and an event occur within a few characters of each other in the same
  sentence (a voice run-on without punctuation is one long sentence, so proximity, not punctuation,
  carries the meaning), or when a self-sufficient phrase occurs (着火, 水管爆了, 被困电梯);
* lexicons are written as character classes over the variants owners type: homophones (汽/气, 媒气,
  泄露/泄漏, 然气), Traditional forms (normalised before), Cantonese (𨋢/升降机, 困咗喺, 水浸, 水喉爆咗,
  火烛, 冧咗), English words (gas, lift, stuck, fire, smoke, burst, flood) and voice-input run-ons;
* a hit is dropped when it is negated (没有漏气, 没闻到煤气味, 里面没人), hypothetical or preventive
  (如果闻到煤气味, 电梯困人应急演练, 担心漏气), a device or a fee rather than an event (燃气泄漏报警器,
  燃气费), or told as history or habit with nothing saying it is happening now (上个月电梯困人的事,
  电梯经常困人). A present marker (现在, 刚刚, 还在, 又, 救命, 快来 …) overrides history and habit.

Why rules and not a trained model: the classes are few and sharply defined by the domain (DOMAIN.md),
the cost of a miss is asymmetric, and a desk needs to know *why* something alarmed (the matched words
are reported in ``extra.keyword``). A learned model of the same quality would need thousands of real
emergency messages we do not have. See docs/NLU.md for the measured recall and false-alarm rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["EMERGENCY_KINDS", "Emergency", "detect_emergencies"]

EMERGENCY_KINDS: tuple[str, ...] = ("gas_leak", "flooding", "fire", "lift_entrapment", "structural")


@dataclass(frozen=True, slots=True)
class Emergency:
    kind: str      # one of EMERGENCY_KINDS
    detail: str    # what was recognised: leak, smell, dizziness, burst_pipe, water_everywhere, flame …
    start: int     # offsets into the normalised text
    end: int
    keyword: str


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# --- shared context --------------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"[.!?;\n]")
# Negation right before the event (没有漏气, 没闻到煤气味, 并未起火); 是不是/会不会/有没有 are doubts, not negations.
_NEGATION = _rx(r"(?:没有|没|無|无|未|并非|不是|不再|已经不|已不|不会|别|唔係|冇|(?<![a-z])(?:no|not|never)(?![a-z]))[^,.!?]{0,3}$")
_DOUBT = _rx(r"(?:是不是|会不会|有没有|是否|好像|似乎|怀疑)[^,.!?]{0,3}$")
_HYPOTHETICAL = _rx(
    r"(?:如果|假如|万一|要是|一旦|倘若|假设|若是|遇到|遇上|发生|预防|防止|以防|避免|担心|害怕|怕|应急|预案|演练|演习|"
    r"培训|宣传|讲座|知识|安全教育|注意事项|检查|安检|检测|巡检|年检|排查|隐患|保险|(?<![a-z])if(?![a-z])|in case)"
)
_CLAUSE_END = re.compile(r"[,.!?;\n]")
_HISTORY = _rx(
    r"(?:上次|上回|上个月|上星期|上周|去年|前年|前些天|前段时间|以前|之前|曾经|那次|那回|当时|那天|那时|"
    r"\d+年前|几年前|几个月前|有一次|有次|经常|老是|总是|动不动|隔三差五|三天两头|时不时|多次|好几次|几次|屡次|"
    r"频繁|每次|常常|last (?:week|month|year)|(?<![a-z])(?:often|always)(?![a-z]))"
)
_PRESENT = _rx(
    r"(?:(?<!到)现在|正在|此刻|这会|目前|还在|仍然|依然|又|刚刚|刚才|刚|马上|赶紧|赶快|快来|快点|速来|快派|尽快|立刻|"
    r"立即|救命|救救|急|今天|今晚|今早|今天早上|此时|越来越|一直在|怎么办|(?<![a-z])(?:help|now|urgent)(?![a-z])|!)"
)
_PRESENT_STRONG = _rx(r"(?:(?<!到)现在|正在|此刻|这会|刚刚|刚才|还在|救命|救救|快来|速来|赶紧|赶快|马上派|right now|help)")
_RESOLVED = _rx(r"(?:(?:现在|目前|已经)?(?:没事了|好了|正常了|恢复正常|恢复了)|就好了|就没了|又好了|才有人来|才被救|被救出|救出来|才出来|才放出来|已经修好|已修好|修好了|已经处理好|处理好了|已经解决|解决了|已经没事|没事了|已经好了|排除了)")
_INFO_AFTER = _rx(r"^[人的]{0,2}(?:应急|演练|演习|预案|培训|流程|处理办法|知识|须知|规定|标准|怎么预防|如何预防)")
_NARRATIVE_AFTER = _rx(r"^[^,.!?]{0,3}(?:[\d一二两三几好多]+次|好几回|的事|这事|那事|事件|事故|的情况|那次|那回|的问题|那个事|的赔偿|赔偿)")
_DEVICE_AFTER = _rx(r"^[^,.!?]{0,2}(?:报警器|报警装置|检测仪|探测器|传感器|切断阀|自闭阀|保护器|保险|险|费|detector)")


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: str
    detail: str
    event: re.Pattern[str]                 # the event words (the span reported)
    anchor: re.Pattern[str] | None = None  # must occur within ``window`` characters, same sentence
    window: int = 10
    veto_near: re.Pattern[str] | None = None  # words that, within ``window``, mean a near miss
    anchor_inside: bool = False  # the anchor may lie inside the event's own words (我被卡在电梯里)
    also: re.Pattern[str] | None = None  # a second word that must occur in the same window
    clause: bool = False  # anchor and event in the same clause (no comma between)


# --- lexicons --------------------------------------------------------------------------------------
# Fuel gas (homophones 汽/炁, 媒气, 然气 not inside 突然/虽然/当然 …), Cantonese 煤气 is the same word.
_GAS = r"(?:(?:煤|媒|燃|天然|液化|石油|沼)[气汽炁]|(?<![突虽当自竟果仍居依显固偶必纯忽既俨])然[气汽]|瓦斯|气罐|气瓶|液化罐|gas)"
_GAS_APPLIANCE = r"(?:燃气灶|煤气灶|灶台|灶具|炉灶|灶头|热水器|壁挂炉|燃气表|气表|燃气管|煤气管|气管|软管|胶管|阀门|总阀|气阀|管道)"
_GAS_EVENT = r"(?:泄漏|泄露|泄了|泄|洩|漏气|漏汽|漏|跑气|冒气|窜气|味|臭|嘶嘶|丝丝|咝咝|呲呲|滋滋|嗞嗞|smell|leak|stink|刺鼻|冲鼻)"
_GAS_ONLY_EVENT = r"(?:漏气|漏汽|跑气|窜气|煤气味|燃气味|臭鸡蛋味|臭鸡蛋|一股味|嘶嘶|丝丝响|咝咝|呲呲|滋滋|嗞嗞)"
_DIZZY = r"(?:头晕|头昏|头痛|头疼|晕乎乎|晕倒|晕过去|昏倒|昏迷|昏过去|恶心想吐|想吐|一氧化碳|中毒|dizzy)"
_NOT_GAS_LEAK = r"(?:轮胎|车胎|胎|自行车|电动车|气球|充气|气垫|打气|球|窗户?|门缝|门窗|空调|冰箱|高压锅|暖气|篮球|足球|床|游泳圈)"

_PIPE = r"(?:热水器|水箱|储水罐|净水器|(?<!排)(?<!下)水管|管道|管子|水喉|喉管|供水管|进水管|主管|立管|暖气管|暖气片|地暖管|消防管|喷淋管|热水管|冷水管|阀门|总阀|角阀|水表|龙头|pipe|pipes)"
_BURST = r"(?:爆|崩|裂|破了|破裂|断了|断裂|脱了|脱开|脱落|冲开|喷(?!淋|头|漆|涂|泉|雾)|burst|broke|bursting)"
_FLOOD_STRONG = (
    r"(?:灌下来|往下灌|灌进屋|水漫|漫水|漫出来|漫进|漫到|淹了|淹到|淹没|被淹|水淹|淹咗|水浸|浸咗|浸晒|倒灌|灌进来|灌进|成河|汪洋|水灾|"
    r"flood|flooding|flooded|water everywhere)"
)
_FLOOD_EVERYWHERE = (
    r"(?:(?:满|一|整)(?:屋|地|层|间|楼道)子?(?:的)?水|成地(?:都)?(?:係|系|是)?水|"
    r"(?:地板|家具|柜子|沙发|床|车)[^,.!?]{0,3}泡(?:起来|坏|烂|在水)|到处(?:都)?是水|满地(?:都)?是?水|一地(?:的)?水|满屋(?:子)?(?:都是)?水|全屋(?:都是)?水|全是水|都是水|一屋子水|"
    r"成屋(?:都)?系?水|全部系水|水(?:已经|都)?(?:没过|漫过|淹过|到了?)(?:脚|脚踝|脚面|膝盖|小腿|门槛)|"
    r"水深(?:\d+|几|十几|好几)|积水(?:很深|好深|没过|一尺|\d+)|(?:像|跟|如同|好像|似)[^,.!?]{0,2}(?:下|落)?(?:大|暴)?雨|"
    r"下雨一样|瀑布|水帘|到处(?:都)?(?:在)?(?:流|淌|冒|喷)水?|水(?:流|淌|漏|漫|喷)(?:了|得)?(?:一|满)地|"
    r"(?:流|淌|漏|漫)了?(?:一|满)地(?:的)?水?)"
    r"(?![泥果平准晶杯稻彩费电])"
)
_WATER = r"(?:水|water)"
_GUSH = r"(?:止不住|关不住|停不下|哗哗|哗啦|狂喷|狂流|狂冒|喷出|喷水|喷得|往外喷|往外冒|往外涌|涌出|涌进|直流|呼呼|飙|gushing|pouring)"
_WET_PLACE = (
    r"(?:家里|家中|屋里|屋内|房间|客厅|卧室|厨房|卫生间|整个|全屋|车库|地库|地下室|电梯|楼道|大堂|配电|电箱|电表箱|"
    r"楼下|一楼|单元|商铺|仓库|地下)"
)
_INTO = (
    r"(?:进(?:了)?(?:好多|很多|大量|不少)?水(?!管|阀|口|龙头|软管)|(?<![灯气])泡(?:起来|坏|了|水|在水|着)|浸泡|积水|灌水|水灌|涌水)"
)
"""Water getting in. 灯泡坏了 (a bulb) and 气泡 are not water."""
_LEAK_SEVERE = (
    # How much water, not how cross the owner is: 越来越严重 is an escalating leak for the repair desk.
    r"(?:漏水|渗水|滴水|往下流|往下淌|往下滴|往下漏|流水|淌水|漏得)[^,.!?]{0,8}(?:像下雨|止不住|"
    r"哗哗|流到|淌到|漏到楼下|到处|一地|满地|顺着[^,.!?]{0,4}(?:灯|电线|插座|开关|电箱|电表))"
    r"|(?:灯|电线|插座|开关|电箱|电表|配电箱)[^,.!?]{0,4}(?:里|上)?[^,.!?]{0,2}(?:漏水|进水|滴水|往下滴水|流水)"
)

_FLAME = (
    r"(?:(?:锅|油|灶台|房子|屋|车|衣服|窗帘|沙发|床|被子|电视|冰箱|电线|线|柜子|阳台)着了|"
    r"在烧(?!水|饭|菜|烤|香|纸|开|鸡|鹅|肉|秸|钱)|着火|著火|起火|失火|自燃|燃了|火灾|烧起来|烧着了|烧着|燃起来|燃烧|火烧|冒了?火(?!花|星)|火苗|火光|明火|大火|火势|火烛|"
    r"爆炸|爆燃|闪爆|烧了起来|火着|on fire|a fire|fire(?! ?(?:alarm|door|exit|extinguisher|drill|escape|safety|hydrant)))"
)
_NOT_FLAME_BEFORE = _rx(r"(?:打不|点不|打|点|着不|打得|打不着|不|没|防|灭|救|消防|预防)$")
_SMOKE_STRONG = (
    r"(?:冒烟|冒黑烟|冒白烟|冒青烟|浓烟|黑烟|烟很大|烟好大|好多烟|很多烟|全是烟|都是烟|满是烟|一屋子烟|一屋烟|烟雾弥漫|"
    r"烟雾很大|大量烟|呛得|烟冒|smoke|smoking|smoky)"
)
_BURN_SMELL = (
    r"(?:烧焦|焦味|焦糊|糊味|焦臭|糊臭|胶皮味|塑料味|橡胶味|电线味|烧[^,.!?]{0,4}味|焦煳|煳味|burning smell|smell burning|"
    r"smells burnt|burning|burnt smell)"
)
_SMOKE_SMELL = r"(?:烟味|烟气)"
_SMOKE_SMELL_STRONG = r"(?:很浓|好浓|浓|呛|刺鼻|越来越|烧|焦|糊|电|线|插座|配电|不知道哪|哪里来|着火|火)"
_SMOKER = r"(?:抽烟|吸烟|烟头|香烟|二手烟|烟民|抽的|烟瘾|烟灰|抽了|抽着|点烟|吸的|烟蒂|旱烟|电子烟|烧烤|做饭|炒菜|油烟)"
_SPARK = r"(?:火花|火星|电火花|电弧|打火花|冒火花|噼里啪啦|噼啪|啪啪|spark|sparks|sparking)"
_ELECTRIC = r"(?:插线板|接线板|拖线板|插苏|插蘇|电掣|掣|插座|插头|电线|线路|开关|电箱|配电箱|电表|电表箱|配电|电闸|空开|电器|电路|充电|电瓶|电动车|电源|排插|插排|灯|socket|wire|plug|outlet)"
_ELEC_BURN = r"(?:烧咗|燶|烧着|烧了|烧坏|烧黑|烧化|熔化|化了|发黑|焦了|烫得|烫手|打火|跳火|短路|冒烟)"
_SHOCK = r"(?:触电|电到人|被电到|被电了|电了一下|电击|电伤|电倒|electrocuted)"

_LIFT = r"(?:电梯|电[𨋢䢂]|[𨋢䢂]|升降梯|升降机|轿厢|客梯|货梯|lift|elevator|梯)"
_TRAP_STRONG = (
    r"(?:(?<!犯)困(?!难|扰|惑|境|倦|意|了吧)|夹(?:到|住|着)?(?:人|手|腿|脚|孩子|小孩|老人)|把[^,.!?]{0,4}关|关(?:了|咗)?(?:在)?(?:里|入面)|被关|关在|关住|关着|关咗|锁在|锁住|被锁|夹住|夹在|出不来|出不去|出唔到|出唔嚟|"
    r"trapped|stuck in|stuck inside|get out)"
)
_TRAP_WEAK = (
    r"(?:卡住|卡在|卡了|卡咗|停住|停了|停在|停咗|不动|唔郁|没反应|打不开|开不了|开唔到|掉下|下坠|急坠|坠落|溜梯|冲顶|蹲底|"
    r"坏了|坏咗|故障|黑了|停电|断电|stuck|stopped|broke|broken|not moving)"
)
_INSIDE_PERSON = (
    r"(?:(?:里面|里头|里边|里|内|入面|入边|中)[^,.!?]{0,3}(?:有人|有个|有位|有小孩|有老人|有孩子|还有人|有我|有[一二两三四五六\d]个)|"
    r"(?:我|人|孩子|小孩|小朋友|老人|老婆|老公|我妈|我爸|妈妈|爸爸|女儿|儿子|宝宝|我们|我哋|佢|他|她|邻居|住户|业主|"
    r"someone|people|(?<![a-z])(?:my|me|i'?m|i am|we are|we're|with me)(?![a-z]))[^,.!?]{0,10}(?:在|喺|困|关|卡)[^,.!?]{0,6}(?:里|内|入面|度|中|inside|in)|"
    r"在(?:电梯|[𨋢䢂])?(?:里|里面|里头|内)|喺(?:电梯|[𨋢䢂])?(?:入面|度|里)|inside|in it)"
)
_NO_ONE_INSIDE = _rx(r"(?:(?:里面|里头|里边|内)(?:没人|没有人|无人|冇人)|(?:没人|没有人|无人|冇人)(?:在里|被困|困|被关)|"
                     r"no one inside|nobody inside|empty|空梯)")

_STRUCT_OBJ = (
    r"(?:外墙|墙砖|外墙砖|瓷砖|玻璃|幕墙|窗户|窗扇|窗框|窗|空调外机|外机|吊顶|天花板|天花|顶棚|阳台|楼板|墙体|承重墙|墙|"
    r"楼梯|栏杆|护栏|扶手|雨棚|遮阳棚|广告牌|招牌|树|树枝|大树|石材|石板|构件|钢架|脚手架|屋顶|屋面|女儿墙|楼|房子|房屋|"
    r"地面|路面|地基|挡土墙|围墙|花盆|吊灯|灯|水泥块|混凝土|砖|梁|柱|井盖|车库顶|顶板|ceiling|wall|window|glass|balcony|tree|"
    r"facade|cladding|tiles?|bricks?|concrete|sign|signboard|billboard|roof)"
)
_TRIVIAL_OBJ = r"(?:执手|把手|滑轨|门锁|锁舌|排水管|冷凝水管|水管|管子|树叶|落叶|叶子|果子|涂料|涂层|油漆|真石漆|饰面|墙皮|腻子|墙漆|漆|壁纸|墙纸|踢脚线|墙面起皮|一点灰|粉)"
_FALL_STRONG = (
    r"(?:(?:刮|吹|压|折)断|往下掉|往下落|在掉|砸(?!门|墙|东西|钱)|(?:要|快|会)倒(?!灌|水|垃圾|车|掉|闭)|倒了|(?:随时|马上|快要?|要|会)(?:会|要)?掉|倒下|倒在|掉[^,.!?]{0,2}(?:水泥|渣|块|砖|石头)|坍塌|倒塌|塌了|塌下|塌陷|要塌|快塌|塌咗|垮了|垮塌|冧|坠落|坠下|掉下来|掉下去|跌落|跌咗落|"
    r"摇摇欲坠|快掉|要掉|马上要掉|掉了下来|断裂|倾斜|下沉|collapse|collapsed|collapsing|fell|falling|fall down)"
)
_FALL_WEAK = r"(?:脱落|松动|松脱|松了|掉落|掉了|晃动|摇晃|晃|摇|鼓起来|loose|wobbl)"
_HIGH_OBJ = (
    r"(?:外墙|幕墙|玻璃|窗户|窗扇|窗框|空调外机|外机|雨棚|遮阳棚|广告牌|招牌|阳台|栏杆|护栏|吊顶|天花板|天花|吊灯|高空|楼上|"
    r"树(?!叶|苗|坑|皮)|树枝|大树|女儿墙|屋顶|楼顶|天台|石材|顶板|车库顶|墙体|承重墙|梁|柱|楼梯|楼房|楼体|整栋楼|大楼|"
    r"balcony|railing|window|glass|ceiling|"
    r"facade|tile|tiles|tree|sign)"
)
_HARM = (
    r"(?:砸到人|砸伤|砸中|差点砸|险些砸|砸在[^,.!?]{0,4}(?:人|车|头|身上)|砸坏[^,.!?]{0,3}车|砸到[^,.!?]{0,3}(?:车|头|孩子|老人|"
    r"小孩|路人)|被砸|高空坠物)"
)
_CRACK = r"(?:裂缝|裂纹|裂痕|开裂|裂开|crack|cracks|cracked)"
_CRACK_SERIOUS = (
    r"(?:越来越大|越来越宽|越来越多|越来越长|越来越明显|变宽|变大|在变|很宽|好宽|很大|很长|贯穿|一指宽|手指|伸进|塞进|[\d一二两三几]+\s?(?:cm|厘米|公分|毫米|mm)|"
    r"蔓延|要塌|危房|倾斜|下沉|承重|梁|柱|楼板|咔咔|响声|异响|掉渣|掉块|spreading|getting bigger)"
)
_THROW = r"(?:高空抛物|往下扔|往楼下扔|扔下来|丢下来|抛下来|掷下来)"

_RULES: tuple[_Rule, ...] = (
    # gas
    _Rule("gas_leak", "leak", _rx(_GAS_EVENT), _rx(_GAS), 14, _rx(r"(?:费|开户|过户|缴|充值|公司|卡|价|账单|改管|改造|安装|开通|点火|报装)")),
    _Rule("gas_leak", "leak", _rx(_GAS_ONLY_EVENT), None, 0,
          _rx(_NOT_GAS_LEAK + r"|地漏|下水|马桶|化粪|污水|排水|垃圾|臭水")),
    _Rule("gas_leak", "damaged_pipe", _rx(r"(?:打穿|钻穿|钻破|打破|挖断|挖破|弄破|弄断|碰断|撞断|压断|破了|断了|裂了|裂开|被钻|打断|割断)"),
          _rx(r"(?:燃气管|煤气管|天然气管|气管|燃气管道|煤气管道|天然气管道|燃气表|gas pipe)"), 8,
          _rx(r"(?:水管|暖气|空调|排气|气管炎|网线)")),
    _Rule("gas_leak", "leak", _rx(_GAS_EVENT), _rx(_GAS_APPLIANCE), 6,
          _rx(r"(?:漏水|滴水|水|漏电|费|安装|油烟|排烟|烟道|烟管|漏油)")),
    _Rule("gas_leak", "dizziness", _rx(_DIZZY), _rx(_GAS + "|" + _GAS_APPLIANCE + r"|味|气体|怪味|闻"), 15,
          _rx(r"(?:气得|气死|生气|感冒|发烧|低血糖|血压|晕车|怀孕|吵|噪音|装修|油漆|甲醛)")),
    _Rule("gas_leak", "leak", _rx(r"(?:gas leak|leaking gas|smell (?:of )?gas|gas smell|smells like gas|gas leaking)"), None, 0),
    # flooding
    _Rule("flooding", "burst_pipe", _rx(_BURST), _rx(_PIPE), 6, _rx(r"(?:裂缝|细缝|一点点|有点|轻微|微微|保温|外皮|漆)")),
    _Rule("flooding", "burst_pipe", _rx(r"(?:爆管|爆水管|爆水喉|水管爆|管爆|burst pipe|pipe burst)"), None, 0),
    _Rule("flooding", "flood", _rx(_FLOOD_STRONG), None, 0,
          _rx(r"(?:手机|淹死|雨季|下雨天|防汛|排涝|臭|烟|气味|排风|风口|油烟)")),
    # A drip that wets a floor (空调外机滴水 滴得阳台全是水) is a repair for the desk, not a flood.
    _Rule("flooding", "water_everywhere", _rx(_FLOOD_EVERYWHERE), None, 0,
          _rx(r"(?:路上|马路|路面|小区道路|草坪|花园|绿化|滴得|滴到|滴水|冷凝水|空调外机|空调水)")),
    _Rule("flooding", "gushing", _rx(_GUSH), _rx(_WATER), 6,
          _rx(r"(?:水费|水压小|出水小|没水|停水|水箱|冲水|马桶|喷泉|洒水|浇水|水枪)")),
    _Rule("flooding", "water_in", _rx(_INTO), _rx(_WET_PLACE), 8,
          _rx(r"(?:手机|鞋|泡茶|泡面|泡脚|泡澡|泡泡|雨后|下雨后|路上|路面|绿化|花园|草坪|阳台地漏)")),
    _Rule("flooding", "severe_leak", _rx(_LEAK_SEVERE), None, 0),
    _Rule("flooding", "water_in_electrics", _rx(r"(?:漏水|渗水|进水|滴水|流水|淌水|滴下|流下|往下流|往下滴|往下淌|冒水|有水)"),
          _rx(r"(?:灯|电线|插座|开关|电箱|电表箱|配电箱|电闸|socket|light)"), 6,
          _rx(r"(?:水电费|水费|电费|热水器|饮水机|开关水|水龙头开关|水阀开关|灯不亮|灯坏)")),
    # fire
    _Rule("fire", "flame", _rx(_FLAME), None, 0,
          _rx(r"(?:隐患|防火|消防演|灭火器|火警电话|火警号码|119是|火锅|火车|烧烤|烧香|篝火|烟花|生日|蜡烛|火灾险|点火枪|打火机|"
              r"点不着|打不着|着不了|打不了火|点火|煤气灶打|灶打)")),
    _Rule("fire", "smoke", _rx(_SMOKE_STRONG), None, 0,
          _rx(r"(?:抽烟|吸烟|烟头|香烟|二手烟|烧烤|油烟机|油烟|做饭|炒菜|烟花|爆竹|鞭炮|熏|蚊香|烟囱|烟道|smoking area|no smoking|detector|alarm)")),
    _Rule("fire", "burning_smell", _rx(_BURN_SMELL), None, 0,
          _rx(r"(?:烧烤|烤肉|烧香|烧纸|烧秸秆|烧垃圾|焚烧|烧饭|烧菜|烧水|烧开|发烧|烧卖|烧鸡|烧鹅|红烧|烧饼|烧酒|烧钱|燃烧瓶)")),
    _Rule("fire", "smoke_smell", _rx(_SMOKE_SMELL), _rx(_SMOKE_SMELL_STRONG), 8, _rx(_SMOKER)),
    _Rule("fire", "smoke", _rx(r"(?:有烟|出烟|起烟|烟出来|仲有烟|冒着烟|好多烟)"), _rx(_ELECTRIC), 6,
          _rx(_SMOKER + r"|烟感|烟雾报警|烟机|抽油烟")),
    _Rule("fire", "sparks", _rx(_SPARK), None, 0,
          _rx(r"(?:火星人|火星文|火星探|打火机|烟花|电焊|焊接|工地|点火|打火|燃气灶|煤气灶|灶|鞭炮|敲|拍)")),
    _Rule("fire", "electrical_burning", _rx(_ELEC_BURN), _rx(_ELECTRIC), 6,
          _rx(r"(?:灶|打火不|燃气|煤气|热水器打火|点火|烧坏了?[^,.!?]{0,4}(?:换|修|保修)|保险丝|灯泡|灯管)")),
    _Rule("fire", "electric_shock", _rx(_SHOCK), None, 0, _rx(r"(?:防触电|小心触电|谨防|触电保护)")),
    # lift entrapment
    _Rule("lift_entrapment", "trapped", _rx(_TRAP_STRONG), _rx(_LIFT), 15,
          _rx(r"(?:楼梯|梯子|扶梯|梯形|阶梯|梯队|人梯|楼梯间|车位|车库门|汽车|车里|车内|困在家|困家|困在屋)")),
    _Rule("lift_entrapment", "trapped", _rx(_INSIDE_PERSON), _rx(_LIFT), 15,
          _rx(r"(?:抽烟|吸烟|广告|小广告|吵|尿|屎|吐痰|宠物|狗|贴|垃圾|臭|刻|涂鸦|打电话|装修|搬家)"), anchor_inside=True,
          also=_rx(_TRAP_WEAK + "|" + _TRAP_STRONG)),
    _Rule("lift_entrapment", "free_fall", _rx(r"(?:下坠|急坠|坠落|溜梯|冲顶|蹲底|掉下去|往下掉|直往下|free fall)"), _rx(_LIFT), 10),
    # structural and falling danger
    _Rule("structural", "falling", _rx(_FALL_STRONG), _rx(_STRUCT_OBJ), 10,
          _rx(_TRIVIAL_OBJ + r"|(?:手机|钥匙|东西|衣服|书|杯子|价|股|分数|信号|网|头发|眼泪|股票|房价)")),
    _Rule("structural", "falling", _rx(_FALL_WEAK), _rx(_HIGH_OBJ), 8,
          _rx(_TRIVIAL_OBJ + r"|(?:一地|满地|没人扫|清扫|打扫|门把手|把手|开关|插座面板|窗帘|纱窗|密封条|胶条|门吸|合页|螺丝|漆|"
              r"滑轮|滑轨|锁扣|插销|限位器|"
              r"窗户?把手|晾衣|衣架)")),
    _Rule("structural", "harm", _rx(_HARM), None, 0, _rx(r"(?:砸门|砸东西)")),
    _Rule("structural", "serious_crack", _rx(_CRACK_SERIOUS), _rx(_CRACK), 10, clause=True, veto_near=_rx(
          r"(?:发丝|细小|细细|一点点|小裂|轻微|微小|头发丝|细纹|美缝|玻璃胶|腻子|墙漆|乳胶漆|地板|瓷砖缝|手机)")),
    _Rule("structural", "throwing", _rx(_THROW), _rx(r"(?:砸|差点|险些|刚刚|刚才|刚|现在|正在|又|伤|头上|车|孩子|小孩|老人|人)"), 12,
          _rx(r"(?:管理|宣传|整治|治理|监控|摄像头|安装|呼吁|倡议|建议|罚)")),
)

def _sentence_bounds(text: str, pos: int) -> tuple[int, int]:
    start = max((m.end() for m in _SENTENCE_END.finditer(text, 0, pos)), default=0)
    end_m = _SENTENCE_END.search(text, pos)
    return start, (end_m.start() if end_m else len(text))


def _distance(text: str, a: int, b: int) -> float:
    """Characters between two positions; a Latin letter or a space counts a quarter (an English word is
    about one Chinese character's worth of meaning)."""
    if b <= a:
        return 0.0
    gap = text[a:b]
    latin = sum(1 for ch in gap if ch.isascii() and (ch.isalpha() or ch == " "))
    return (len(gap) - latin) + latin / 4


def _suppressed(text: str, start: int, end: int, s_start: int, s_end: int) -> bool:
    """Negated, hypothetical, a device, information about a kind of event, or history/habit without
    anything saying it happens now."""
    before = text[max(s_start, start - 8):start]
    if _NEGATION.search(text[max(s_start, start - 5):start]) and not _DOUBT.search(before):
        return True
    after = text[end:min(s_end, end + 8)]
    if _DEVICE_AFTER.search(after):
        return True
    if _INFO_AFTER.search(after) or _NARRATIVE_AFTER.search(after):
        return not _PRESENT_STRONG.search(text)
    sentence_before = text[max(s_start, start - 14):start]
    if _HYPOTHETICAL.search(sentence_before):
        return not _PRESENT_STRONG.search(text)
    if _HISTORY.search(sentence_before):
        # A present marker anywhere in the message says the danger is happening now.
        return not _PRESENT.search(text)
    after_all = text[end:]
    if _RESOLVED.search(after_all) and not _PRESENT.search(_RESOLVED.sub("", after_all)):
        return True
    return False


def _rule_hits(text: str, rule: _Rule) -> list[Emergency]:
    hits: list[Emergency] = []
    for m in rule.event.finditer(text):
        a, z = m.span()
        if a == z:
            continue
        s_start, s_end = _sentence_bounds(text, a)
        span_a, span_z = a, z
        if rule.anchor is not None:
            if rule.clause:
                c_start = max((cm.end() for cm in _CLAUSE_END.finditer(text, s_start, a)), default=s_start)
                c_end_m = _CLAUSE_END.search(text, z, s_end)
                s_start, s_end = c_start, (c_end_m.start() if c_end_m else s_end)
            reach = rule.window * 5 + 4  # wide enough for Latin words, which count a quarter
            found = None
            for am in rule.anchor.finditer(text, max(s_start, a - reach), min(s_end, z + reach)):
                if am.end() == am.start() or (not rule.anchor_inside and am.start() >= a and am.end() <= z):
                    continue
                gap = _distance(text, am.end(), a) if am.end() <= a else _distance(text, z, am.start())
                if gap <= rule.window:
                    found = am
                    break
            if found is None:
                continue
            span_a, span_z = min(a, found.start()), max(z, found.end())
            if rule.also is not None and not rule.also.search(text, max(s_start, span_a - rule.window),
                                                               min(s_end, span_z + rule.window)):
                continue
        if rule.veto_near is not None:
            w = max(rule.window, 6)
            if rule.veto_near.search(text, max(s_start, span_a - w), min(s_end, span_z + w)):
                continue
        if rule.kind == "fire" and rule.detail == "flame" and _NOT_FLAME_BEFORE.search(text, max(0, a - 3), a):
            continue
        if rule.kind == "lift_entrapment" and _NO_ONE_INSIDE.search(text, max(s_start, span_a - 6),
                                                                      min(s_end, span_z + 6)):
            continue
        if _suppressed(text, span_a, span_z, s_start, s_end) or _suppressed(text, a, z, s_start, s_end):
            continue
        hits.append(Emergency(rule.kind, rule.detail, span_a, span_z, text[span_a:span_z]))
    return hits


# Every rule starts from its event words, and most messages contain none of any rule: one scan for any
# of them spares those messages thirty scans, one per rule.
_ANY_EVENT = re.compile("|".join(f"(?:{rule.event.pattern})" for rule in _RULES))


def detect_emergencies(text: str) -> list[Emergency]:
    """Emergencies in a normalised message: one per kind (its first mention), in text order."""
    if not _ANY_EVENT.search(text):
        return []
    first: dict[str, Emergency] = {}
    for rule in _RULES:
        for hit in _rule_hits(text, rule):
            best = first.get(hit.kind)
            if best is None or hit.start < best.start:
                first[hit.kind] = hit
            break  # the first hit of a rule is enough
    return sorted(first.values(), key=lambda e: e.start)
