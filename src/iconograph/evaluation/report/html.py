"""Render metrics into one self-contained HTML file (no external assets)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, PackageLoader

from iconograph.engine.files import atomic_write_text


@cache
def environment() -> Environment:
    """The one Jinja environment of every HTML report.

    Autoescaping is on for every template: labels, file names and review text are user data, and
    ``select_autoescape()`` would not match our ``.html.j2`` names. Data for scripts goes through
    Jinja's ``tojson`` filter, which escapes ``<``, ``>``, ``&`` and ``'`` inside ``<script>``.
    """
    return Environment(loader=PackageLoader("iconograph", "evaluation/report/templates"), autoescape=True)


def render_report(metrics: dict, title: str = "iconograph evaluation") -> str:
    headline = {k: v for k, v in metrics.items() if isinstance(v, float)}
    return environment().get_template("report.html.j2").render(title=title, metrics=metrics, headline=headline)


def write_report(metrics: dict, path: str | Path, title: str = "iconograph evaluation") -> Path:
    path = Path(path)
    atomic_write_text(path, render_report(metrics, title))
    return path
