"""Entities on tricky inputs, with offsets checked against the ORIGINAL text."""

from __future__ import annotations

from datetime import datetime

import pytest

from nlu import normalize
from nlu.entities import extract_entities
from nlu.types import Entity


def ents(text: str, now: datetime, name: str) -> list[Entity]:
    return [e for e in extract_entities(normalize(text), now) if e.entity == name]


def one(text: str, now: datetime, name: str) -> Entity:
    found = ents(text, now, name)
    assert found, f"no {name} in {text!r}"
    return found[0]


@pytest.mark.parametrize(
    ("text", "surface", "parts", "value"),
    [
        ("3栋2单元501卫生间漏水", "3栋2单元501", {"building": "3", "unit": "2", "room": "501"}, "3栋2单元501"),
        ("家住3-2-501，地漏返水", "3-2-501", {"building": "3", "unit": "2", "room": "501"}, "3栋2单元501"),
        ("我是三号楼二单元501室的业主", "三号楼二单元501室", {"building": "3", "unit": "2", "room": "501"}, "3栋2单元501"),
        ("三栋二单元五零一 阳台漏水", "三栋二单元五零一", {"building": "3", "unit": "2", "room": "501"}, "3栋2单元501"),
        ("12#1804 可视对讲坏了", "12#1804", {"building": "12", "room": "1804"}, "12栋1804"),
        ("8幢1203，电话13800000001", "8幢1203", {"building": "8", "room": "1203"}, "8栋1203"),
        ("B座1203入户门锁打不开", "B座1203", {"building": "B", "room": "1203"}, "B座1203"),
        ("ｂ座１２０３", "ｂ座１２０３", {"building": "B", "room": "1203"}, "B座1203"),
        ("十二栋三单元一八零四的房本", "十二栋三单元一八零四", {"building": "12", "unit": "3", "room": "1804"}, "12栋3单元1804"),
        ("12栋3-1804", "12栋3-1804", {"building": "12", "unit": "3", "room": "1804"}, "12栋3单元1804"),
        ("房号8-1203", "8-1203", {"building": "8", "room": "1203"}, "8栋1203"),
        ("3 栋 2 单元 501 室", "3 栋 2 单元 501 室", {"building": "3", "unit": "2", "room": "501"}, "3栋2单元501"),
        ("2单元501的热水器", "2单元501", {"unit": "2", "room": "501"}, "2单元501"),
        ("1203室楼上漏水", "1203室", {"room": "1203"}, "1203"),
        ("我是5号楼的", "5号楼", {"building": "5"}, "5栋"),
    ],
)
def test_house_forms(text: str, surface: str, parts: dict[str, str], value: str, now: datetime) -> None:
    house = one(text, now, "house")
    assert text[house.start:house.end] == surface
    assert house.extra == parts
    assert house.value == value


@pytest.mark.parametrize(
    "text",
    ["11月25号来修", "我家12楼", "25号下午", "等了3天", "电话13800000001", "11-25", "下午2-4点"],
)
def test_not_a_house(text: str, now: datetime) -> None:
    assert ents(text, now, "house") == []


@pytest.mark.parametrize(
    ("text", "surface", "value", "extra"),
    [
        ("3栋的电梯又坏了", "3栋的电梯", "elevator", {"building": "3"}),
        ("3号楼电梯困人", "3号楼电梯", "elevator", {"building": "3"}),
        ("车库B2的灯不亮", "车库B2", "garage", {"level": "B2"}),
        ("负二层车库漏水", "负二层车库", "garage", {"level": "B2"}),
        ("地下车库一直积水", "地下车库", "garage", {}),
        ("楼道灯不亮", "楼道", "corridor", {}),
        ("B座大堂的玻璃门碎了", "B座大堂", "lobby", {"building": "B"}),
        ("门岗的保安在睡觉", "门岗", "gate", {}),
        ("2栋1单元的楼道好脏", "2栋1单元的楼道", "corridor", {"building": "2", "unit": "1"}),
    ],
)
def test_public_locations(text: str, surface: str, value: str, extra: dict[str, str], now: datetime) -> None:
    loc = one(text, now, "location")
    assert text[loc.start:loc.end] == surface
    assert loc.value == value
    for key, expected in extra.items():
        assert loc.extra[key] == expected
    # a building named with a public spot is not also a house
    assert ents(text, now, "house") == []


