"""Image captions with BLIP-class captioners (transformers), batched and cached.

The text is what transformers' ``image-text-to-text`` pipeline (formerly ``image-to-text``)
returns for the same model, prompt and generation settings: with a ``prompt`` (conditional
captioning) the caption starts with the prompt as given. Captions are cached in the store by
(model, image processor, prompt, generation settings, image content), so a second run over the
same images generates nothing and an interrupted run resumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from iconograph.backends.base import DECODE_VERSION, resolve_device
from iconograph.backends.hf import HFModel, HFProcessorJob
from iconograph.engine.files import RecordWriter
from iconograph.engine.fingerprint import digest
from iconograph.engine.jobs import ImageJobRunner
from iconograph.engine.runs import RunStats
from iconograph.errors import OptionError
from iconograph.reading.sources import Item, read_collection

DEFAULT_CAPTIONER = "Salesforce/blip-image-captioning-base"


@dataclass(frozen=True)
class Caption:
    path: str
    text: str | None
    error: str | None = None

    def to_record(self) -> dict:
        return {"path": self.path, "caption": self.text, "error": self.error}


class Captioner(HFProcessorJob):
    """``Captioner(model, prompt="a photo of").caption(images)``; also an image job for the runner."""

    model_class = "AutoModelForImageTextToText"
    processor_class = "AutoProcessor"

    def __init__(
        self,
        model: str = DEFAULT_CAPTIONER,
        *,
        prompt: str | None = None,
        max_new_tokens: int = 30,
        num_beams: int = 1,
        device: str | None = None,
    ):
        self.spec = str(model)
        self.prompt = prompt or ""
        self.max_new_tokens = int(max_new_tokens)
        self.num_beams = int(num_beams)
        self.device = resolve_device(device)
        self.hf = HFModel(self.spec, kind="hf-captioner", what="a captioner (BLIP-class image-text-to-text models)")

    @property
    def generation_settings(self) -> dict:
        return {"prompt": self.prompt, "max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams}

    @property
    def cache_name(self) -> str:
        return "caption_" + digest(
            self.fingerprint, self.preprocess_fingerprint, self.generation_settings, DECODE_VERSION
        )

    def caption_pixels(self, pixels) -> list[str]:
        import torch

        count = len(pixels)
        tokens = self.processor.tokenizer([self.prompt] * count, return_tensors="pt", padding=True)
        tokens.pop("token_type_ids", None)
        with torch.inference_mode():
            generated = self.model.generate(
                pixel_values=pixels.to(self.device),
                **tokens.to(self.device),
                max_new_tokens=self.max_new_tokens,
                num_beams=self.num_beams,
            )
        texts = self.processor.post_process_image_text_to_text(generated.cpu(), skip_special_tokens=True)
        prompt_texts = self.processor.post_process_image_text_to_text(
            tokens["input_ids"].cpu(), skip_special_tokens=True
        )
        return [_full_text(self.prompt, text, decoded) for text, decoded in zip(texts, prompt_texts)]

    def run_batch(self, pixels, sizes: Sequence[tuple[int, int]]) -> list[dict]:
        return [{"caption": text} for text in self.caption_pixels(pixels)]

    def caption(self, images: Sequence) -> list[str]:
        """Captions for RGB PIL images (already upright)."""
        import torch

        preprocess = self.make_preprocess()
        return self.caption_pixels(torch.stack([preprocess(image) for image in images]))

    def __repr__(self) -> str:
        return f"Captioner({self.spec!r}, prompt={self.prompt!r})"


def _full_text(prompt: str, generated: str, decoded_prompt: str) -> str:
    # The pipeline's FULL_TEXT rule: drop the decoded prompt where the output starts with it (up
    # to two leading characters), then put the prompt back as the user wrote it.
    index = generated.find(decoded_prompt)
    if 0 <= index <= 2:
        generated = generated[index + len(decoded_prompt) :]
    return prompt + generated


def iter_captions(items: Sequence[Item | str], captioner: Captioner, runner: ImageJobRunner) -> Iterator[Caption]:
    paths = [item.path if isinstance(item, Item) else str(item) for item in items]
    for result in runner.run(paths):
        yield Caption(result.path, None if result.error else result.value["caption"], result.error)


def caption(
    sources: str | Iterable[str],
    *,
    model: str = DEFAULT_CAPTIONER,
    prompt: str | None = None,
    max_new_tokens: int = 30,
    num_beams: int = 1,
    device: str | None = None,
    **runner_options,
) -> list[Caption]:
    """Captions for every image in ``sources``.

    >>> ig.caption("shoes/", prompt="a product photo of")[0].text

    ``runner_options`` go to :class:`~iconograph.engine.jobs.ImageJobRunner` (``store``,
    ``use_cache``, ``batch_size``, ``workers``, ``progress``).
    """
    items, captioner, runner = _prepare(sources, model, prompt, max_new_tokens, num_beams, device, runner_options)
    return list(iter_captions(items, captioner, runner))


def run_captions(
    sources: str | Iterable[str],
    *,
    model: str = DEFAULT_CAPTIONER,
    prompt: str | None = None,
    max_new_tokens: int = 30,
    num_beams: int = 1,
    device: str | None = None,
    out: str | Path | None = None,
    **runner_options,
) -> RunStats:
    """:func:`caption` written as it runs to ``out`` (JSONL or CSV by suffix; ``None``: JSONL on
    stdout); returns the run's counts (``iconograph caption``)."""
    items, captioner, runner = _prepare(sources, model, prompt, max_new_tokens, num_beams, device, runner_options)
    captions = iter_captions(items, captioner, runner)
    _, failed = write_captions(captions, out)
    return RunStats(len(items), failed, runner.stats.computed, runner.stats.cached, out, "captioned")


def _prepare(sources, model, prompt, max_new_tokens, num_beams, device, runner_options):
    """Settings checked before anything is loaded; then the items, the captioner and its runner."""
    if max_new_tokens < 1 or num_beams < 1:
        raise OptionError(f"--max-new-tokens ({max_new_tokens}) and --num-beams ({num_beams}) must be at least 1")
    items = read_collection(sources)
    captioner = Captioner(model, prompt=prompt, max_new_tokens=max_new_tokens, num_beams=num_beams, device=device)
    return items, captioner, ImageJobRunner(captioner, description="captioning", **runner_options)


def write_captions(captions: Iterable[Caption], path: str | Path | None) -> tuple[int, int]:
    """JSONL (``{"path", "caption", "error"}``; stdout when ``path`` is None) or CSV/TSV by suffix,
    atomically; returns (count, failed)."""
    with RecordWriter(path, columns=("path", "caption", "error")) as writer:
        writer.write_all(c.to_record() for c in captions)
    return writer.count, writer.failed


def read_captions(path: str | Path) -> dict[str, str]:
    """Captions by resolved image path from a caption JSONL/CSV (errors left out); relative paths
    are taken relative to the working directory, as ``caption`` writes them."""
    from iconograph.reading.sources import path_key
    from iconograph.reading.textfiles import read_csv, read_jsonl

    path = Path(path)
    rows = read_csv(path) if path.suffix.lower() in (".csv", ".tsv") else read_jsonl(path)
    result = {}
    for _, row in rows:
        if row.get("caption") and not row.get("error"):
            result[path_key(row["path"])] = row["caption"]
    return result
