"""Word segmentation (分词) with the property-domain dictionary.

This module owns the one jieba instance of the process. jieba's default dictionary takes about a
second to load, so it is loaded lazily, once, on first use (thread-safe), into a dedicated
``jieba.Tokenizer`` — never the global one, whose dictionary other code may change — and with jieba's
logging silenced. The domain dictionary (``resources/domain_dict.txt``: 楼栋, 单元, 房产证, 不动产权证,
维修基金, 地漏, 入户门, 可视对讲 …) keeps the words owners and staff use in one piece, which matters
for the knowledge base's BM25 ranking. The same file is exported for Rasa's JiebaTokenizer.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from nlu.normalize import normalize

if TYPE_CHECKING:
    import jieba

__all__ = ["DOMAIN_DICT", "domain_words", "get_jieba", "tokenize", "tokenize_normalized"]

DOMAIN_DICT = Path(__file__).parent / "resources" / "domain_dict.txt"

_lock = threading.Lock()
_tokenizer: jieba.Tokenizer | None = None
# Tokens that are only separators carry nothing for retrieval or classification.
_SEPARATORS = frozenset(" ,.!?;:~-\"'()[]/\\|*&^%$@`_+=<>{}")


def domain_words() -> list[str]:
    """The words of the property-domain dictionary."""
    words = []
    for line in DOMAIN_DICT.read_text(encoding="utf-8").splitlines():
        if line.strip():
            words.append(line.split()[0])
    return words


def get_jieba() -> jieba.Tokenizer:
    """The process-wide jieba tokenizer with the domain dictionary (initialised on first call)."""
    global _tokenizer
    if _tokenizer is not None:
        return _tokenizer
    with _lock:
        if _tokenizer is None:
            # Imported here: importing jieba costs ~0.3 s (it pulls in pkg_resources) that a process
            # which only classifies intents never needs to pay.
            import jieba

            jieba.setLogLevel(logging.WARNING)
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()
            # An open file, not a path: given a path, jieba never closes the file (ResourceWarning).
            with DOMAIN_DICT.open("rb") as handle:
                tokenizer.load_userdict(handle)
            _tokenizer = tokenizer
    return _tokenizer


def tokenize_normalized(text: str) -> list[str]:
    """Segment text that is already normalised (see :func:`nlu.normalize.normalize`)."""
    return [tok for tok in get_jieba().lcut(text, HMM=True) if tok.strip() and tok not in _SEPARATORS]


def tokenize(text: str) -> list[str]:
    """Normalise, then segment into words; separators and spaces are dropped.

    ``tokenize("三栋二单元的地漏返水了！")`` → ``["3", "栋", "2", "单元", "的", "地漏", "返水", "了"]``.
    """
    return tokenize_normalized(normalize(text).text)