@pytest.mark.parametrize(
    ("text", "surface", "value", "kind"),
    [
        ("电话13800000001", "13800000001", "13800000001", "mobile"),
        ("打我手机138 1234 5678", "138 1234 5678", "13812345678", "mobile"),
        ("联系方式：138-1234-5678。", "138-1234-5678", "13812345678", "mobile"),
        ("+86 13912345678", "+86 13912345678", "13912345678", "mobile"),
        ("电话幺三九一二三四五六七八", "幺三九一二三四五六七八", "13912345678", "mobile"),
        ("座机021-62345678转分机", "021-62345678", "021-62345678", "landline"),
        ("打0755 8888 6666", "0755 8888 6666", "0755-88886666", "landline"),
        ("物业座机是 62345678", "62345678", "62345678", "landline"),
        ("客服400-123-4567", "400-123-4567", "4001234567", "landline"),
    ],
)
def test_phones(text: str, surface: str, value: str, kind: str, now: datetime) -> None:
    phone = one(text, now, "phone")
    assert text[phone.start:phone.end] == surface
    assert phone.value == value
    assert phone.extra["kind"] == kind


def test_phone_is_not_a_house_and_order_numbers_are_not_phones(now: datetime) -> None:
    text = "8幢1203，电话13800000001，订单号12345678"
    assert [text[e.start:e.end] for e in ents(text, now, "phone")] == ["13800000001"]
    assert [text[e.start:e.end] for e in ents(text, now, "house")] == ["8幢1203"]


@pytest.mark.parametrize(
    ("text", "surface", "iso", "grain"),
    [
        ("明天下午来修", "明天下午", "2025-11-21T14:00:00+08:00", "part_of_day"),
        ("周六上午有人", "周六上午", "2025-11-22T09:00:00+08:00", "part_of_day"),
        ("下周一可以", "下周一", "2025-11-24", "day"),
        ("11月25号来修", "11月25号", "2025-11-25", "day"),
        ("十一月二十五号下午三点半", "十一月二十五号下午三点半", "2025-11-25T15:30:00+08:00", "minute"),
        ("明天下午三点来", "明天下午三点", "2025-11-21T15:00:00+08:00", "minute"),
        ("今晚7点以后", "今晚7点", "2025-11-20T19:00:00+08:00", "minute"),
        ("星期天早上", "星期天早上", "2025-11-23T08:00:00+08:00", "part_of_day"),
        ("这周五之前修好", "这周五之前", "2025-11-21", "day"),
        ("上周三就报修了", "上周三", "2025-11-12", "day"),
        ("25号来修", "25号", "2025-11-25", "day"),
        ("我11月3号就报修了", "11月3号", "2025-11-03", "day"),
        ("2小时后到", "2小时后", "2025-11-20T12:00:00+08:00", "minute"),
        ("后天10:30", "后天10:30", "2025-11-22T10:30:00+08:00", "minute"),
        ("3点左右", "3点左右", "2025-11-20T15:00:00+08:00", "minute"),
        ("2025年12月1日", "2025年12月1日", "2025-12-01", "day"),
    ],
)
def test_times(text: str, surface: str, iso: str, grain: str, now: datetime) -> None:
    t = one(text, now, "time")
    assert text[t.start:t.end] == surface
    assert t.value == iso
    assert t.extra["iso"] == iso
    assert t.extra["grain"] == grain


def test_time_range_and_part_of_day_span(now: datetime) -> None:
    t = one("下午2点到4点都行", now, "time")
    assert t.extra["from"] == "2025-11-20T14:00:00+08:00"
    assert t.extra["to"] == "2025-11-20T16:00:00+08:00"
    t = one("明天下午", now, "time")
    assert (t.extra["from"], t.extra["to"]) == ("2025-11-21T13:00:00+08:00", "2025-11-21T18:00:00+08:00")


def test_time_reference_is_shanghai(now: datetime) -> None:
    # 23:30 UTC on the 20th is already the 21st in Shanghai: 明天 is the 22nd.
    from datetime import UTC

    utc_late = datetime(2025, 11, 20, 23, 30, tzinfo=UTC)
    assert one("明天", utc_late, "time").value == "2025-11-22"


@pytest.mark.parametrize("text", ["早就报修了", "太晚了", "12号楼", "一点都不热", "有一点漏水"])
def test_not_a_time(text: str, now: datetime) -> None:
    assert ents(text, now, "time") == []


