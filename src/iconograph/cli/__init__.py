"""The ``iconograph`` command: a thin Typer shell over the Python API.

Each module registers its commands on the shared ``app``; importing it is enough.
"""

from iconograph.cli import active, audit, compare, core, detect, learn, search, segment  # noqa: F401  (learn COLLECTION; audit; compare; classify/embed/evaluate; detect/caption/describe/convert-boxes; train/predict/split/report; index/search/export/serve; segment)
from iconograph.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
