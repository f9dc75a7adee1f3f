"""Exit status 2 is for a user's mistake only (one line); a bug keeps its traceback (exit 1); and the
Python API refuses what the command line refuses, with the same error."""

from __future__ import annotations

import subprocess
import sys

import pytest

import iconograph as ig
from iconograph.errors import OptionError, UserError, one_line


def invoke(*args):
    from typer.testing import CliRunner

    from iconograph.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path)
    return path


@pytest.mark.parametrize("error", [ValueError("internal"), RuntimeError("internal"), KeyError("internal")])
def test_an_unexpected_exception_is_exit_1_and_not_swallowed(monkeypatch, image, error):
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr("iconograph.classification.classify.run_classify", broken)
    result = invoke("classify", image, "--labels", "a,b")
    assert result.exit_code == 1
    assert result.exception is error
    assert "error:" not in result.stderr


def test_a_bug_prints_its_traceback_from_the_command(tmp_path, image):
    """The installed command, in a fresh process: a library bug is Python's traceback and status 1."""
    script = (
        "import sys, iconograph.classification.classify as c\n"
        "def broken(*a, **k): raise ValueError('internal')\n"
        "c.run_classify = broken\n"
        "from iconograph.cli import main\n"
        f"sys.argv = ['iconograph', 'classify', {str(image)!r}, '--labels', 'a,b']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ValueError: internal" in result.stderr


def test_a_user_error_is_exit_2_with_one_line(monkeypatch, image):
    def refuse(*args, **kwargs):
        raise OptionError("this option\n  cannot be\tused " + "x" * 2000)

    monkeypatch.setattr("iconograph.classification.classify.run_classify", refuse)
    result = invoke("classify", image, "--labels", "a,b")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: this option cannot be used x")
    assert len(lines[0]) < 600 and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["classify", "{image}", "--labels", "a", "--labels-file", "{image}"], "exactly one of --labels"),
        (["classify", "{image}", "--labels", "a,b", "--threshold", "2"], "not a number from 0 to 1"),
        (["detect", "{image}", "--queries", "a", "--queries-file", "{image}"], "--queries or --queries-file"),
        (["detect", "{image}", "--queries", "a", "--out", "{image}.txt"], "give --format"),
        (["describe", "{image}", "--llm-url", "http://x"], "need --engine llm"),
        (["describe", "{image}", "--language", "xx"], "no template for language 'xx'"),
        (["embed", "{missing}"], "missing"),
        (["train", "{image}", "--out", "{image}.model", "--head", "forest"], "--head must be one of"),
    ],
)
def test_user_mistakes_in_each_area_are_exit_2_with_one_line(image, tmp_path, args, expected):
    names = {"image": image, "missing": tmp_path / "missing"}
    result = invoke(*(a.format(**names) for a in args))
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_python_api_refuses_what_the_command_line_refuses(image):
    with pytest.raises(OptionError, match="exactly one of --labels or --labels-file"):
        ig.classify(image, ["a"], labels_file=image)
    with pytest.raises(OptionError, match="--queries or --queries-file, not both"):
        ig.detect(image, ["a"], queries_file=image)
    with pytest.raises(OptionError, match="need --engine llm"):
        ig.describe(image, llm_url="http://localhost:1/v1")
    with pytest.raises(OptionError, match="no template for language 'xx'"):
        ig.describe(image, language="xx")
    with pytest.raises(OptionError, match="must be at least 1"):
        ig.caption(image, num_beams=0)


def test_user_error_classes_share_one_base():
    from iconograph.backends import ModelNotFoundError
    from iconograph.classification.zeroshot import LabelError
    from iconograph.description import DescribeError
    from iconograph.detection import QueryError
    from iconograph.learning.model_folder import ModelDirError
    from iconograph.reading.textfiles import SourceError
    from iconograph.search import CollectionError, ReviewError
    from iconograph.search.collection import NotInCollection, PathRefused

    for cls in (
        SourceError,
        LabelError,
        ModelNotFoundError,
        CollectionError,
        PathRefused,
        NotInCollection,
        ReviewError,
        QueryError,
        DescribeError,
        ModelDirError,
    ):
        assert issubclass(cls, UserError) and issubclass(cls, ValueError), cls


def test_one_line_collapses_whitespace_and_clips():
    assert one_line("a\n  b\tc") == "a b c"
    assert len(one_line("x" * 5000)) == 500 and one_line("x" * 5000).endswith("…")


def test_a_malformed_box_predictions_file_is_a_user_error(tmp_path):
    predictions = tmp_path / "boxes.jsonl"
    predictions.write_text('{"path": "a.jpg", "boxes": [{"label": "x", "score": 0.5, "xyxy": [1, 2]}]}\n')
    truth = tmp_path / "truth.json"
    truth.write_text('{"images": [], "annotations": [], "categories": []}')
    result = invoke("evaluate", predictions, "--truth", truth)
    assert result.exit_code == 2, result.output
    assert "line 1 is not a detection record" in result.stderr
