"""The SMS template catalogue and its configuration: the demo catalogue is consistent, and a bad
configuration stops the CLI with one clear line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import Settings
from channels.sms.base import TEXT_MAX


def test_demo_catalogue_is_consistent() -> None:
    templates = Settings(_env_file=None).sms_templates  # type: ignore[call-arg]
    assert {"verification_code", "duty_alert", "ticket_dispatched", "acceptance_request", "visit_reminder",
            "survey_invitation", "certificate_collection", "reply", "opt_out_ack"} <= set(templates)
    for kind, t in templates.items():
        assert set(re.findall(r"\$\{(\w+)\}", t.text)) == set(t.params), kind
        assert len(f"【物业客服】{t.text}") <= TEXT_MAX, kind
        if t.category == "marketing":
            assert t.text.endswith("拒收请回复R"), kind
    # Tencent approves only verification codes for real estate: the demo says so.
    assert [k for k, t in templates.items() if t.tencent] == ["verification_code"]


@pytest.mark.parametrize(("env", "says"), [
    ({"YEZHU_SMS_PROVIDER": "twilio"}, "sms_provider"),
    ({"YEZHU_CONFIG": "{bad}"}, "拒收请回复R"),
    ({"YEZHU_CONFIG": "{missing}"}, "No such file"),
])
def test_a_bad_sms_configuration_is_one_clear_line(env: dict[str, str], says: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text('sms:\n  templates:\n    promo:\n      category: marketing\n      text: "新品上市"\n', encoding="utf-8")
    env = {k: v.format(bad=bad, missing=tmp_path / "none.yml") for k, v in env.items()}
    result = CliRunner().invoke(app, ["migrate"], env=env)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("yezhu: invalid configuration") and says.lower() in lines[0].lower()
    assert "Traceback" not in result.output
