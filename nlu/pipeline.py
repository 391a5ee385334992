"""The interpreter: one call from an owner's text to a :class:`ParseResult`.

This module owns the order of the steps and the backend choice:

1. normalise (keep the original; offsets map back to it);
2. cut opening greetings and closing thanks, so courtesy never hides business (你好，我家漏水了，谢谢 → repair);
3. classify the intent with the shipped linear model (calibrated probabilities);
4. extract entities with the rules of :mod:`nlu.entities`, offsets into the original text.

Backends: ``yezhu`` (default, in-process, ~0.1 ms) or ``rasa`` — a Rasa server's ``/model/parse``
gives the intent (and any entities it was trained for); Yezhu's rule entities fill in the entity types
Rasa did not return. If the Rasa server is down, slow or answers nonsense, :meth:`Interpreter.aparse`
logs a warning and answers from the own model — an owner never waits on a broken NLU server.

Configuration comes in through arguments (the settings class of ``bot`` passes it);
:func:`from_env` is the one convenience that reads ``YEZHU_NLU_BACKEND`` / ``YEZHU_RASA_URL``, for the
CLI.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlu.classifier import MODEL_DIR, IntentClassifier
from nlu.courtesy import strip_courtesy
from nlu.entities import extract_entities
from nlu.letters import demand_part, strip_formulae
from nlu.normalize import normalize
from nlu.timeparse import SHANGHAI
from nlu.topic import detect_topic
from nlu.types import BUSINESS_INTENTS, Entity, ParseResult

if TYPE_CHECKING:
    # aiohttp is imported only when the Rasa backend is used (it costs ~0.5 s to import).
    from nlu.rasa import RasaClient

__all__ = ["BACKENDS", "Interpreter", "from_env", "load_interpreter"]

log = logging.getLogger(__name__)

BACKENDS = ("yezhu", "rasa")
# A courtesy intent (greet/thanks) never wins over business that has at least this probability and
# a message long enough to carry it: 谢谢你们上次修好了水管这次厨房又漏了 is a repair.
_BUSINESS_FLOOR = 0.15
_COURTESY = frozenset({"greet", "thanks"})
# Weight of a letter's demand (its last sentences) against the whole text; see docs/NLU.md.
_DEMAND_WEIGHT = 0.4
# Rasa's FallbackClassifier answers nlu_fallback when unsure; for Yezhu's policy that is "other" with
# a low confidence, which already routes to a person.
_RASA_INTENT_ALIASES = {"nlu_fallback": "other"}


class Interpreter:
    """Parses owners' messages. Thread-safe and stateless after construction."""

    def __init__(self, classifier: IntentClassifier, *, backend: str = "yezhu",
                 rasa: RasaClient | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown NLU backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if backend == "rasa" and rasa is None:
            raise ValueError("the rasa backend needs a RasaClient (YEZHU_RASA_URL)")
        self.classifier = classifier
        self.backend = backend
        self.rasa = rasa

    # --- own model -----------------------------------------------------------------------------

    def parse(self, text: str, now: datetime | None = None) -> ParseResult:
        """Parse with the own model (synchronous, sub-millisecond). ``now`` anchors relative times
        (明天下午); default: the current time in Asia/Shanghai."""
        now = now or datetime.now(SHANGHAI)
        norm = normalize(text)
        if not norm.text.strip():
            return ParseResult(text=text, intent="other", confidence=0.0, normalized=norm.text, backend="yezhu")
        core = strip_courtesy(strip_formulae(norm.text))
        ranking = self._rank(core)
        intent, confidence = ranking[0]
        if intent in _COURTESY:
            intent, confidence = _business_behind_courtesy(core, ranking) or (intent, confidence)
        entities = extract_entities(norm, now)
        entities = _infer_category(intent, entities, len(text))
        return ParseResult(
            text=text,
            intent=intent,
            confidence=confidence,
            entities=tuple(entities),
            intent_ranking=tuple(ranking),
            normalized=norm.text,
            backend="yezhu",
            topic=detect_topic(core, intent).topic,
        )

    def _rank(self, core: str) -> list[tuple[str, float]]:
        """Intent ranking of the whole text; for a letter, mixed with the ranking of its demand (the
        request usually comes last), so the decision rests on the whole text and on what is asked."""
        probs = self.classifier.probabilities(core)
        demand = demand_part(core)
        if demand is not None:
            probs = (1.0 - _DEMAND_WEIGHT) * probs + _DEMAND_WEIGHT * self.classifier.probabilities(demand)
        classes, values = self.classifier.classes, probs.tolist()  # Python floats, not numpy scalars
        return [(classes[i], values[i]) for i in probs.argsort()[::-1].tolist()]

    # --- async entry point (both backends) -----------------------------------------------------

    async def aparse(self, text: str, now: datetime | None = None) -> ParseResult:
        """Parse with the configured backend; the Rasa backend falls back to the own model."""
        if self.backend != "rasa" or self.rasa is None:
            return self.parse(text, now)
        from nlu.rasa import RasaUnavailable

        try:
            answer = await self.rasa.parse(text)
        except RasaUnavailable as exc:
            log.warning("Rasa NLU server unavailable, using Yezhu's own model: %s", exc)
            return self.parse(text, now)
        return self._from_rasa(text, answer, now)

    def _from_rasa(self, text: str, answer: dict[str, Any], now: datetime | None) -> ParseResult:
        own = self.parse(text, now)  # for the normalised text and the rule entities
        intent = answer["intent"]
        entities: list[Entity] = []
        for item in answer.get("entities") or []:
            try:
                extra = {k: v for k, v in item.items() if k not in {"entity", "value", "start", "end"}}
                entities.append(Entity(str(item["entity"]), str(item["value"]), int(item["start"]),
                                       int(item["end"]), extra))
            except (KeyError, TypeError, ValueError):
                log.warning("ignoring malformed entity from Rasa: %r", item)
        rasa_topic = next((e.value for e in entities if e.entity == "topic"), None)
        entities = [e for e in entities if e.entity != "topic"]
        rasa_names = {e.entity for e in entities}
        entities += [e for e in own.entities if e.entity not in rasa_names]
        entities.sort(key=lambda e: (e.start, e.end))
        ranking: list[tuple[str, float]] = []
        for item in answer.get("intent_ranking") or []:
            if isinstance(item, dict) and "name" in item:
                name = str(item["name"])
                ranking.append((_RASA_INTENT_ALIASES.get(name, name), float(item.get("confidence", 0.0))))
        if not ranking:
            ranking = [(_RASA_INTENT_ALIASES.get(intent["name"], intent["name"]), float(intent["confidence"]))]
        return ParseResult(
            text=text,
            intent=_RASA_INTENT_ALIASES.get(str(intent["name"]), str(intent["name"])),
            confidence=float(intent["confidence"]),
            entities=tuple(entities),
            intent_ranking=tuple(ranking),
            normalized=own.normalized,
            backend="rasa",
            topic=rasa_topic or own.topic,
        )


def _business_behind_courtesy(core: str, ranking: list[tuple[str, float]]) -> tuple[str, float] | None:
    if sum(1 for ch in core if "\u4e00" <= ch <= "\u9fff") < 6:
        return None
    for name, prob in ranking:
        if name in BUSINESS_INTENTS and prob >= _BUSINESS_FLOOR:
            return name, prob
    return None


def _infer_category(intent: str, entities: list[Entity], length: int) -> list[Entity]:
    """A repair or complaint always has a category: ``other`` (spanning the message) when no rule
    named one, so that a ticket never lacks it."""
    wanted = {"repair": "repair_category", "complaint": "complaint_category"}.get(intent)
    if wanted is None or any(e.entity == wanted for e in entities):
        return entities
    return [*entities, Entity(wanted, "other", 0, length, {"inferred": True})]


_cache: dict[tuple[str, str | None, str], Interpreter] = {}
_cache_lock = threading.Lock()


def load_interpreter(backend: str = "yezhu", rasa_url: str | None = None,
                     model_dir: Path | None = None) -> Interpreter:
    """The interpreter for a backend, loading the shipped model (``nlu/model``) once per process."""
    directory = Path(model_dir) if model_dir is not None else MODEL_DIR
    key = (backend, rasa_url, str(directory.resolve()))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        if backend not in BACKENDS:
            raise ValueError(f"unknown NLU backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if backend == "rasa" and not rasa_url:
            raise ValueError("YEZHU_NLU_BACKEND=rasa needs YEZHU_RASA_URL")
        # Several interpreters (backends) over one model directory share the classifier.
        classifier = next((i.classifier for k, i in _cache.items() if k[2] == key[2]), None)
        classifier = classifier or IntentClassifier.load(directory)
        rasa = None
        if backend == "rasa" and rasa_url:
            from nlu.rasa import RasaClient

            rasa = RasaClient(rasa_url)
        interpreter = Interpreter(classifier, backend=backend, rasa=rasa)
        # One parse now builds the lazy tables (Traditional→Simplified map, regexes), so that the first
        # owner's message does not pay for them.
        interpreter.parse("你好")
        _cache[key] = interpreter
        return interpreter


def from_env(environ: Mapping[str, str] | None = None, model_dir: Path | None = None) -> Interpreter:
    """:func:`load_interpreter` configured from ``YEZHU_NLU_BACKEND`` and ``YEZHU_RASA_URL``."""
    env = os.environ if environ is None else environ
    backend = (env.get("YEZHU_NLU_BACKEND") or "yezhu").strip().lower()
    url = (env.get("YEZHU_RASA_URL") or "").strip() or None
    return load_interpreter(backend, url, model_dir)
