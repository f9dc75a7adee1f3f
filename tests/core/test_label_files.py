"""Hostile label, truth, prediction and threshold files: read right, or one-line errors naming file and line."""

from __future__ import annotations

import json
import math

import pytest

from iconograph.classification.decisions import check_threshold
from iconograph.classification.results import Prediction, read_predictions
from iconograph.classification.zeroshot import (
    LabelError,
    ZeroShotClassifier,
    load_templates,
    read_labels_file,
    read_thresholds,
)
from iconograph.evaluation.metrics import evaluate, read_truth
from iconograph.reading.sources import MAX_LABEL_LENGTH, SourceError, read_collection
from iconograph.reading.textfiles import MAX_FIELD_SIZE

BOM = b"\xef\xbb\xbf"


def write(path, data: bytes | str):
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---- encodings -------------------------------------------------------------------------------


def test_a_utf8_bom_is_dropped_in_every_kind_of_file(tmp_path):
    assert read_labels_file(write(tmp_path / "labels.txt", BOM + b"cat\ndog\n")) == ["cat", "dog"]
    assert load_templates(str(write(tmp_path / "t.txt", BOM + b"a photo of {}.\n"))) == ["a photo of {}."]
    assert read_thresholds(write(tmp_path / "th.csv", BOM + b"label,threshold\ncat,0.3\n")) == {"cat": 0.3}
    truth = read_truth(write(tmp_path / "truth.csv", BOM + b"path,labels\na.jpg,cat\n"))
    assert [(item.path, item.labels) for item in truth] == [(str(tmp_path / "a.jpg"), ("cat",))]
    jsonl = read_truth(write(tmp_path / "truth.jsonl", BOM + b'{"path": "a.jpg", "labels": ["cat"]}\n'))
    assert jsonl[0].labels == ("cat",)
    preds = read_predictions(write(tmp_path / "p.csv", BOM + b"path,labels,scores,error\na.jpg,cat,0.9,\n"))
    assert preds == [Prediction("a.jpg", (("cat", 0.9),))]
    assert [i.path for i in read_collection(write(tmp_path / "list.txt", BOM + b"a.jpg\n"))] == [
        str(tmp_path / "a.jpg")
    ]


