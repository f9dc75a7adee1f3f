"""The one reader of user text files: label lists, templates, truth, predictions, thresholds.

* Encoding: UTF-8, with or without a byte-order mark (it is dropped). A file with a UTF-16 BOM
  (what spreadsheets save as "Unicode text") is decoded as UTF-16. Anything else that is not
  UTF-8 (Latin-1, UTF-16 without a BOM) is a :class:`SourceError` naming the file and line.
* CSV/TSV: a header row, then rows with exactly as many fields; quotes are parsed strictly
  (an unterminated quote is an error at the line where it opened); no field over
  :data:`MAX_FIELD_SIZE` characters.
* JSONL: one JSON object per non-blank line.

Every error is a :class:`SourceError` with a one-line message that names the file (and line).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from iconograph.errors import UserError

MAX_FIELD_SIZE = 1024 * 1024  # characters in one CSV field (the csv module's default is 128 KiB)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class SourceError(UserError):
    """A source that cannot be read at all (missing, unknown format, malformed table)."""


def read_text(path: str | os.PathLike) -> str:
    """The file decoded as UTF-8 (BOM dropped) or, when it starts with a UTF-16 BOM, as UTF-16."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a folder, not a file") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise SourceError(f"{path}: broken UTF-16 text; save it as UTF-8") from None
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise SourceError(
                f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}); save it as UTF-8"
            ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise SourceError(f"{path}: not UTF-8 text (NUL byte at line {line}; UTF-16 without a BOM?); save it as UTF-8")
    return text


def read_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(line number, line) for every line, line breaks removed."""
    yield from enumerate(_LINE_BREAK.split(read_text(path)), start=1)


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; anything but a JSON object is an error."""
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise SourceError(f"{path}: line {number} is not a JSON object")
        yield number, record


def read_json(path: str | os.PathLike):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def read_csv(
    path: str | os.PathLike, delimiter: str | None = None, *, header: bool = True, multiline: bool = False
) -> Iterator[tuple[int, dict | list]]:
    """(line number, row) for every non-blank row: a dict by the header, or a list with ``header=False``.

    The line number is the row's first line. ``multiline=False`` rejects quoted fields that span
    lines; with ``True`` they are kept, but a quote left open to the end of the file is still an error.
    """
    path = Path(path)
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_SIZE + 1))
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter, strict=True)
    columns: list[str] | None = None
    end = 0
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SourceError(f"{path}: line {start}: {_csv_problem(str(exc))}") from None
        end = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        for value in row:
            if len(value) > MAX_FIELD_SIZE:
                raise SourceError(f"{path}: line {start}: a field longer than {MAX_FIELD_SIZE:,} characters")
            if not multiline and ("\n" in value or "\r" in value):
                raise SourceError(f"{path}: line {start}: a quoted field runs on to line {end} (unterminated quote?)")
        if not header:
            yield start, row
        elif columns is None:
            columns = [name.strip() for name in row]
            repeated = sorted({name for name in columns if columns.count(name) > 1})
            if repeated:
                raise SourceError(f"{path}: line {start}: column {repeated[0]!r} appears twice in the header")
        elif len(row) != len(columns):
            raise SourceError(f"{path}: line {start} has {len(row)} fields, the header has {len(columns)}")
        else:
            yield start, dict(zip(columns, row))


def _csv_problem(message: str) -> str:
    if "field larger than field limit" in message:
        return f"a field longer than {MAX_FIELD_SIZE:,} characters"
    if "unexpected end of data" in message:
        return "a quote opened here is never closed"
    return f"malformed CSV ({message}; a stray quote?)"
