"""The knowledge-base file format (知识库 YAML) and its validation.

A knowledge-base file is what the customer-service staff write and review; the database stores the
same entries (``KnowledgeEntry``), and ``yezhu kb import|export`` moves them between the two with
:func:`load_yaml` and :func:`dump_yaml`. The format::

    version: 1
    entries:
      - id: fee-payment                  # stable slug; the database and the test sets refer to it
        question: 物业费怎么交？            # the canonical question, shown when offering choices
        alternatives:                    # other ways owners ask the same thing
          - 在哪里交物业费
          - 可以微信交物业费吗
        answer: |-
          物业费可以通过以下方式交纳：……
        tags: [物业费, 缴费]
        projects: [demo]                 # project codes; empty or absent = every project

A bare list of entries (without ``version``/``entries``) is accepted too. Synonym files
(``synonyms.yml``) are lists of groups whose first word is the canonical form::

    synonyms:
      - [房产证, 房本, 不动产权证, 产权证, 大红本]

Errors are reported as :class:`KnowledgeFormatError` naming the entry (number, id and line) and the
field, because the people who fix them edit YAML by hand, not Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "FORMAT_VERSION",
    "KnowledgeFormatError",
    "KnowledgeItem",
    "dump_yaml",
    "load_synonyms",
    "load_yaml",
    "read_text",
]

FORMAT_VERSION = 1

# Slugs only: ids end up in URLs, log lines, test files and database keys.
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


class KnowledgeFormatError(ValueError):
    """A knowledge-base or synonym file that cannot be used; ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[str], source: str = "") -> None:
        self.errors = list(errors)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(self.errors))