@pytest.mark.parametrize(
    ("text", "value", "keyword"),
    [
        ("卫生间漏水", "plumbing", "漏水"),
        ("阳台地漏返水", "drainage", "地漏"),
        ("马桶堵了", "drainage", "马桶"),
        ("家里跳闸了", "electrical", "跳闸"),
        ("插座漏电", "electrical", "插座"),
        ("燃气灶打不着火", "gas", "燃气灶"),
        ("入户门锁打不开", "door_window", "入户门"),
        ("客厅地砖空鼓", "wall_floor", "地砖"),
        ("暖气不热", "hvac", "暖气"),
        ("空调漏水", "hvac", "空调"),
        ("电梯门关不上", "elevator", "电梯"),
        ("我的lift坏了", "elevator", "lift"),
        ("可视对讲没画面", "intercom", "可视对讲"),
        ("单元门禁刷不开", "intercom", "单元门"),
        ("门禁卡刷不开", "intercom", "门禁卡"),
        ("楼道灯不亮", "public_facility", "楼道灯"),
        ("消防栓在漏水", "fire", "消防栓"),
        ("衛生間漏水", "plumbing", "漏水"),
    ],
)
def test_repair_category(text: str, value: str, keyword: str, now: datetime) -> None:
    cat = one(text, now, "repair_category")
    assert cat.value == value
    assert text[cat.start:cat.end] == keyword


@pytest.mark.parametrize(
    ("text", "value", "surface"),
    [
        ("厨房有煤气味", "gas_leak", "煤气味"),
        ("水管爆了到处是水", "flooding", "水管爆"),
        ("家里淹了", "flooding", "淹了"),
        ("配电箱有烧焦的味道", "fire", "烧焦"),
        ("插座冒火花了", "fire", "火花"),
        ("有人被困在电梯里", "lift_entrapment", "困在电梯"),
        ("外墙瓷砖掉下来了", "structural", "外墙瓷砖掉下来"),
        ("有人高空抛物", "structural", "高空抛物"),
    ],
)
def test_urgency(text: str, value: str, surface: str, now: datetime) -> None:
    urgent = one(text, now, "urgency")
    assert urgent.value == value
    assert surface in text[urgent.start:urgent.end]


@pytest.mark.parametrize("text", ["没有煤气味了", "不是漏电", "卫生间漏水", "门锁坏了"])
def test_no_urgency(text: str, now: datetime) -> None:
    assert ents(text, now, "urgency") == []


def test_severity_cues(now: datetime) -> None:
    text = "我要打12345，还要找媒体曝光，请律师起诉你们！业主群里大家一起维权，这都第3次了，你们又没来"
    found = {e.value: text[e.start:e.end] for e in ents(text, now, "severity")}
    assert found["hotline"] == "12345"
    assert found["media"] == "媒体"
    assert found["legal"] == "律师"
    assert found["group"] == "业主群"
    assert found["rights"] == "维权"
    assert found["repeated"] == "第3次"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("楼上半夜太吵了", "noise"),
        ("保安态度太差", "staff_attitude"),
        ("报修三天都没人来", "no_show"),
        ("物业费凭什么涨价", "fees"),
        ("我的车位被人占了", "parking"),
        ("垃圾好几天没人清", "hygiene"),
        ("家里被盗了，监控是坏的", "security"),
        ("销售承诺的学校没了", "sales_promise"),
        ("房子质量太差", "construction_quality"),
    ],
)
def test_complaint_category(text: str, value: str, now: datetime) -> None:
    assert one(text, now, "complaint_category").value == value


def test_bathroom_is_not_hygiene(now: datetime) -> None:
    assert ents("卫生间漏水", now, "complaint_category") == []


@pytest.mark.parametrize(
    ("text", "value", "surface"),
    [
        ("房产证办好了吗", "progress", "办好了"),
        ("领房产证要带什么材料", "documents", "带什么"),
        ("房产证契税交多少", "taxes", "契税"),
        ("不动产权证去哪领", "collection", "去哪领"),
        ("房产证可以让我老婆代领吗", "proxy", "代领"),
        ("房产证能邮寄吗", "mail", "邮寄"),
        ("房产证上想加名", "name_change", "加名"),
        ("按揭的房子房产证在银行吗", "mortgage", "按揭"),
    ],
)
def test_certificate_topic(text: str, value: str, surface: str, now: datetime) -> None:
    topic = one(text, now, "certificate_topic")
    assert topic.value == value
    assert text[topic.start:topic.end] == surface


def test_certificate_topic_needs_certificate_context(now: datetime) -> None:
    assert ents("快递放哪里", now, "certificate_topic") == []


def test_everything_in_one_run_on_message(now: datetime) -> None:
    text = "喂你好我是三栋二单元五零一的业主嗯那个卫生间漏水漏到楼下了电话幺三八零零零零零零零一明天下午在家"
    found = {e.entity: e for e in extract_entities(normalize(text), now)}
    assert text[found["house"].start:found["house"].end] == "三栋二单元五零一"
    assert text[found["phone"].start:found["phone"].end] == "幺三八零零零零零零零一"
    assert found["phone"].value == "13800000001"
    assert text[found["time"].start:found["time"].end] == "明天下午"
    assert found["repair_category"].value == "plumbing"
    assert found["urgency"].value == "flooding"
