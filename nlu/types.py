"""The NLU result types every other part of Yezhu reads (frozen, JSON-able).

Offsets (``start``/``end``) are always into the ORIGINAL text the owner wrote, so the console can
highlight them and nobody has to know how the text was normalised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUSINESS_INTENTS", "ENTITY_NAMES", "INTENTS", "Entity", "ParseResult"]

# The four kinds of owner business first; DESIGN.md fixes these names.
BUSINESS_INTENTS: tuple[str, ...] = ("repair", "complaint", "inquiry", "certificate")
INTENTS: tuple[str, ...] = (*BUSINESS_INTENTS, "human", "greet", "thanks", "affirm", "deny", "optout", "other")
ENTITY_NAMES: tuple[str, ...] = (
    "house", "location", "phone", "time", "repair_category", "urgency", "complaint_category", "severity",
    "certificate_topic",
)


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity: ``value`` is a canonical string (digits, an ISO time, a category identifier)."""

    entity: str
    value: str
    start: int
    end: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"entity": self.entity, "value": self.value, "start": self.start, "end": self.end}
        if self.extra:
            data["extra"] = dict(self.extra)
        return data


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What NLU understood of one message."""

    text: str
    intent: str
    confidence: float
    entities: tuple[Entity, ...] = ()
    intent_ranking: tuple[tuple[str, float], ...] = ()
    normalized: str = ""
    backend: str = "yezhu"
    # What the message is about (nlu.topic.TOPICS), apart from the act (intent); None if nothing names one.
    topic: str | None = None

    def entity(self, name: str) -> Entity | None:
        """The first entity called ``name`` (in text order), or ``None``."""
        for ent in self.entities:
            if ent.entity == name:
                return ent
        return None

    def entities_of(self, name: str) -> list[Entity]:
        return [ent for ent in self.entities if ent.entity == name]

    def to_dict(self) -> dict[str, Any]:
        """The ``yezhu nlu parse`` JSON line (also close to Rasa's ``/model/parse`` answer)."""
        return {
            "text": self.text,
            "intent": self.intent,
            "confidence": round(float(self.confidence), 4),
            "topic": self.topic,
            "entities": [ent.to_dict() for ent in self.entities],
            "intent_ranking": [{"name": name, "confidence": round(float(conf), 4)}
                               for name, conf in self.intent_ranking],
            "normalized": self.normalized,
            "backend": self.backend,
        }