def test_utf16_with_a_bom_is_decoded(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text("path,labels\na.jpg,café\n", encoding="utf-16")
    assert read_truth(path)[0].labels == ("café",)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n", encoding="utf-16")
    assert read_labels_file(labels) == ["cat", "dog"]


@pytest.mark.parametrize(
    "data, expected",
    [
        ("path,labels\na.jpg,cat\nb.jpg,café\n".encode("latin-1"), "byte 0xe9 at line 3"),
        ("path,labels\na.jpg,cat\n".encode("utf-16-le"), "NUL byte at line 1"),
    ],
    ids=["latin-1", "utf-16-without-bom"],
)
def test_text_that_is_not_utf8_is_an_error_naming_file_and_line(tmp_path, data, expected):
    path = write(tmp_path / "truth.csv", data)
    for read in (read_truth, read_predictions, read_thresholds, read_labels_file):
        with pytest.raises(SourceError) as exc:
            read(path)
        message = one_line(exc)
        assert message.startswith(f"{path}: not UTF-8 text") and expected in message and "save it as UTF-8" in message


# ---- CSV structure ----------------------------------------------------------------------------


def test_fields_up_to_the_documented_size_are_read_and_longer_ones_are_errors(tmp_path):
    note = "x" * 200_000  # above the csv module's default limit (131072), which used to be a traceback
    items = read_truth(write(tmp_path / "ok.csv", f"path,labels,note\na.jpg,cat,{note}\n"))
    assert items[0].meta["note"] == note
    path = write(tmp_path / "big.csv", f"path,labels,note\na.jpg,cat,ok\nb.jpg,cat,{'x' * (MAX_FIELD_SIZE + 1)}\n")
    with pytest.raises(SourceError) as exc:
        read_truth(path)
    assert one_line(exc).startswith(f"{path}: line 3: a field longer than")
    with pytest.raises(SourceError, match="line 2: a field longer than"):
        read_predictions(write(tmp_path / "p.csv", f"path,labels,scores,error\n{'y' * 2_000_000},,,\n"))


def unterminated(rows: int = 40, at: int = 7, closed_later: bool = False) -> str:
    lines = ["path,labels"] + [f"img{i}.jpg,cat" for i in range(rows)]
    lines[at] = lines[at].replace(",cat", ',"cat')
    if closed_later:
        lines[at + 5] = lines[at + 5].replace(",cat", ',cat"')
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("closed_later", [False, True], ids=["runs-to-eof", "closed-rows-later"])
def test_an_unterminated_quote_is_an_error_at_the_line_where_it_opened(tmp_path, closed_later):
    path = write(tmp_path / "truth.csv", unterminated(closed_later=closed_later))
    with pytest.raises(SourceError) as exc:
        read_truth(path)
    assert one_line(exc).startswith(f"{path}: line 8")  # the header is line 1, the quote is on row 7


def test_a_quote_that_closes_cleanly_after_swallowing_rows_is_caught_by_the_label_check(tmp_path):
    path = write(tmp_path / "truth.csv", 'path,labels\na.jpg,"cat\nb.jpg,dog\nc.jpg,"\nd.jpg,cat\n')
    with pytest.raises(SourceError, match=r"line 2: .*U\+000A \(an unterminated quote\?\)"):
        read_truth(path)
    with pytest.raises(SourceError, match="line 2: a quoted field runs on to line 4"):
        read_predictions(path)


def test_multi_line_quoted_notes_are_kept_in_dataset_files(tmp_path):
    items = read_collection(write(tmp_path / "t.csv", 'path,labels,note\na.jpg,cat,"two\nlines"\nb.jpg,dog,x\n'))
    assert [i.meta["note"] for i in items] == ["two\nlines", "x"]


@pytest.mark.parametrize("row, count", [("a.jpg,cat,extra", 3), ("a.jpg", 1)])
def test_rows_with_too_many_or_too_few_fields_are_errors(tmp_path, row, count):
    path = write(tmp_path / "truth.csv", f"path,labels\nb.jpg,dog\n{row}\n")
    with pytest.raises(SourceError) as exc:
        read_truth(path)
    assert one_line(exc) == f"{path}: line 3 has {count} fields, the header has 2"


# ---- labels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, kind",
    [([["cat"]], "a nested list"), ({"cat": 1}, "an object"), (3, "a number"), (True, "a boolean"), ([1], "")],
)
def test_jsonl_labels_must_be_a_string_or_a_flat_list_of_strings(tmp_path, labels, kind):
    text = json.dumps({"path": "a.jpg", "labels": "cat"}) + "\n" + json.dumps({"path": "b.jpg", "labels": labels})
    path = write(tmp_path / "truth.jsonl", text + "\n")
    with pytest.raises(SourceError) as exc:
        read_truth(path)
    assert one_line(exc).startswith(f"{path}: line 2: 'labels' must be") and kind in str(exc.value)


