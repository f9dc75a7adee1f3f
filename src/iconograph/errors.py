"""The one base class of mistakes a user can fix, and the one-line form of their messages.

A :class:`UserError` names what to change: an argument, an option, a file or a model name. The
command line prints it as ``error: <one line>`` with exit status 2; every other exception is a
bug and keeps its traceback. It is a ``ValueError``, so code that caught ``ValueError`` before
still catches it.
"""

from __future__ import annotations

MAX_MESSAGE = 500


def one_line(message: object, limit: int = MAX_MESSAGE) -> str:
    """The message with its whitespace collapsed to single spaces, clipped to ``limit`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class UserError(ValueError):
    """A mistake in what the user gave (arguments, options, files, model names); one line for the user.

    ``cli_message``: the same message in the command line's terms (``--model DIR`` where Python
    says "the model argument"); the command line prints it instead of ``str(error)``.
    """

    def __init__(self, message: object = "", *, cli_message: str | None = None):
        super().__init__(message)
        self.cli_message = cli_message

    def one_line(self) -> str:
        return one_line(self)

    def cli_line(self) -> str:
        return one_line(self.cli_message or self)


class OptionError(UserError):
    """Options that cannot be used together, or an option value outside what it accepts."""


class DataError(UserError):
    """Inputs that can be read but not used as asked: no labelled image, fewer than two classes."""


class ResourceError(UserError):
    """A job that does not fit where it runs as configured: a worker killed again and again on
    the same batch (out of memory, most often)."""
