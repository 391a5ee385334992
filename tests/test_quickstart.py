"""The newcomer's path, run as written: README's commands and docs/QUICKSTART.md's walkthrough on a fresh
clone.

One fresh clone of this repository's committed HEAD in a temporary folder, for the whole module: its own
``.venv`` installed by ``./scripts/start`` itself (no shortcut: the install is part of what a newcomer
sees, warnings included), the server in the background on a free port, then the README's commands,
QUICKSTART's owner commands, its staff steps in Chromium (with the password a newcomer reads from
``var/staff-passwords``), and a second start after the test tools were added. Commands are taken from
the documents, never copied into this file; only the port is replaced by the test's own.

Slow by nature, most of it the install. Measured on the 2-core test machine: fresh clone to "try it" 59 s
when quiet; in a CI=true suite run at load average ~10 the module took 217 s (start 135 s, README 18 s,
walkthrough 25 s, test tools and second start 38 s) of the suite's 588 s. pip's fast path is used
(``PIP_NO_COMPILE``: modules compile on first import). Set ``YEZHU_TEST_SCREENSHOTS`` to a
folder (docs/screenshots) to save QUICKSTART's screenshots.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.console.live import SCREENSHOTS, browser, shot_path  # noqa: F401 (the browser fixture)

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 480.0
DOC_PORT = "127.0.0.1:8080"
STAFF_REPLY = "您好，我是客服小李。物业费可以在公众号「物业缴费」在线交，也可以到1栋大堂客服中心交。"
PIP_MACHINE_NOTE = re.compile(r"^WARNING: Location 'file://\S+' is ignored: it is neither a file nor a directory\.$")
"""pip's complaint about an index folder this machine's own pip configuration names (/etc/pip.conf):
not from Yezhu's install, and absent on a newcomer's machine."""

# One worker runs the whole module under pytest-xdist: its tests share one clone and server, in order.
pytestmark = [pytest.mark.timeout(900), pytest.mark.xdist_group("quickstart")]


@dataclass
class Server:
    clone: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    started_in: float = 0.0
    reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        """``./scripts/start --port P`` in the background; its whole output up to the end of "try it"."""
        self.lines = []
        began = time.monotonic()
        self.proc = subprocess.Popen(
            ["./scripts/start", "--port", str(self.port)], cwd=self.clone, env=self.env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, bufsize=1,
        )
        self.reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self.reader.start()
        while time.monotonic() - began < START_TIMEOUT:
            if any(line.startswith("  walk-through:") for line in self.lines):
                self.started_in = time.monotonic() - began
                return "\n".join(self.lines)
            if self.proc.poll() is not None:
                time.sleep(0.5)  # the reader thread's last lines
                pytest.fail(f"./scripts/start exited {self.proc.returncode}:\n" + "\n".join(self.lines))
            time.sleep(0.5)
        pytest.fail("./scripts/start printed no 'try it' block in time:\n" + "\n".join(self.lines))

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> int:
        """SIGTERM, as a service manager would (Ctrl-C is SIGINT to the whole group: the same path)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        time.sleep(0.2)  # the reader thread's last lines
        if self.proc.stdout is not None and self.reader is not None:
            self.reader.join(timeout=5)
            self.proc.stdout.close()
        return self.proc.returncode

    def sh(self, command: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A documented command in the clone's folder, as a newcomer's bash runs it (port replaced)."""
        return subprocess.run(["bash", "-c", command.replace(DOC_PORT, f"127.0.0.1:{self.port}")],
                              cwd=self.clone, env={**self.env, **(env or {})}, input=stdin, text=True,
                              capture_output=True, timeout=120)

    def token(self) -> str:
        return (self.clone / "var" / "api-token").read_text().strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if shutil.which("git") is None:
        pytest.fail("git is needed to clone the repository", pytrace=False)
    clone = tmp_path_factory.mktemp("newcomer") / "yezhu"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("YEZHU_", "VIRTUAL_ENV", "PYTHON", "PYTEST")) and k != "CI"}
    env["PIP_NO_COMPILE"] = "1"  # pip's fast path: modules compile on first import instead
    srv = Server(clone=clone, port=free_port(), env=env)
    try:
        yield srv
    finally:
        srv.stop()


def commands(markdown: str) -> list[str]:
    """The ``sh`` blocks' commands, continuation lines joined, comments and blank lines dropped."""
    found: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                found.append(line)
    return found


def chat_inputs(markdown: str) -> list[str]:
    """What the reader types in QUICKSTART's chat transcript (the ``业主>`` lines)."""
    return re.findall(r"^业主> (.+)$", markdown, re.M)


def api_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_start_says_so_when_the_port_is_taken(tmp_path: Path) -> None:
    """A second ./scripts/start, or another program on 8080: one line with the way out, no traceback."""
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "bot.quickstart", "--port", str(port)], cwd=ROOT,
                                env={**os.environ, "YEZHU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/y.db"},
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == (f"Port {port} on 127.0.0.1 is in use: another program listens there. Stop it, "
                                     f"or choose another port: ./scripts/start --port {port + 1}")


