"""Describe a collection: facts in, one text per item out (JSONL or CSV), in input order.

JSONL record::

    {"path": "...", "text": "...", "language": "de", "engine": "llm", "words": 87,
     "truncated": false, "note": null, "error": null}

LLM answers are cached in the store by the exact request (endpoint, model, messages,
temperature), so a rerun after an interruption or after per-item failures asks only for what is
missing; failures are never cached. Items are requested ``concurrency`` at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from iconograph.description.engines import DescribeError, LLMEngine, TemplateEngine
from iconograph.description.facts import ItemFacts, gather_facts
from iconograph.description.words import count_words, limit_words
from iconograph.engine.files import RecordWriter
from iconograph.engine.progress import progress_bar
from iconograph.engine.runs import DescribeStats
from iconograph.engine.store import RecordCache, Store
from iconograph.errors import OptionError

LLM_CACHE_TABLE = "describe_llm"


@dataclass(frozen=True)
class Description:
    path: str
    text: str | None
    language: str
    engine: str
    truncated: bool = False
    note: str | None = None
    error: str | None = None
    cached: bool = False

    @property
    def words(self) -> int:
        return count_words(self.text) if self.text else 0

    def to_record(self) -> dict:
        return {
            "path": self.path,
            "text": self.text,
            "language": self.language,
            "engine": self.engine,
            "words": self.words,
            "truncated": self.truncated,
            "note": self.note,
            "error": self.error,
        }


class Describer:
    """Turns :class:`ItemFacts` into texts with an engine, enforcing ``max_words``."""

    def __init__(
        self,
        engine: TemplateEngine | LLMEngine,
        *,
        language: str = "en",
        max_words: int = 120,
        concurrency: int = 4,
        store: Store | str | None = None,
        use_cache: bool = True,
        progress: bool | None = None,
    ):
        if max_words < 1:
            raise OptionError("--max-words must be at least 1")
        self.engine = engine
        self.language = language
        self.max_words = int(max_words)
        self.concurrency = max(1, int(concurrency))
        self.progress = progress
        cached = use_cache and isinstance(engine, LLMEngine)
        self.cache = (
            RecordCache(store if isinstance(store, Store) else Store(store), LLM_CACHE_TABLE) if cached else None
        )

    def close(self) -> None:
        """Close the engine's connections (an LLM client)."""
        if isinstance(self.engine, LLMEngine):
            self.engine.close()

    def describe(self, facts: Sequence[ItemFacts]) -> Iterator[Description]:
        """One description per item, in order; failed items carry an error and no text."""
        keys = self._cache_keys(facts)
        known = self.cache.lookup([k for k in keys if k]) if self.cache else {}
        workers = self.concurrency if isinstance(self.engine, LLMEngine) else 1
        with progress_bar(len(facts), "describing", self.progress) as advance, ThreadPoolExecutor(workers) as pool:
            for description in pool.map(lambda pair: self._one(*pair, known), zip(facts, keys)):
                advance(1)
                yield description
        if self.cache is not None:
            self.cache.compact()

    def _cache_keys(self, facts: Sequence[ItemFacts]) -> list[str | None]:
        if self.cache is None:
            return [None] * len(facts)
        return [self.engine.request_key(self.engine.request_body(f, self.language, self.max_words)) for f in facts]

    def _one(self, facts: ItemFacts, key: str | None, known: dict) -> Description:
        engine = self.engine.name
        if facts.empty:
            return Description(
                facts.path, None, self.language, engine, error="no attributes, tags or caption for this item"
            )
        cached = key in known if key else False
        try:
            raw = known[key]["text"] if cached else self.engine.describe(facts, self.language, self.max_words)
        except DescribeError as exc:
            return Description(facts.path, None, self.language, engine, error=str(exc))
        if key and not cached:
            self.cache.add([key], [{"text": raw}])
        text, note = limit_words(raw, self.max_words)
        return Description(facts.path, text, self.language, engine, note is not None, note, cached=cached)


