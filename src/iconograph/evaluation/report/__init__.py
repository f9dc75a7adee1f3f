"""Evaluation reports: one self-contained HTML file.

``write_report(metrics, path)`` renders the metrics alone; ``write_full_report(predictions,
truth, path)`` renders the full report (plots, images, embedding map) and its PNGs.
"""

from iconograph.evaluation.report.html import write_report


def write_full_report(*args, **kwargs):
    from iconograph.evaluation.report.full import write_full_report as write

    return write(*args, **kwargs)


__all__ = ["write_full_report", "write_report"]