def _clean_text(value: str) -> str:
    # Trailing spaces and Windows line ends come from copy-paste out of Word and WeChat; they are
    # never meant, and they would make two identical phrasings look different.
    lines = [line.rstrip() for line in value.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(lines).strip()


class KnowledgeItem(BaseModel):
    """One question-and-answer entry of the knowledge base."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: str = Field(description="stable slug: lower-case letters, digits, '-' and '_'")
    question: str = Field(min_length=1, max_length=200)
    alternatives: tuple[str, ...] = ()
    answer: str = Field(min_length=1, max_length=2000)
    tags: tuple[str, ...] = ()
    projects: tuple[str, ...] = Field(default=(), description="project codes; empty = all projects")

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _ID_RE.match(value):
            raise ValueError("must be a slug of lower-case letters, digits, '-' or '_' (at most 64)")
        return value

    @field_validator("question", "answer")
    @classmethod
    def _clean(cls, value: str) -> str:
        value = _clean_text(value)
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("alternatives", "tags", "projects", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        # ``alternatives:`` with nothing after it is YAML null; staff mean "none".
        return () if value is None else value

    @field_validator("alternatives")
    @classmethod
    def _check_alternatives(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(_clean_text(v) for v in value)
        for position, text in enumerate(cleaned, 1):
            if not text:
                raise ValueError(f"alternative #{position} is empty")
            if len(text) > 200:
                raise ValueError(f"alternative #{position} is longer than 200 characters")
        return cleaned

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(t.strip() for t in value)
        if any(not t for t in cleaned):
            raise ValueError("tags must not be empty strings")
        return cleaned

    @field_validator("projects")
    @classmethod
    def _check_projects(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for code in value:
            if not _PROJECT_RE.match(code):
                raise ValueError(f"project code {code!r} is not a short code such as 'demo'")
        return tuple(dict.fromkeys(value))

    @property
    def phrasings(self) -> tuple[str, ...]:
        """The question followed by its alternatives: everything an owner's text is matched against."""
        return (self.question, *self.alternatives)

    def applies_to(self, project: str | None) -> bool:
        """Whether this entry may be answered to an owner of ``project`` (``None``: no project known)."""
        return not self.projects or (project is not None and project in self.projects)

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the file's field order, without empty optional fields."""
        data: dict[str, Any] = {"id": self.id, "question": self.question}
        if self.alternatives:
            data["alternatives"] = list(self.alternatives)
        data["answer"] = self.answer
        if self.tags:
            data["tags"] = list(self.tags)
        if self.projects:
            data["projects"] = list(self.projects)
        return data


# ---------------------------------------------------------------------------------------------------
# Reading


def read_text(path_or_text: str | Path) -> tuple[str, str]:
    """``(text, source name)`` of a file path or of YAML text.

    A :class:`~pathlib.Path` is always a file. A ``str`` is a file name when it is one line ending in
    ``.yml``/``.yaml`` (so a missing file is an error, not an empty knowledge base); any other string
    is the YAML text itself.
    """
    if isinstance(path_or_text, Path) or (
        "\n" not in path_or_text and path_or_text.strip().lower().endswith((".yml", ".yaml"))
    ):
        path = Path(path_or_text)
        return path.read_text(encoding="utf-8"), str(path)
    return path_or_text, "<text>"


def _parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    try:
        # Composing gives the node tree with line numbers for error messages; constructing from the
        # same tree avoids parsing twice.
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise KnowledgeFormatError([f"not valid YAML: {exc}"], source) from exc
    return data, node


def _entry_nodes(node: yaml.Node | None) -> list[yaml.Node]:
    """The YAML nodes of the entries, parallel to the entries list (for line numbers)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "entries":
                node = value
                break
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _field_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) >= 2 and parts[1].isdigit():
        # ("alternatives", 2) → "alternatives[3]": people count from one.
        return f"{parts[0]}[{int(parts[1]) + 1}]" + "".join(f".{p}" for p in parts[2:])
    return ".".join(parts) or "(entry)"


def load_yaml(path_or_text: str | Path) -> list[KnowledgeItem]:
    """Load and validate a knowledge-base file (see the module docstring for the format).

    Raises :class:`KnowledgeFormatError` listing every invalid entry and field, duplicate ids and
    phrasings used by two entries (they would make retrieval ambiguous by construction).
    """
    text, source = read_text(path_or_text)
    data, node = _parse_yaml(text, source)
    if data is None:
        return []
    if isinstance(data, dict):
        unknown = set(data) - {"version", "entries"}
        if unknown:
            raise KnowledgeFormatError([f"unknown top-level keys: {', '.join(sorted(unknown))}"], source)
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise KnowledgeFormatError(
                [f"unsupported version {version!r} (expected {FORMAT_VERSION})"], source
            )
        raw_entries = data.get("entries") or []
    else:
        raw_entries = data
    if not isinstance(raw_entries, list):
        raise KnowledgeFormatError(["'entries' must be a list of entries"], source)

    nodes = _entry_nodes(node)
    errors: list[str] = []
    items: list[KnowledgeItem] = []
    for index, raw in enumerate(raw_entries):
        line = nodes[index].start_mark.line + 1 if index < len(nodes) else None
        label = f"entry #{index + 1}"
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            label += f" (id {raw['id']!r})"
        if line is not None:
            label += f" at line {line}"
        if not isinstance(raw, dict):
            errors.append(f"{label}: must be a mapping with id, question, answer …")
            continue
        try:
            items.append(KnowledgeItem.model_validate(raw))
        except ValidationError as exc:
            for err in exc.errors():
                errors.append(f"{label}: field '{_field_name(err['loc'])}': {err['msg']}")
    errors.extend(_cross_check(items))
    if errors:
        raise KnowledgeFormatError(errors, source)
    return items


def _cross_check(items: Iterable[KnowledgeItem]) -> list[str]:
    errors: list[str] = []
    seen_ids: set[str] = set()
    users: dict[str, list[KnowledgeItem]] = {}
    for item in items:
        if item.id in seen_ids:
            errors.append(f"id {item.id!r} is used by more than one entry")
        seen_ids.add(item.id)
        for phrasing in dict.fromkeys(item.phrasings):
            key = re.sub(r"[\s，。？！?!,.、]+", "", phrasing)
            for other in users.setdefault(key, []):
                # The same question may have a different answer in each project; it is only
                # ambiguous when both entries can be answered to the same owner.
                if other.id != item.id and _scopes_overlap(other, item):
                    errors.append(
                        f"entry {item.id!r}: phrasing {phrasing!r} is also used by entry {other.id!r}"
                    )
                    break
            users[key].append(item)
    return errors


def _scopes_overlap(a: KnowledgeItem, b: KnowledgeItem) -> bool:
    return not a.projects or not b.projects or bool(set(a.projects) & set(b.projects))


def load_synonyms(path_or_text: str | Path) -> list[list[str]]:
    """Load a synonym file: groups of words, the first of each group being the canonical form.

    Accepts ``{synonyms: [[…], …]}`` or a bare list of groups. A word in two groups is an error:
    folding would depend on the order of the file.
    """
    text, source = read_text(path_or_text)
    data, _ = _parse_yaml(text, source)
    if data is None:
        return []
    groups = data.get("synonyms") if isinstance(data, dict) else data
    if not isinstance(groups, list):
        raise KnowledgeFormatError(["'synonyms' must be a list of word lists"], source)
    errors: list[str] = []
    result: list[list[str]] = []
    group_of: dict[str, int] = {}
    for number, group in enumerate(groups, 1):
        if (
            not isinstance(group, list)
            or not group
            or not all(isinstance(w, str) and w.strip() for w in group)
        ):
            errors.append(f"group #{number}: must be a non-empty list of words")
            continue
        words = [w.strip() for w in group]
        for word in words:
            first = group_of.setdefault(word, number)
            if first != number:
                errors.append(f"group #{number}: {word!r} is already in group #{first}")
        result.append(words)
    if errors:
        raise KnowledgeFormatError(errors, source)
    return result


# ---------------------------------------------------------------------------------------------------
# Writing


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line answers, so an exported file reads like the one staff wrote."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(items: Iterable[KnowledgeItem]) -> str:
    """The knowledge-base file for ``items``; ``load_yaml(dump_yaml(items)) == items``."""
    document = {"version": FORMAT_VERSION, "entries": [item.to_dict() for item in items]}
    return yaml.dump(
        document, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=1000, default_flow_style=False
    )
