"""Yezhu's natural-language understanding: normalisation, tokenising, entities, intents.

``nlu`` imports nothing else of ours (DESIGN.md). The interpreter is imported lazily so that a part
that only needs :func:`tokenize` (the knowledge base) does not pay for the classifier.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nlu.normalize import Normalized, normalize
from nlu.tokenize import tokenize
from nlu.types import Entity, ParseResult

if TYPE_CHECKING:
    from nlu.pipeline import Interpreter, load_interpreter

__all__ = ["Entity", "Interpreter", "Normalized", "ParseResult", "load_interpreter", "normalize", "tokenize"]


def __getattr__(name: str) -> Any:
    if name in {"Interpreter", "load_interpreter"}:
        from nlu import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'nlu' has no attribute {name!r}")
