"""How CPU per message grows with the database and the knowledge base (issue 16, item 4).

Runs ``bench/profile_embedded.py`` (the embedded app in one process, signed WeChat messages over a
local socket) once per size, each in a fresh process pinned to one core, and prints CPU per message:

    .venv/bin/python bench/cost_growth.py                      # stored 1k / 100k / 1M, KB 55 / 500 / 5,000
    .venv/bin/python bench/cost_growth.py --stored 1000,100000 --kb 55 -n 2000 --repeat 2

CPU is the whole process's (server and its in-process client, which costs the same at every size), so
compare the rows with each other: a flat column means the cost does not grow. The stored messages are
written straight into the SQLite file before the app starts (conversations of 20 messages, indexed by
the FTS triggers like any other); the knowledge base is the demo's 55 entries or synthetic copies of
them (``knowledge.bench.synthetic_items``: every copy's text is new to the analyser).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"(\d+)/s, process CPU ([\d.]+) ms per message")


def run(args: argparse.Namespace, stored: int, kb: int) -> tuple[float, float]:
    cmd = [
        "taskset",
        "-c",
        str(args.core),
        sys.executable,
        str(ROOT / "bench" / "profile_embedded.py"),
        "-n",
        str(args.n),
        "-c",
        str(args.c),
        "--stored",
        str(stored),
    ]
    if kb != 55:
        cmd += ["--kb", str(kb)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=3600).stdout
    m = LINE.search(out)
    if not m:
        raise SystemExit(f"no result from {' '.join(cmd)}:\n{out[-2000:]}")
    return float(m.group(1)), float(m.group(2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stored", default="1000,100000,1000000", help="stored messages, comma-separated")
    p.add_argument("--kb", default="55,500,5000", help="knowledge-base entries, comma-separated")
    p.add_argument("-n", type=int, default=2000, help="measured messages per run")
    p.add_argument("-c", type=int, default=16, help="requests in flight")
    p.add_argument("--repeat", type=int, default=2, help="runs per size (the lowest CPU counts)")
    p.add_argument("--core", type=int, default=0)
    args = p.parse_args()
    sizes = [(int(s), 55) for s in args.stored.split(",")] + [
        (1000, int(k)) for k in args.kb.split(",") if int(k) != 55
    ]
    print("| stored messages | KB entries | CPU ms per message (runs) | messages/s (runs) |")
    print("|---:|---:|---|---|")
    for stored, kb in sizes:
        runs = [run(args, stored, kb) for _ in range(args.repeat)]
        cpu = ", ".join(f"{c:.2f}" for _, c in runs)
        rate = ", ".join(f"{r:.0f}" for r, _ in runs)
        print(f"| {stored:,} | {kb:,} | {cpu} | {rate} |", flush=True)


if __name__ == "__main__":
    main()
