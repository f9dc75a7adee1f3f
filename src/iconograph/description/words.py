"""Word counting and the word limit: cut at the last sentence end within the limit, or at a word."""

from __future__ import annotations

import re

SENTENCE_END = re.compile(r"[.!?…][\"'»«“”‘’)\]]*(?=\s|$)")
ELLIPSIS = "…"


def count_words(text: str) -> int:
    return len(text.split())


def limit_words(text: str, max_words: int) -> tuple[str, str | None]:
    """``(text, note)``: the text unchanged when within ``max_words``; otherwise cut at the last
    sentence end inside the limit (when that keeps at least half of it), else after the last
    whole word with an ellipsis, and a note that says what was done."""
    text = text.strip()
    words = text.split()
    if len(words) <= max_words:
        return text, None
    head = " ".join(words[:max_words])
    ends = [m.end() for m in SENTENCE_END.finditer(head)]
    if ends and count_words(head[: ends[-1]]) >= max_words / 2:
        cut = head[: ends[-1]]
        return cut, f"cut from {len(words)} to {count_words(cut)} words at a sentence end"
    cut = " ".join(words[: max(max_words, 1)]).rstrip(",;:-–") + ELLIPSIS
    return cut, f"cut from {len(words)} to {max_words} words mid-sentence (no sentence end within the limit)"
