"""Topic apart from the act, long letters and headlines, and the real-register evaluation set.

A grievance about a delayed certificate is the act ``complaint`` with the topic ``certificate``; a
letter's salutations and formulae carry no intent; a headline is a complete message; a 1,000-character
letter parses within 5 ms; the real-register set (``nlu/data/test/real_register.yml``) is never trained
on and scores accuracy ≥ 0.92 with no class below 0.85.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from bot.runtime import RUNTIME
from bot.store.models import Message
from nlu.cli import app
from nlu.data_io import REAL_REGISTER_FILE, load_examples, load_training_data
from nlu.evaluate import evaluate
from nlu.export import export_rasa
from nlu.letters import demand_part, strip_formulae
from nlu.normalize import normalize
from nlu.pipeline import Interpreter
from nlu.topic import TOPICS
from tests.conftest import YezhuFactory, auth

runner = CliRunner()

LETTER = (
    "尊敬的李书记您好！感谢您在百忙之中抽空阅读我的留言。我是南湖春晓小区的一名业主，今天冒昧来信，是想反映我们小区"
    "几百户业主多年来办不了房产证的问题。\n"
    "我们小区于2019年10月交付，购房合同第十八条约定，出卖人应当在商品房交付使用之日起365日内，将办理不动产登记需由"
    "出卖人提供的资料报产权登记机关备案。交房的时候，开发商的工作人员也当着很多业主的面承诺，交房后一年内一定为大家"
    "办好不动产权证书。我们相信了开发商，按要求结清了全部房款，交了契税、专项维修资金和各种代办费用，拿到了钥匙，装修"
    "入住。可是一年过去了，两年过去了，到今天已经整整五年，证书至今没有办下来。\n"
    "这五年里，我们业主去开发商的办公室问过无数次。开发商起初说是规划验收没有通过，要等整改；后来又说是人防工程没有"
    "验收，要等人防办；再后来说是土地出让金还有尾款没有结清，要等公司资金回笼。每次的说法都不一样，每次都说快了，"
    "可是从来没有一个准确的时间。去年我们又找到住建局，住建局的同志很耐心，说已经约谈过开发商，要求限期整改，但是"
    "到现在也没有看到任何进展。\n"
    "没有房产证，给我们的生活带来了很多实实在在的困难。我家孩子明年要上小学，学校要求提供房产证明才能按学区入学，"
    "我们只能拿着购房合同和各种证明来回跑；楼上的王阿姨想把房子卖掉换一套电梯房给腿脚不好的老伴住，因为没有证，"
    "房子卖不出去；还有业主想用房子做抵押贷款周转生意，银行也不受理。大家交了钱、守了约，却因为开发商自己的问题"
    "拿不到属于自己的证，心里实在想不通，也非常着急。\n"
    "我们理解政府部门的工作有很多难处，也理解开发商在经营上可能遇到了困难，但是业主的合法权益不应该被无限期地拖下去。"
    "据我们了解，市里近两年出台过解决房地产历史遗留办证问题的政策，对于开发商原因导致的办证难，可以采取先办证、后"
    "追责的办法。我们希望这个政策也能惠及我们小区。\n"
    "另外还想说明一点：小区里有不少是第一次买房的年轻人，也有把一辈子积蓄都拿出来的退休老人。去年冬天，业主们自发"
    "组织了一次统计，全小区七百多户里，因为没有房产证耽误孩子上学的有四十多户，想卖房却卖不了的有二十多户，想办理"
    "抵押贷款被拒的有十几户。业主群里每天都有人问什么时候能办证，大家从一开始的耐心等待，到现在已经非常焦虑。我们"
    "一直是通过正规渠道反映问题，没有过激的行为，因为我们相信政府会为老百姓做主。我们也愿意配合开发商和相关部门"
    "提供需要的材料，比如补交的资料、授权委托书等，只要能把证办下来，我们做什么都可以。\n"
    "恳请领导督促开发商尽快为我们办理房产证，并请相关部门给业主一个明确的时间表。盼复！此致敬礼！"
)


@pytest.mark.parametrize(
    ("text", "intent", "topic"),
    [
        ("交房5年了还没办房产证", "complaint", "certificate"),
        ("我们小区入住都七年了，房本还是下不来，开发商一直推", "complaint", "certificate"),
        ("房产证办下来以后去哪里领", "certificate", "certificate"),
        ("青山湖畔小区逾期交房两年 至今未复工", "complaint", "handover"),
        ("5栋电梯又坏了", "repair", "elevator"),
        ("物业费每平米多少钱", "inquiry", "fees"),
        ("售楼时承诺的幼儿园变成了商铺", "complaint", "sales_promise"),
    ],
)
def test_act_and_topic_apart(interpreter: Interpreter, text: str, intent: str, topic: str) -> None:
    result = interpreter.parse(text)
    assert (result.intent, result.topic) == (intent, topic)
    assert result.to_dict()["topic"] == topic


def test_topic_is_none_when_nothing_names_one(interpreter: Interpreter) -> None:
    assert interpreter.parse("好的谢谢").topic is None
    assert interpreter.parse("你好").to_dict()["topic"] is None


def test_topics_are_a_closed_vocabulary(interpreter: Interpreter) -> None:
    for ex in load_examples(REAL_REGISTER_FILE):
        assert ex.topic in TOPICS
        topic = interpreter.parse(ex.text).topic
        assert topic is None or topic in TOPICS


def test_parse_cli_shows_topic() -> None:
    result = runner.invoke(app, ["parse"], input="交房5年了还没办房产证\n")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["intent"] == "complaint" and row["topic"] == "certificate"


async def test_stored_parse_has_the_topic_and_the_urgency(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    grievance = "开发商说好去年底办房产证，现在都过去一年了还没动静"
    emergency = "谢谢你们上次帮忙，现在厨房里一股很重的煤汽味"
    for sender, text in (("topic-1", grievance), ("topic-2", emergency)):
        resp = await client.post("/api/v1/messages", json={"sender": sender, "text": text}, headers=auth())
        assert resp.status < 300
    async with client.app[RUNTIME].db.session() as s:
        stored = dict((await s.execute(sa.select(Message.text, Message.nlu).where(
            Message.text.in_([grievance, emergency])))).all())
    assert stored[grievance]["topic"] == "certificate" and stored[grievance]["intent"] == "complaint"
    urgency = [e for e in stored[emergency]["entities"] if e["entity"] == "urgency"]
    assert [e["value"] for e in urgency] == ["gas_leak"]
    assert "煤汽味" in emergency[urgency[0]["start"]:urgency[0]["end"]]


def test_formulae_carry_no_intent() -> None:
    core = strip_formulae(normalize(LETTER).text)
    assert not core.startswith("尊敬") and "百忙之中" not in core and not core.endswith("此致敬礼!")
    assert "房产证" in core
    demand = demand_part(core)
    assert demand is not None and "恳请" in demand


def test_long_letter_is_decided_on_the_whole_text(interpreter: Interpreter) -> None:
    assert len(LETTER) > 1000
    result = interpreter.parse(LETTER)
    assert (result.intent, result.topic) == ("complaint", "certificate")
    # Its speed (goal: under 5 ms) is measured by bench/nlu_speed.py, not asserted here: a timed test
    # fails on a busy machine for reasons that are not the code's.


def test_headline_is_a_complete_message(interpreter: Interpreter) -> None:
    result = interpreter.parse("临江某小区延期交付一年半 业主讨说法无门")
    assert (result.intent, result.topic) == ("complaint", "handover")


def test_real_register_set_is_never_trained_on() -> None:
    evaluation = {normalize(ex.text).text for ex in load_examples(REAL_REGISTER_FILE)}
    training = {normalize(ex.text).text for ex in load_training_data()}
    assert len(evaluation) >= 300
    assert not evaluation & training


def test_real_register_accuracy(interpreter: Interpreter) -> None:
    result = evaluate(load_examples(REAL_REGISTER_FILE), interpreter)
    assert result.report["accuracy"] >= 0.92
    for intent in ("repair", "complaint", "inquiry", "certificate"):
        assert result.report[intent]["recall"] >= 0.85, (intent, result.report[intent])
    assert result.topic_report is not None and result.topic_report["accuracy"] >= 0.85


def test_test_command_reports_both_sets(tmp_path: Path) -> None:
    result = runner.invoke(app, ["test", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "== test.yml" in result.stdout and "== real_register.yml" in result.stdout
    assert "topic accuracy" in result.stdout and "false alarms on near misses" in result.stdout
    report = json.loads((tmp_path / "real_register" / "intent_report.json").read_text(encoding="utf-8"))
    assert report["accuracy"] >= 0.92
    assert (tmp_path / "real_register" / "intent_confusion_matrix.png").stat().st_size > 0
    assert (tmp_path / "real_register" / "topic_report.json").exists()
    assert (tmp_path / "test" / "intent_report.json").exists()


def test_test_command_rejects_a_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["test", str(tmp_path / "nope.yml")])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_rasa_export_carries_topic_as_an_entity(tmp_path: Path) -> None:
    export_rasa(tmp_path)
    domain = yaml.safe_load((tmp_path / "domain.yml").read_text(encoding="utf-8"))
    assert domain["entities"] == ["topic"]
    nlu_text = (tmp_path / "data" / "nlu.yml").read_text(encoding="utf-8")
    assert '[房产证]{"entity": "topic", "value": "certificate"}' in nlu_text
    assert nlu_text.count('"entity": "topic"') > 500
    # Stripping the annotations gives back exactly the training texts.
    exported = sorted((e.intent, e.text) for e in load_examples(tmp_path / "data" / "nlu.yml"))
    assert exported == sorted((e.intent, e.text) for e in load_training_data())