def test_null_or_missing_labels_mean_unlabelled_and_labels_are_stripped(tmp_path):
    rows = [{"path": "a.jpg", "labels": [" cat ", ""]}, {"path": "b.jpg", "labels": None}, {"path": "c.jpg"}]
    path = write(tmp_path / "t.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert [i.labels for i in read_collection(path)] == [("cat",), None, None]


@pytest.mark.parametrize(
    "label, problem", [("ca\x07t", r"control character U\+0007"), ("x" * (MAX_LABEL_LENGTH + 1), "longer than 200")]
)
def test_labels_with_control_characters_or_too_long_are_errors_everywhere(tmp_path, label, problem):
    assert MAX_LABEL_LENGTH == 200
    truth = write(tmp_path / "t.jsonl", json.dumps({"path": "a.jpg", "labels": [label]}) + "\n")
    with pytest.raises(SourceError, match=f"{truth}: line 1: .*{problem}"):
        read_truth(truth)
    labels_file = write(tmp_path / "labels.txt", f"dog\n{label}\n")
    with pytest.raises(LabelError, match=f"{labels_file}: line 2: .*{problem}"):
        read_labels_file(labels_file)
    with pytest.raises(LabelError, match=problem):
        ZeroShotClassifier(["dog", label])
    preds = write(tmp_path / "p.jsonl", json.dumps({"path": "a.jpg", "labels": [{"label": label, "score": 1}]}))
    with pytest.raises(SourceError, match=f"{preds}: line 1: .*{problem}"):
        read_predictions(preds)
    assert len(read_labels_file(write(tmp_path / "ok.txt", "y" * MAX_LABEL_LENGTH + "\n"))[0]) == MAX_LABEL_LENGTH


@pytest.mark.parametrize(
    "record, problem",
    [
        ({"path": 3, "labels": []}, "'path' must be"),
        ({"path": "a.jpg", "labels": [{"label": "cat", "score": "NaN"}]}, "not a finite number"),
        ({"path": "a.jpg", "labels": [{"label": "cat"}]}, "not a number"),
        ({"path": "a.jpg", "labels": ["cat"]}, "'labels' must be a list of"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_malformed_prediction_records_name_their_line(tmp_path, record, problem):
    good = {"path": "b.jpg", "labels": [{"label": "cat", "score": 0.5}], "error": None}
    path = write(tmp_path / "p.jsonl", json.dumps(good) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(SourceError) as exc:
        read_predictions(path)
    assert one_line(exc).startswith(f"{path}: line 2") and problem in str(exc.value)


# ---- duplicates and empty truth -----------------------------------------------------------------


@pytest.mark.parametrize(
    "second", ["a.jpg,cat", "a.jpg,dog", "./a.jpg,dog", "sub/../a.jpg,cat", "ABSOLUTE,dog", "link.jpg,dog"]
)
def test_an_image_listed_twice_is_an_error_naming_both_lines(tmp_path, second):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.jpg").symlink_to(tmp_path / "a.jpg")
    second = second.replace("ABSOLUTE", str(tmp_path / "a.jpg"))
    path = write(tmp_path / "truth.csv", f"path,labels\na.jpg,cat\nb.jpg,dog\n{second}\n")
    with pytest.raises(SourceError) as exc:
        read_truth(path)
    assert one_line(exc).startswith(f"{path}: lines 2 and 4 name the same image")


def test_an_image_folder_with_one_file_in_two_classes_is_an_error(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
    (tmp_path / "cat" / "a.jpg").write_bytes(b"x")
    (tmp_path / "dog" / "a.jpg").symlink_to(tmp_path / "cat" / "a.jpg")
    with pytest.raises(SourceError, match="name the same image"):
        read_truth(tmp_path)


def test_evaluate_refuses_truth_given_twice_under_two_spellings(tmp_path):
    predictions = [Prediction(str(tmp_path / "a.jpg"), (("cat", 1.0),))]
    with pytest.raises(SourceError, match="name the same image"):
        evaluate(predictions, {str(tmp_path / "a.jpg"): ["cat"], str(tmp_path / "." / "x" / ".." / "a.jpg"): ["dog"]})


def test_truth_whose_labels_are_all_empty_is_refused(tmp_path):
    path = write(tmp_path / "truth.csv", "path,labels\na.jpg,\nb.jpg, ; \n")
    with pytest.raises(SourceError) as exc:
        read_truth(path)
    assert one_line(exc) == f"{path}: every 'labels' value is empty, so there is nothing to evaluate or learn"
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate([Prediction("a.jpg", (("cat", 1.0),))], {"a.jpg": []})
    # an image with no labels among labelled ones is a multi-label "no tags" truth, and fine
    assert [i.labels for i in read_truth(write(tmp_path / "ok.csv", "path,labels\na.jpg,\nb.jpg,cat\n"))] == [
        (),
        ("cat",),
    ]


# ---- thresholds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "2", "-0.1", "1.0001", "high", ""])
def test_threshold_files_with_values_outside_0_1_are_errors_naming_the_line(tmp_path, value):
    path = write(tmp_path / "th.csv", f"label,threshold\ncat,0.3\ndog,{value}\n")
    with pytest.raises(LabelError) as exc:
        read_thresholds(path)
    assert one_line(exc).startswith(f"{path}: line 3:")


@pytest.mark.parametrize("value", [math.nan, math.inf, 2, -0.1, True, "0.5"])
def test_threshold_json_and_the_api_check_the_same_bounds(tmp_path, value):
    if value != "0.5":
        path = write(tmp_path / "th.json", json.dumps({"cat": 0.3, "dog": value}))
        with pytest.raises(LabelError, match=f"{path}: label 'dog': threshold"):
            read_thresholds(path)
        with pytest.raises(LabelError, match="not a number from 0 to 1"):
            ZeroShotClassifier(["cat"], threshold=value)
        with pytest.raises(LabelError, match="not a number from 0 to 1"):
            ZeroShotClassifier(["cat"], threshold={"cat": value})
    else:
        assert check_threshold(value) == 0.5


def test_threshold_file_format(tmp_path):
    assert read_thresholds(write(tmp_path / "a.csv", "cat,0\ndog,1\n\n")) == {"cat": 0.0, "dog": 1.0}
    with pytest.raises(LabelError, match="line 3: label 'cat' is given twice"):
        read_thresholds(write(tmp_path / "b.csv", "label,threshold\ncat,0.1\ncat,0.2\n"))
    with pytest.raises(LabelError, match="line 1: 3 fields"):
        read_thresholds(write(tmp_path / "c.csv", "cat,0.1,x\n"))
    with pytest.raises(LabelError, match="must be an object"):
        read_thresholds(write(tmp_path / "d.json", "[0.5]"))
