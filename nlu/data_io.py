"""Reading and writing training data in Rasa's NLU YAML format (``version: "3.1"``, ``nlu:`` items).

This module owns the file format, so that a team can train the same data with Rasa. Only intent
examples are used; entity annotations in Rasa's markdown-like syntax (``[3栋](house)``,
``[x]{"entity": …}``) are reduced to their surface text because Yezhu's entities come from rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["DATA_DIR", "EMERGENCY_FILES", "REAL_REGISTER_FILE", "TEST_FILE", "Example", "dump_rasa_nlu", "load_examples", "load_training_data"]

DATA_DIR = Path(__file__).parent / "data"
TRAIN_DIR = DATA_DIR / "nlu"
TEST_FILE = DATA_DIR / "test" / "test.yml"
# Long letters and headlines in the register of public message boards and 12345 records (act + topic).
REAL_REGISTER_FILE = DATA_DIR / "test" / "real_register.yml"
# Emergency wordings and near misses (dev: rules tuned against it; holdout: measured only).
EMERGENCY_FILES = (DATA_DIR / "emergency" / "dev.yml", DATA_DIR / "emergency" / "holdout.yml")

_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    intent: str
    topic: str | None = None  # from the example's ``metadata: {topic: …}`` (Rasa's detailed form)


def _examples_of(block: object) -> list[tuple[str, str | None]]:
    if isinstance(block, str):
        lines = block.splitlines()
        out: list[tuple[str, str | None]] = []
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("- "):
                out.append((stripped[2:].strip(), None))
            elif stripped == "-":
                continue
        return out
    if isinstance(block, list):  # the "detailed" form: [{text: …, metadata: {topic: …}}]
        detailed: list[tuple[str, str | None]] = []
        for item in block:
            if isinstance(item, dict):
                meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
                topic = meta.get("topic") if meta else None
                detailed.append((str(item["text"]).strip(), str(topic) if topic else None))
            else:
                detailed.append((str(item), None))
        return detailed
    return []


def load_examples(path: Path) -> list[Example]:
    """All intent examples of one Rasa NLU YAML file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    examples: list[Example] = []
    for item in data.get("nlu", []) or []:
        if not isinstance(item, dict) or "intent" not in item:
            continue  # synonyms, regexes and lookup tables are Rasa-only
        intent = str(item["intent"])
        for text, topic in _examples_of(item.get("examples")):
            text = _ANNOTATION.sub(r"\1", text)
            if text:
                examples.append(Example(text, intent, topic))
    return examples


def load_training_data(directory: Path | None = None) -> list[Example]:
    """All examples under the training directory (``nlu/data/nlu/*.yml``), in a stable order."""
    directory = directory or TRAIN_DIR
    files = sorted(directory.glob("*.yml")) + sorted(directory.glob("*.yaml")) if directory.is_dir() else [directory]
    examples: list[Example] = []
    for path in files:
        examples.extend(load_examples(path))
    return examples


class _Literal(str):
    """A string dumped as a YAML block literal (``examples: |``)."""


def _literal_representer(dumper: yaml.SafeDumper, value: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal_representer)


def dump_rasa_nlu(examples: Iterable[Example]) -> str:
    """Rasa NLU YAML for ``examples``, grouped by intent in first-seen order."""
    by_intent: dict[str, list[str]] = {}
    for ex in examples:
        by_intent.setdefault(ex.intent, []).append(ex.text)
    items = [
        {"intent": intent, "examples": _Literal("".join(f"- {text}\n" for text in texts))}
        for intent, texts in by_intent.items()
    ]
    return yaml.dump({"version": "3.1", "nlu": items}, Dumper=_Dumper, allow_unicode=True, sort_keys=False,
                     width=1000)
