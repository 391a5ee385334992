"""The flows' dense logic on its own: turn-level cues, the visit-time validator, warranty verdicts,
call-back promises, and the router's registration rules (the real NLU parses every owner line)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from actions.flows import build_router
from actions.flows.base import Filled, Flow, Rejected, Router
from actions.flows.slots import check_visit_time
from actions.flows.understand import AFFIRM, asks_progress, is_affirm, rewrite_correction
from actions.hours import callback_promise
from actions.tickets import warranty_verdict
from bot.demo import DEFAULT_WARRANTY
from nlu.pipeline import Interpreter, load_interpreter

CHINA = dt.timezone(dt.timedelta(hours=8))
WED_10 = dt.datetime(2026, 12, 2, 10, 0, tzinfo=CHINA)
WED_2231 = dt.datetime(2026, 12, 2, 22, 31, tzinfo=CHINA)
HOURS = (dt.time(8, 30), dt.time(18, 0))
STAFF = {"weekdays": ["08:30", "17:30"], "weekend": ["09:00", "12:00"]}


@pytest.fixture(scope="module")
def nlu() -> Interpreter:
    return load_interpreter()


def ctx_for(nlu: Interpreter, text: str, now: dt.datetime) -> Any:
    parse = nlu.parse(text, now)
    def entity_value(name: str) -> str | None:
        ent = parse.entity(name)
        return ent.value if ent is not None else None

    return SimpleNamespace(text=text, now=now, parse=parse, intent=parse.intent, entity=parse.entity,
                           entity_value=entity_value)


@pytest.mark.parametrize("text", ["好的谢谢", "好", "可以", "行", "没问题", "对的", "嗯嗯", "确认", "ok", "好的 麻烦尽快",
                                  "可以的谢谢", "对 没错", "好滴", "行吧"])
def test_affirmatives_owners_write(nlu: Interpreter, text: str) -> None:
    assert is_affirm(ctx_for(nlu, text, WED_10)), text


@pytest.mark.parametrize("text", ["不对", "不是客厅", "算了", "谢谢", "改一下时间", "好多问题"])
def test_not_affirmatives(text: str) -> None:
    assert not AFFIRM.match(text), text


@pytest.mark.parametrize("text", ["我的报修", "修好没有", "上次报的漏水修好没", "进度查一下", "怎么还没人来", "催一下",
                                  "我报的那个啥时候来修", "报修的进度怎么样了", "处理了吗", "到哪一步了", "还没修好"])
def test_progress_in_any_wording(nlu: Interpreter, text: str) -> None:
    assert asks_progress(ctx_for(nlu, text, WED_10)), text


@pytest.mark.parametrize("text", ["卫生间漏水了", "我的房产证办好了吗", "厨房水管漏水 什么时候能来修", "楼道灯坏了"])
def test_new_business_is_not_progress(nlu: Interpreter, text: str) -> None:
    assert not asks_progress(ctx_for(nlu, text, WED_10)), text


@pytest.mark.parametrize(("description", "text", "expected"), [
    ("客厅墙面有裂缝", "不对 是卧室的墙 不是客厅", "卧室墙面有裂缝"),
    ("客厅墙面有裂缝", "不是客厅是主卧", "主卧墙面有裂缝"),
    ("厨房水管漏水", "厨房改成卫生间", "卫生间水管漏水"),
])
def test_corrections_rewrite_what_they_correct(description: str, text: str, expected: str) -> None:
    assert rewrite_correction(description, text) == expected


@pytest.mark.parametrize(("text", "now", "accepted", "contains"), [
    ("明天上午", WED_10, True, "12月3日"),
    ("周六下午3点", WED_10, True, "12月5日"),
    ("随时", WED_10, True, "随时"),
    ("今天下午", WED_10, True, "12月2日"),
    ("下午", WED_2231, True, "明天下午"),  # said at night: tomorrow
    ("今天下午", WED_2231, False, "过了"),
    ("晚上黑漆漆的", WED_10, False, "8:30–18:00"),
    ("明天晚上8点", WED_10, False, "8:30–18:00"),
    ("凌晨3点", WED_10, False, ""),
    ("昨天", WED_10, False, "过去"),
    ("今天", WED_2231, False, "已经过了"),
])
def test_visit_times(nlu: Interpreter, text: str, now: dt.datetime, accepted: bool, contains: str) -> None:
    verdict = check_visit_time(ctx_for(nlu, text, now), HOURS)
    if accepted:
        assert isinstance(verdict, Filled) and contains in verdict.values["visit_time"], verdict
    else:
        assert isinstance(verdict, Rejected) and contains in verdict.reason, verdict


@pytest.mark.parametrize("text", ["对", "601那套", "好的"])
def test_no_time_is_no_visit_time(nlu: Interpreter, text: str) -> None:
    assert check_visit_time(ctx_for(nlu, text, WED_10), HOURS) is None


@pytest.mark.parametrize(("category", "description", "covered", "says"), [
    ("drainage", "马桶堵了 冲不下去", None, "有偿"),
    ("hvac", "空调排水管一直滴水", None, "现场"),
    ("electrical", "灯泡坏了", False, "易耗品"),
    ("wall_floor", "孩子把瓷砖砸裂了", None, "人为损坏"),
    ("plumbing", "卫生间地面渗水到楼下", True, "免费"),
    ("plumbing", "厨房水管接头漏水", True, "给排水管道"),
    (None, "家里有个东西不太对", None, "现场"),
])
def test_warranty_defects_and_usage(category: str | None, description: str, covered: bool | None, says: str) -> None:
    verdict = warranty_verdict(category, description, dt.date(2025, 6, 1), DEFAULT_WARRANTY, dt.date(2026, 12, 2))
    assert verdict.covered is covered and says in verdict.reason, verdict
    if covered is not True:
        assert "免费维修" not in verdict.reason


def test_usage_rules_are_configurable_per_project() -> None:
    usage = {"categories": [], "cues": {"blockage": []}}
    verdict = warranty_verdict("drainage", "马桶堵了", dt.date(2025, 6, 1), DEFAULT_WARRANTY, dt.date(2026, 12, 2),
                               usage=usage)
    assert verdict.covered is True  # this developer treats blockages as defects within the plumbing period


@pytest.mark.parametrize(("now", "expected"), [
    (WED_10, "在4小时内"),
    (WED_2231, "于明天8:30起"),
    (dt.datetime(2026, 12, 2, 15, 0, tzinfo=CHINA), "在今天下班前"),
    (dt.datetime(2026, 12, 2, 17, 20, tzinfo=CHINA), "于明天8:30起"),
    (dt.datetime(2026, 12, 4, 20, 0, tzinfo=CHINA), "于明天9:00起"),  # Friday night: Saturday
    (dt.datetime(2026, 12, 5, 13, 0, tzinfo=CHINA), "于明天9:00起"),  # Saturday afternoon: Sunday morning
    (dt.datetime(2026, 12, 2, 6, 0, tzinfo=CHINA), "于今天8:30起"),
])
def test_callback_promises_respect_staff_hours(now: dt.datetime, expected: str) -> None:
    assert callback_promise(STAFF, now, 4) == expected


def test_a_flow_is_one_module_and_one_line() -> None:
    class Example(Flow):
        name = "example"
        forms = frozenset({"example"})

        def opening(self, state: dict[str, Any], slots: dict[str, Any]) -> str:
            state["form"] = {"name": "example", "slots": dict(slots), "asking": "score"}
            return "请为本次维修打分（1-5分）"

    router = build_router()
    router.register(Example())
    state: dict[str, Any] = {}
    assert router.begin(state, "example", WED_10, ticket="BX1") == "请为本次维修打分（1-5分）"
    assert state["form"]["name"] == "example" and state["form"]["updated"] == WED_10.isoformat()
    assert router.owner_of("example") is router.flow("example")
    assert router.owner_of("survey") is router.flow("survey")  # the real callback survey (actions/flows/survey.py)
    with pytest.raises(ValueError, match="already"):
        router.register(type("Again", (Flow,), {"name": "again", "intents": frozenset({"repair"})})())
    with pytest.raises(ValueError, match="taken"):
        Router([Example(), Example()])