def test_start_on_a_fresh_clone(server: Server) -> None:
    output = server.start()
    print(f"fresh clone: ./scripts/start printed 'try it' after {server.started_in:.0f} s")
    lines = output.splitlines()
    assert "Creating .venv with Python 3." in output and "Installing Yezhu into .venv" in output
    noisy = [line for line in lines if re.search(r"warn|deprecat|traceback|error", line, re.I)
             and not PIP_MACHINE_NOTE.match(line)]
    assert not noisy, "the install and start are not quiet:\n" + "\n".join(noisy)
    assert re.search(r"数据库已创建 \(created the schema at head \w+\): sqlite var/yezhu\.db", output)
    assert "示范花园 loaded: 2592 houses" in output
    assert "API token generated in var/api-token" in output and server.token() not in output
    block = output[output.index(f"Try it (in {server.clone}):"):]
    assert f"console   {server.url}/console/" in block
    assert "logins: admin (管理员), kefu (客服), zhuguan (主管), gongcheng (工程师)" in block
    assert "passwords: cat var/staff-passwords" in block and ".venv/bin/yezhu chat --openid oDEMO0001" in block
    assert 'Authorization: Bearer $(cat var/api-token)' in block and "yezhu doctor" in block
    assert lines[-1].startswith("  walk-through:")


def test_readme_commands_work_as_written(server: Server) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "./scripts/start" in commands(readme)[0]
    section = readme[readme.index("Once it is running"):readme.index("## The staff console")]
    cmds = commands(section)
    assert len(cmds) == 3, cmds
    chat, curl, doctor = cmds
    result = server.sh(chat, stdin="我的房产证办好了吗\n")
    assert result.returncode == 0, result.stderr
    assert "张三您好" in result.stdout and "可以领取" in result.stdout and "Traceback" not in result.stderr

    reply = api_json(server.sh(curl))["replies"][0]["text"]
    assert "物业费" in reply and "微信" in reply

    result = server.sh(doctor, env={"YEZHU_PORT": str(server.port)})
    assert result.returncode == 0, result.stdout
    assert re.search(r"^ok +database +sqlite var/yezhu\.db: reachable, schema at head", result.stdout, re.M)
    assert re.search(r"^ok +api token +the demo's, generated in var/api-token", result.stdout, re.M)
    assert re.search(rf"^ok +server +{server.url} answers /healthz", result.stdout, re.M)
    assert result.stdout.splitlines()[-1].startswith("All ")


async def test_quickstart_walkthrough(server: Server, browser: Any) -> None:  # noqa: F811 (fixture)
    doc = (ROOT / "docs" / "QUICKSTART.md").read_text(encoding="utf-8")
    cmds = commands(doc)
    assert cmds[0] == "./scripts/start"  # run by the fixture
    steps = iter(cmds[1:])

    chat = next(steps)
    assert chat == ".venv/bin/yezhu chat --openid oDEMO0001"
    typed = chat_inputs(doc)
    result = server.sh(chat, stdin="\n".join(typed) + "\n")
    assert result.returncode == 0, result.stderr
    answers = result.stdout
    assert answers.count("客服> ") >= len(typed), answers
    assert "可以领取" in answers and "保修" in answers
    ticket_number = re.search(r"单号 (BX\d{8}-\d+)", answers)
    assert ticket_number, answers

    question, person = next(steps), next(steps)
    assert "物业费怎么交" in question and "我要找人工客服" in person
    assert "微信" in api_json(server.sh(question))["replies"][0]["text"]
    assert "人工客服" in api_json(server.sh(person))["replies"][0]["text"]

    passwords_cmd = next(steps)
    assert passwords_cmd == "cat var/staff-passwords"
    listed = server.sh(passwords_cmd).stdout
    passwords = dict(line.split(" ", 1) for line in listed.splitlines() if line and not line.startswith("#"))
    assert {"kefu", "gongcheng", "zhuguan"} <= passwords.keys()

    await staff_steps(server, browser, passwords, ticket_number.group(1))

    conversations = api_json(server.sh(next(steps)))["conversations"]
    texts = [m["text"] for m in conversations[-1]["messages"]]
    assert STAFF_REPLY in texts and "我要找人工客服" in texts

    tickets = api_json(server.sh(next(steps)))["tickets"]
    mine = next(t for t in tickets if t["number"] == ticket_number.group(1))
    assert mine["status"] in ("done", "awaiting_acceptance") and mine["assignee"] == "工程师老陈"
    assert mine["warranty"]["covered"] is True

    doctor = next(steps)
    result = server.sh(doctor, env={"YEZHU_PORT": str(server.port)})
    assert result.returncode == 0 and "schema at head" in result.stdout, result.stdout
    assert next(steps, None) is None, "a command in QUICKSTART.md this test does not run"


