"""Captions: parity with transformers' image-text-to-text pipeline, caching, errors."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_captions_equal_the_transformers_pipeline(tiny_blip, raccoon_images, tmp_path):
    from transformers import pipeline

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    sources = [raccoon_images[0], broken, *raccoon_images[1:]]
    common = ["--model", tiny_blip, "--max-new-tokens", "12", "--batch-size", "3", "--store", tmp_path / "store"]
    result = run_cli("caption", *sources, *common, "--out", tmp_path / "plain.jsonl", check=True)
    assert "5 images: 4 ok, 1 failed; 4 captioned, 0 from cache" in result.stderr
    prompted = run_cli(
        "caption", *sources, *common, "--prompt", "A photo of", "--out", tmp_path / "prompted.jsonl", check=True
    )
    assert "4 captioned" in prompted.stderr  # another prompt is another cache entry

    # image-to-text is called image-text-to-text in transformers 5; BLIP captions unconditionally with text=""
    captioner = pipeline("image-text-to-text", model=str(tiny_blip))
    for name, prompt in (("plain.jsonl", ""), ("prompted.jsonl", "A photo of")):
        records = read_jsonl(tmp_path / name)
        assert [r["path"] for r in records] == [str(s) for s in sources]
        assert records[1]["caption"] is None and records[1]["error"] == "empty file (0 bytes)"
        expected = [
            captioner(images=str(path), text=prompt, max_new_tokens=12)[0]["generated_text"] for path in raccoon_images
        ]
        assert [r["caption"] for r in records if r["error"] is None] == expected
        assert len(set(expected)) > 1  # the images lead to different captions
        assert all(text.startswith(prompt) for text in expected)


def test_second_run_is_served_from_the_cache(tiny_blip, raccoon_images, tmp_path):
    import iconograph as ig
    from iconograph.description.captions import Captioner, iter_captions
    from iconograph.engine.jobs import ImageJobRunner

    def run(**options):
        captioner = Captioner(str(tiny_blip), max_new_tokens=8, **options)
        runner = ImageJobRunner(captioner, store=tmp_path / "store", progress=False, batch_size=2)
        return [c.text for c in iter_captions(raccoon_images, captioner, runner)], runner.stats

    first, stats = run()
    assert (stats.computed, stats.cached) == (4, 0)
    second, stats = run()
    assert (stats.computed, stats.cached) == (0, 4) and second == first
    _, stats = run(num_beams=2)
    assert stats.computed == 4
    assert [
        c.text
        for c in ig.caption(raccoon_images, model=str(tiny_blip), max_new_tokens=8, use_cache=False, progress=False)
    ] == first
