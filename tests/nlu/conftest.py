"""Fixtures of the NLU tests: the shipped interpreter (loaded once) and a fixed reference time."""

from __future__ import annotations

from datetime import datetime

import pytest

from nlu.pipeline import Interpreter, load_interpreter
from nlu.timeparse import SHANGHAI

# Thursday 20 November 2025, 10:00 in Shanghai: every relative time in the tests resolves from here.
NOW = datetime(2025, 11, 20, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture(scope="session")
def interpreter() -> Interpreter:
    return load_interpreter()


@pytest.fixture
def now() -> datetime:
    return NOW
