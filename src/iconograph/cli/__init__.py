"""The ``iconograph`` command: a thin Typer shell over the Python API.

Each module registers its commands on the shared ``app``; importing it is enough.
"""

import iconograph.cli.search  # noqa: F401  (registers index, search, export, serve)
from iconograph.cli import core  # noqa: F401  (registers classify, embed, evaluate)
from iconograph.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
