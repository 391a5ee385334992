"""The FAQ knowledge base (知识库): file format, retrieval, evaluation.

Public API::

    from knowledge import load_yaml, dump_yaml, load_synonyms, KnowledgeIndex
    index = KnowledgeIndex.build(load_yaml(DEMO_KB), load_synonyms(DEMO_SYNONYMS))
    answer = index.answer("房本什么时候能领", project="demo")
    answer.decision   # "answered" | "choices" | "unknown"

The database layer (bot/store) only needs :func:`load_yaml` / :func:`dump_yaml` to import and export
files and :meth:`KnowledgeIndex.build` (or :meth:`KnowledgeIndex.rebuild`) over the stored entries.
``knowledge`` imports nothing of ours but ``nlu`` (normalisation and word segmentation).
"""

from __future__ import annotations

from pathlib import Path

from knowledge.evaluate import EvalReport, load_paraphrases
from knowledge.retrieval import Answer, Decision, Hit, KnowledgeIndex, RetrievalConfig
from knowledge.schema import KnowledgeFormatError, KnowledgeItem, dump_yaml, load_synonyms, load_yaml
from knowledge.text import Analyzer

DATA_DIR = Path(__file__).parent / "data"
DEMO_KB = DATA_DIR / "demo.yml"
DEMO_SYNONYMS = DATA_DIR / "synonyms.yml"
DEMO_PARAPHRASES = DATA_DIR / "paraphrases.yml"

__all__ = [
    "DATA_DIR",
    "DEMO_KB",
    "DEMO_PARAPHRASES",
    "DEMO_SYNONYMS",
    "Analyzer",
    "Answer",
    "Decision",
    "EvalReport",
    "Hit",
    "KnowledgeFormatError",
    "KnowledgeIndex",
    "KnowledgeItem",
    "RetrievalConfig",
    "dump_yaml",
    "load_paraphrases",
    "load_synonyms",
    "load_yaml",
]
