"""What ``./scripts/start`` runs after migrating and loading the demo: ``yezhu run`` as a child process,
and, once it answers ``/healthz``, a short "try it" block (console and logins, a ``yezhu chat`` line, a
working ``curl`` line, where the settings live).

Secrets are never printed here: the block points at the files ``yezhu demo`` keeps them in
(``var/staff-passwords``, ``var/api-token``). Ctrl-C and SIGTERM reach ``yezhu run``, which stops
gracefully; this process exits with its status.

Usage: ``python -m bot.quickstart [yezhu run options]``.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bot.demo import STAFF, staff_passwords_path
from bot.settings import Settings

READY_TIMEOUT = 180.0
"""Seconds to wait for the first /healthz (loading the NLU model takes a few on a slow machine)."""
ROLES = {"admin": "管理员", "agent": "客服", "supervisor": "主管", "engineer": "工程师"}


def option(args: list[str], name: str) -> str | None:
    """The value of ``--name V`` or ``--name=V`` in ``yezhu run``'s arguments (the last one wins)."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def base_url(s: Settings, args: list[str]) -> str:
    host = option(args, "--host") or s.host
    port = option(args, "--port") or str(s.port)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def try_it(s: Settings, url: str) -> str:
    """The block printed once the server is up; every command in it works as written from this folder."""
    logins = ", ".join(f"{user} ({ROLES[role]})" for user, _name, role, _phone in STAFF)
    passwords = staff_passwords_path(s)
    if passwords is not None and passwords.is_file():
        where = f"cat {shlex.quote(shown(passwords))}"
        if s.admin_password:
            where += "  (admin: YEZHU_ADMIN_PASSWORD)"
    else:
        where = "not kept here: set one with `.venv/bin/yezhu staff passwd NAME`"
    if s.api_token_file is not None:
        bearer = f"$(cat {shlex.quote(shown(s.api_token_file))})"
    elif s.api_token is not None:
        bearer = "$YEZHU_API_TOKEN" if os.environ.get("YEZHU_API_TOKEN") else "<YEZHU_API_TOKEN from .env>"
    else:
        bearer = "<set YEZHU_API_TOKEN>"
    db = s.sqlite_path()
    data = shown(db.parent) + "/" if db is not None else "the database"
    env = Path(".env")
    settings_where = (f"{shown(env)} (and the environment)" if env.is_file()
                      else "environment variables or a .env file here")
    lines = [
        "",
        f"Yezhu is running on {url}  (Ctrl-C stops it)",
        "",
        f"Try it (in {Path.cwd()}):",
        f"  console   {url}/console/",
        f"            logins: {logins}",
        f"            passwords: {where}",
        "  chat      .venv/bin/yezhu chat --openid oDEMO0001      # as 张三, owner of 3栋2单元501",
        f"  API       curl -s {url}/api/v1/messages -H \"Authorization: Bearer {bearer}\" \\",
        "                 -H 'Content-Type: application/json' -d '{\"sender\": \"demo-1\", \"text\": \"物业费怎么交\"}' \\",
        "                 | python3 -m json.tool --no-ensure-ascii",
        f"  settings  {settings_where}: README.md \"Settings\"; data and demo credentials in {data}",
        "  check     .venv/bin/yezhu doctor",
        "  walk-through: docs/QUICKSTART.md",
        "",
    ]
    return "\n".join(lines)


def wait_until_ready(url: str, server: subprocess.Popen[bytes]) -> bool:
    """True once ``/healthz`` answers 200; False when the server exited or never answered."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False


def port_taken(host: str, port: int) -> bool:
    """Whether something already listens there (bound the way asyncio's server binds: SO_REUSEADDR, so a
    socket in TIME_WAIT does not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def already_serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(args: list[str]) -> int:
    s = Settings()
    url = base_url(s, args)
    host, port = option(args, "--host") or s.host, option(args, "--port") or str(s.port)
    if port.isdigit() and port_taken(host, int(port)):
        who = "Yezhu is already running there" if already_serving(url) else "another program listens there"
        print(f"Port {port} on {host} is in use: {who}. Stop it, or choose another port: "
              f"./scripts/start --port {int(port) + 1}", file=sys.stderr, flush=True)
        return 1
    server = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", *args])

    def forward(signum: int, _frame: object) -> None:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)  # yezhu run stops gracefully on SIGTERM

    # Ctrl-C reaches the whole foreground process group, yezhu run included: it stops on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    if wait_until_ready(url, server):
        print(try_it(s, url), flush=True)
    elif server.poll() is None:
        print(f"Yezhu did not answer {url}/healthz within {READY_TIMEOUT:.0f} s; see its log above.",
              file=sys.stderr, flush=True)
    return server.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