async def staff_steps(server: Server, chromium: Any, passwords: dict[str, str], number: str) -> None:
    """QUICKSTART section 4 in Chromium: the agent takes over and replies, dispatches the repair; the
    engineer starts and finishes it; the supervisor opens the dashboard."""
    base = server.url

    async def login(user: str) -> Any:
        context = await chromium.new_context(locale="zh-CN", viewport={"width": 1366, "height": 860},
                                            timezone_id="Asia/Shanghai")
        page = await context.new_page()
        await page.goto(base + "/console/")  # not logged in: the login form
        await page.fill("input[name=username]", user)
        await page.fill("input[name=password]", passwords[user])
        await page.click("button[type=submit]")
        await page.wait_for_url(re.compile(r"/console/(\?|$|tickets)"))
        return page

    async def shot(page: Any, name: str) -> None:
        if SCREENSHOTS:
            await page.screenshot(path=shot_path(f"quickstart-{name}"), full_page=False)

    agent = await login("kefu")
    waiting = agent.locator(".queue-item", has_text="人工").first  # the message that made the chat wait
    await waiting.wait_for()
    await shot(agent, "queue")
    await waiting.locator("button.claim").click()
    await agent.wait_for_url(re.compile(r"/console/conversations/\d+$"))
    await agent.fill("#reply-text", STAFF_REPLY)
    await agent.press("#reply-text", "Enter")
    await agent.locator("#timeline", has_text=STAFF_REPLY).wait_for()
    await shot(agent, "conversation")

    await agent.goto(base + "/console/tickets")
    await agent.click(f"text={number}")
    await agent.select_option("#dispatch-form select[name=assignee_id]", label="工程师老陈（工程师·值班）")
    await agent.fill("#dispatch-form input[name=visit_time]", "明天上午9:00–11:00")
    await agent.click("#dispatch-form button[type=submit]")
    await agent.locator("#ticket-status").get_by_text("已派单").wait_for()

    engineer = await login("gongcheng")
    await engineer.click(f"text={number}")
    await engineer.click("#start")
    await engineer.locator("#ticket-status").get_by_text("处理中").wait_for()
    await engineer.fill("#complete-form input[name=note]", "更换地漏密封圈，闭水试验24小时无渗漏")
    await engineer.click("#complete")
    await engineer.locator("#ticket-status").get_by_text("待验收").wait_for()
    await shot(engineer, "ticket")

    supervisor = await login("zhuguan")
    await supervisor.goto(base + "/console/dashboard")
    await supervisor.locator("svg.chart").first.wait_for()
    await shot(supervisor, "dashboard")
    for page in (agent, engineer, supervisor):
        await page.context.close()


def test_start_again_after_the_test_tools_installs_nothing(server: Server) -> None:
    status = server.stop()
    served = server.lines[next(i for i, line in enumerate(server.lines) if line.startswith("  walk-through:")):]
    assert status == 0, "\n".join(server.lines[-20:])
    noisy = [line for line in served if re.search(r"warn|error|traceback|exception", line, re.I)]
    assert not noisy, "the server's log during the walkthrough and its stop:\n" + "\n".join(noisy)

    extras = server.sh("scripts/bootstrap test")
    assert extras.returncode == 0, extras.stderr
    assert "Installing Yezhu and its test tools" in extras.stdout  # added to the same .venv
    assert not [line for line in extras.stderr.splitlines() if line.strip() and not PIP_MACHINE_NOTE.match(line)]

    output = server.start()
    print(f"second start: 'try it' after {server.started_in:.0f} s")
    assert "Installing" not in output and "Creating .venv" not in output
    assert re.search(r"数据库结构已是最新 \(already at head \w+\)", output)
    assert "nothing changed" in output and "staff kefu: password" not in output
    kept = (server.clone / "var" / "staff-passwords").read_text().splitlines()
    secrets = [server.token(), *(line.split(" ", 1)[1] for line in kept if line and not line.startswith("#"))]
    assert not [secret for secret in secrets if secret in output]  # never printed again
    assert server.stop() == 0
