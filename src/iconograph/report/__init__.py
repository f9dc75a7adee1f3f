"""Evaluation reports: one self-contained HTML file."""

from iconograph.report.html import write_report

__all__ = ["write_report"]
