"""The ``iconograph`` command: a thin Typer shell over the Python API.

Each module registers its commands on the shared ``app``; importing it is enough.
:mod:`iconograph.cli.help` then orders them in data-flow order, in panels, with examples.
"""

from typing import Annotated, Optional

import typer

from iconograph.cli import active, audit, compare, core, detect, learn, search, segment  # noqa: F401  (learn COLLECTION; audit; compare; classify/embed/evaluate; detect/caption/describe/convert-boxes; train/predict/split/report; index/search/export/serve; segment)
from iconograph.cli.common import app
from iconograph.cli.help import present

COMPLETION_OPTIONS = ("install_completion", "show_completion")


def show_version(value: bool) -> None:
    if value:
        from iconograph._version import __version__

        typer.echo(f"iconograph {__version__}")
        raise typer.Exit()


@app.callback()
def iconograph(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit."),
    ] = None,
):
    """The options of ``iconograph`` itself (the help text is the app's)."""


present(app)


def command() -> typer.core.TyperGroup:
    """The click command of ``app``, with the shell-completion options kept but not listed."""
    group = typer.main.get_command(app)
    for param in group.params:
        if param.name in COMPLETION_OPTIONS:
            param.hidden = True
    return group


def main() -> None:
    command()()


__all__ = ["app", "command", "main"]
