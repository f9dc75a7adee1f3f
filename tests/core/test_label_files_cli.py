"""Hostile label files and values as the user meets them: exit 2 and one line naming file and line."""

from __future__ import annotations

import json

import pytest

from tests.conftest import cifar_images, run_cli

PREDICTION = {"path": "a.jpg", "labels": [{"label": "cat", "score": 0.9}], "error": None}


def assert_one_line_error(result, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


HOSTILE_TRUTH = {
    "latin-1.csv": ("path,labels\na.jpg,cat\nb.jpg,caf\xe9\n".encode("latin-1"), "byte 0xe9 at line 3"),
    "utf16-no-bom.csv": ("path,labels\na.jpg,cat\n".encode("utf-16-le"), "line 1"),
    "big-field.csv": (b"path,labels\na.jpg,cat\nb.jpg," + b"x" * 1_100_000 + b"\n", "line 3: a field longer"),
    "unterminated.csv": (
        b"path,labels\n" + b"".join(b"i%d.jpg,%scat\n" % (i, b'"' if i == 5 else b"") for i in range(40)),
        "line 7",
    ),
    "extra-field.csv": (b"path,labels\na.jpg,cat\nb.jpg,dog,oops\n", "line 3 has 3 fields"),
    "nested.jsonl": (b'{"path": "a.jpg", "labels": "cat"}\n{"path": "b.jpg", "labels": [["dog"]]}\n', "line 2"),
    "conflict.csv": (b"path,labels\na.jpg,cat\nb.jpg,dog\n./a.jpg,dog\n", "lines 2 and 4"),
    "same.csv": (b"path,labels\na.jpg,cat\na.jpg,cat\n", "lines 2 and 3"),
    "empty.csv": (b"path,labels\na.jpg,\nb.jpg,\n", "every 'labels' value is empty"),
}


@pytest.mark.parametrize("name", HOSTILE_TRUTH)
def test_evaluate_refuses_hostile_truth_in_one_line(tmp_path, name):
    data, fragment = HOSTILE_TRUTH[name]
    truth = tmp_path / name
    truth.write_bytes(data)
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(json.dumps({**PREDICTION, "path": str(tmp_path / "a.jpg")}) + "\n")
    assert_one_line_error(run_cli("evaluate", predictions, "--truth", truth), str(truth), fragment)


def test_evaluate_reads_a_truth_csv_with_a_bom_and_refuses_a_nan_score(tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_bytes(b"\xef\xbb\xbfpath,labels\na.jpg,cat\nb.jpg,dog\n")
    predictions = tmp_path / "preds.jsonl"
    record = {**PREDICTION, "path": str(tmp_path / "a.jpg")}
    predictions.write_text(json.dumps(record) + "\n" + json.dumps({**record, "path": str(tmp_path / "b.jpg")}) + "\n")
    result = run_cli("evaluate", predictions, "--truth", truth, check=True)
    assert "accuracy" in result.stdout
    predictions.write_text(json.dumps(record) + "\n" + json.dumps(record).replace("0.9", "NaN"))
    assert_one_line_error(run_cli("evaluate", predictions, "--truth", truth), f"{predictions}: line 2", "finite")


def test_classify_strips_a_bom_from_the_labels_file_and_refuses_bad_label_files(tmp_path, tiny_clip):
    image = cifar_images(per_class=1)[0]
    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"\xef\xbb\xbfcat\ndog\n")
    out = tmp_path / "preds.jsonl"
    run_cli("classify", image, "--labels-file", labels, "--model", tiny_clip, "--out", out, check=True)
    assert {ls["label"] for ls in json.loads(out.read_text())["labels"]} == {"cat", "dog"}

    labels.write_bytes("cat\nchien\xe9\n".encode("latin-1"))
    result = run_cli("classify", image, "--labels-file", labels, "--model", tiny_clip)
    assert_one_line_error(result, str(labels), "line 2")


@pytest.mark.parametrize("value", ["nan", "inf", "2", "-1", "-0.1", "FILE:nan", "FILE:2", "FILE:-0.1"])
def test_classify_refuses_thresholds_outside_0_1(tmp_path, value):
    if value.startswith("FILE:"):
        path = tmp_path / "thresholds.csv"
        path.write_bytes(b"\xef\xbb\xbflabel,threshold\ncat,0.5\ndog," + value[5:].encode() + b"\n")
        value, fragments = str(path), (str(path), "line 3")
    else:
        fragments = (f"--threshold {value!r}",)
    result = run_cli("classify", "x.jpg", "--labels", "cat,dog", "--multi-label", "--threshold", value)
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize(
    "args",
    [
        ["classify", "x.jpg", "--labels", "a,b", "--top-k", "0"],
        ["classify", "x.jpg", "--labels", "a,b", "--top-k", "-3"],
        ["predict", "x.jpg", "--model", "m", "--top-k", "0"],
        ["index", "x.jpg", "--labels", "a,b", "--top-k", "0"],
        ["index", "x.jpg", "--labels", "a,b", "--threshold", "nan"],
        ["index", "x.jpg", "--labels", "a,b", "--threshold", "2"],
        ["detect", "x.jpg", "--queries", "a", "--threshold", "nan"],
        ["detect", "x.jpg", "--queries", "a", "--threshold", "-1"],
        ["train", "x.csv", "--out", "m", "--k", "0"],
        ["train", "x.csv", "--out", "m", "--C", "-1"],
        ["train", "x.csv", "--out", "m", "--C", "nan"],
    ],
    ids=lambda args: " ".join(args[:1] + args[-2:]),
)
def test_out_of_range_options_are_usage_errors(args):
    result = run_cli(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Invalid value" in result.stderr