def describe(
    sources: str | Iterable[str],
    *,
    attributes: str | Path | None = None,
    tags: str | Path | None = None,
    captions: str | Path | None = None,
    min_tag_score: float = 0.0,
    engine: str = "template",
    language: str = "en",
    max_words: int = 120,
    template: str | Path | None = None,
    example_text: str | None = None,
    example_file: str | Path | None = None,
    llm_url: str | None = None,
    llm_model: str | None = None,
    **options,
) -> list[Description]:
    """Item texts for every item in ``sources`` (image files, folders or a table of items).

    >>> ig.describe("shoes.csv", attributes="shoes.csv", language="de", max_words=120)[0].text

    ``example_text`` (or ``example_file``, read as UTF-8) shows the LLM the wanted style.
    ``options`` go to :class:`Describer` (``concurrency``, ``store``, ``use_cache``, ``progress``)
    and, for ``engine="llm"``, ``timeout``/``retries``/``temperature``/``api_key`` to
    :class:`LLMEngine`.
    """
    facts, describer = _prepare(
        sources,
        attributes=attributes,
        tags=tags,
        captions=captions,
        min_tag_score=min_tag_score,
        engine=engine,
        language=language,
        max_words=max_words,
        template=template,
        example_text=example_text,
        example_file=example_file,
        llm_url=llm_url,
        llm_model=llm_model,
        **options,
    )
    try:
        return list(describer.describe(facts))
    finally:
        describer.close()


def run_describe(
    sources: str | Iterable[str],
    *,
    attributes: str | Path | None = None,
    tags: str | Path | None = None,
    captions: str | Path | None = None,
    min_tag_score: float = 0.0,
    engine: str = "template",
    language: str = "en",
    max_words: int = 120,
    template: str | Path | None = None,
    example_text: str | None = None,
    example_file: str | Path | None = None,
    llm_url: str | None = None,
    llm_model: str | None = None,
    out: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    **options,
) -> DescribeStats:
    """:func:`describe` written as it runs to ``out`` (JSONL or CSV by suffix; ``None``: JSONL on
    stdout); ``log`` gets a ``path: error`` line per failed item (``iconograph describe``)."""
    facts, describer = _prepare(
        sources,
        attributes=attributes,
        tags=tags,
        captions=captions,
        min_tag_score=min_tag_score,
        engine=engine,
        language=language,
        max_words=max_words,
        template=template,
        example_text=example_text,
        example_file=example_file,
        llm_url=llm_url,
        llm_model=llm_model,
        **options,
    )
    stats = DescribeStats(len(facts), out=out)

    def counted():
        for item in descriptions:
            stats.truncated += item.truncated
            if item.error and log:
                log(f"{item.path}: {item.error}")
            yield item

    try:
        descriptions = describer.describe(facts)
        _, stats.failed = write_descriptions(counted(), out)
    finally:
        describer.close()
    return stats


def _prepare(
    sources,
    *,
    attributes,
    tags,
    captions,
    min_tag_score,
    engine,
    language,
    max_words,
    template,
    example_text,
    example_file,
    llm_url,
    llm_model,
    **options,
) -> tuple[list[ItemFacts], Describer]:
    """Options checked before anything is read; then the facts and the describer."""
    from iconograph.reading.sources import read_collection

    if engine == "template" and (llm_url or llm_model or example_text or example_file):
        raise OptionError("--llm-url, --llm-model and --example-text need --engine llm")
    if engine == "template" and template is None:
        shipped = TemplateEngine().available_languages()
        if language not in shipped:
            raise OptionError(
                f"no template for language '{language}' (shipped: {', '.join(shipped)}); "
                "pass --template FILE.j2 or use --engine llm"
            )
    if example_file is not None:
        example_text = Path(example_file).read_text(encoding="utf-8")
    llm_options = {
        k: options.pop(k) for k in ("timeout", "retries", "temperature", "api_key", "backoff") if k in options
    }
    chosen = make_engine(
        engine, template=template, example_text=example_text, llm_url=llm_url, llm_model=llm_model, **llm_options
    )
    facts = gather_facts(
        read_collection(sources), attributes=attributes, tags=tags, captions=captions, min_tag_score=min_tag_score
    )
    return facts, Describer(chosen, language=language, max_words=max_words, **options)


def make_engine(name: str, *, template=None, example_text=None, llm_url=None, llm_model=None, **llm_options):
    if name == "template":
        return TemplateEngine(template)  # LLM options are for the LLM engine only
    if name == "llm":
        return LLMEngine(llm_url, llm_model, example_text=example_text, **llm_options)
    raise OptionError(f"unknown engine {name!r}: use 'template' or 'llm'")


def write_descriptions(descriptions: Iterable[Description], path: str | Path | None) -> tuple[int, int]:
    """JSONL (stdout when ``path`` is None), or CSV/TSV by suffix (``path, text, language, words,
    truncated, note, error``), atomically; returns (count, failed)."""
    columns = ("path", "text", "language", "words", "truncated", "note", "error")
    with RecordWriter(path, columns=columns) as writer:
        writer.write_all(d.to_record() for d in descriptions)
    return writer.count, writer.failed
