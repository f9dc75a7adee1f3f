"""Render metrics into one self-contained HTML file (no external assets)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from iconograph.io import atomic_write_text


def _environment() -> Environment:
    return Environment(loader=PackageLoader("iconograph", "report/templates"), autoescape=select_autoescape())


def render_report(metrics: dict, title: str = "iconograph evaluation") -> str:
    headline = {k: v for k, v in metrics.items() if isinstance(v, float)}
    return _environment().get_template("report.html.j2").render(title=title, metrics=metrics, headline=headline)


def write_report(metrics: dict, path: str | Path, title: str = "iconograph evaluation") -> Path:
    path = Path(path)
    atomic_write_text(path, render_report(metrics, title))
    return path
