"""``DIR/report.html``: one self-contained page (thumbnails as data URIs), rendered by the shared,
autoescaping Jinja environment of every iconograph report."""

from __future__ import annotations

import base64
import io
from functools import cache
from pathlib import Path

from PIL import Image

from iconograph.engine.files import atomic_write_text
from iconograph.reading.decode import DecodeError, read_image

THUMBNAIL = 128
MAX_ROWS = 200  # clusters, outliers and label issues shown each; the JSONL files have them all


@cache
def thumbnail(path: str, side: int = THUMBNAIL) -> str | None:
    """A JPEG data URI of the image shrunk to ``side`` px, or None if it cannot be read."""
    try:
        image = read_image(path).image
    except DecodeError:
        return None
    image.thumbnail((side, side), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_report(result, title: str = "iconograph audit") -> str:
    from iconograph.evaluation.report.html import environment

    template = environment().from_string((Path(__file__).parent / "templates" / "report.html.j2").read_text())
    thumbnail.cache_clear()
    stats = result.run_stats()
    summary = [
        ("images", stats.total),
        ("failed", stats.failed),
        ("duplicate clusters", len(result.duplicates)),
        ("images in duplicate clusters", sum(r["size"] for r in result.duplicates)),
        ("outliers", len(result.outliers)),
    ]
    if result.label_issues is not None:
        summary.append(("label issues", len(result.label_issues)))
    return template.render(
        title=title,
        summary=summary,
        duplicates=result.duplicates[:MAX_ROWS],
        outliers=result.outliers[:MAX_ROWS],
        label_issues=None if result.label_issues is None else result.label_issues[:MAX_ROWS],
        threshold=result.outlier_threshold,
        max_rows=MAX_ROWS,
        thumbnail=thumbnail,
    )


def write_report(result, path: str | Path, title: str = "iconograph audit") -> Path:
    atomic_write_text(path, render_report(result, title))
    return Path(path)
