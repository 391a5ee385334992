"""Fixtures for the knowledge-base tests: the demo index is built once per session (jieba loads once)."""

from __future__ import annotations

import pytest

from knowledge import DEMO_KB, DEMO_SYNONYMS, KnowledgeIndex, load_synonyms, load_yaml


@pytest.fixture(scope="session")
def demo_index() -> KnowledgeIndex:
    return KnowledgeIndex.build(load_yaml(DEMO_KB), load_synonyms(DEMO_SYNONYMS))
