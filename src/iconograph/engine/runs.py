"""What a batch run did, and its summary line (a command-line contract, written here once)::

    N images: A ok, B failed; C embeddings computed, D from cache -> OUT

A run may name what it computed otherwise (``4 captioned``) and append counts (``; 12 boxes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunStats:
    total: int = 0
    failed: int = 0
    computed: int = 0
    cached: int = 0
    out: str | Path | None = None
    computed_as: str = "embeddings computed"
    extra: tuple[str, ...] = ()

    @property
    def ok(self) -> int:
        return self.total - self.failed

    def summary(self) -> str:
        counts = "".join(f"; {text}" for text in self.extra)
        return (
            f"{self.total} images: {self.ok} ok, {self.failed} failed; "
            f"{self.computed} {self.computed_as}, {self.cached} from cache{counts}{self.destination}"
        )

    @property
    def destination(self) -> str:
        return f" -> {self.out}" if self.out else ""


@dataclass
class DescribeStats(RunStats):
    """Items rather than images, and no model cache to speak of: its own line."""

    truncated: int = 0

    def summary(self) -> str:
        return (
            f"{self.total} items: {self.ok} described, {self.failed} failed, "
            f"{self.truncated} cut to the word limit{self.destination}"
        )
