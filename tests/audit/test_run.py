import csv
import json
import shutil
from pathlib import Path

import pytest

import iconograph as ig
from iconograph.auditing.run import AuditResult
from iconograph.errors import DataError, OptionError
from tests.audit.planted import DATA, plant
from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared imagenet-samples not present")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def planted(tmp_path):
    """12 originals, 12 planted copies, a broken file, and a truth CSV with two classes."""
    paths, origin = plant(tmp_path / "images", 16, identical=0)
    broken = tmp_path / "images" / "zz_broken.jpg"
    broken.write_bytes(b"not an image")
    truth = tmp_path / "truth.csv"
    with truth.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "labels"])
        for index, path in enumerate(sorted(origin)):
            writer.writerow([path, "even" if index % 2 == 0 else "odd"])
    return tmp_path / "images", paths + [str(broken)], origin, truth


def test_cli_writes_every_finding(planted, tiny_clip, tmp_path):
    folder, paths, origin, truth = planted
    out, store = tmp_path / "audit", tmp_path / "store"
    # The tiny random CLIP puts every image near every other: the near tier would chain them all.
    args = ("audit", folder, "--truth", truth, "--model", tiny_clip, "--rotations", "--tiers", "identical,perceptual")
    args += ("--out", out, "--store", store)
    first = run_cli(*args, "--workers", "0", check=True)
    line = first.stderr.strip().splitlines()[-1]
    assert line.startswith(
        f"{len(paths)} images: {len(paths) - 1} ok, 1 failed; {len(paths) - 1} embeddings computed, 0 from cache"
    )
    assert "duplicate clusters" in line and "outliers" in line and "label issues" in line and f"-> {out}" in line
    assert sorted(p.name for p in out.iterdir()) == [
        "duplicates.jsonl",
        "failed.jsonl",
        "label_issues.jsonl",
        "outliers.jsonl",
        "report.html",
    ]
    duplicates = read_jsonl(out / "duplicates.jsonl")
    assert duplicates and all({"paths", "representative", "tier", "score"} <= set(r) for r in duplicates)
    planted_pairs = {tuple(sorted((p, o))) for p, o in origin.items() if p != o}
    found = {tuple(sorted(r["paths"])) for r in duplicates}
    assert planted_pairs <= found  # every planted copy found by the hash tiers here
    assert read_jsonl(out / "failed.jsonl") == [
        {"path": paths[-1], "error": read_jsonl(out / "failed.jsonl")[0]["error"]}
    ]
    for record in read_jsonl(out / "outliers.jsonl"):
        assert {"path", "reasons", "knn_distance", "neighbours", "sharpness"} <= set(record)
    truth_labels = {row["path"]: row["labels"] for row in csv.DictReader(truth.open())}
    for record in read_jsonl(out / "label_issues.jsonl"):
        assert set(record) == {"path", "label", "suggested", "quality", "neighbours"}
        assert record["label"] in ("even", "odd")
        assert 0 < len(record["neighbours"]) <= 3
        for neighbour in record["neighbours"]:  # the evidence: labelled images and their truth
            assert neighbour["path"] != record["path"]
            assert neighbour["labels"] == [truth_labels[neighbour["path"]]]
        similarities = [n["similarity"] for n in record["neighbours"]]
        assert similarities == sorted(similarities, reverse=True)
    page = (out / "report.html").read_text()
    assert "data:image/jpeg;base64," in page and "Duplicate clusters" in page and "Suspect labels" in page
    second = run_cli(*args, "--workers", "0", check=True)  # everything from the cache now
    assert f"0 embeddings computed, {len(paths) - 1} from cache" in second.stderr
    assert read_jsonl(out / "duplicates.jsonl") == duplicates


def test_python_api_matches_and_skips_labels_without_truth(planted, tiny_clip, tmp_path):
    folder, paths, _, _ = planted
    result = ig.audit(folder, model=str(tiny_clip), store=tmp_path / "store", workers=0, rotations=True)
    assert isinstance(result, AuditResult)
    assert result.label_issues is None and len(result.failed) == 1
    assert result.computed == len(paths) - 1
    out = result.write(tmp_path / "out", report=False)
    assert sorted(p.name for p in out.iterdir()) == ["duplicates.jsonl", "failed.jsonl", "outliers.jsonl"]
    assert read_jsonl(out / "duplicates.jsonl") == result.duplicates
    # With every tier, the random model's near tier chains the collection into one cluster.
    assert [r["tier"] for r in result.duplicates] == ["perceptual"] and result.duplicates[0]["size"] == len(paths) - 1


def test_findings_as_csv_equal_the_jsonl(planted, tiny_clip, tmp_path):
    folder, paths, _, truth = planted
    result = ig.audit(folder, truth, str(tiny_clip), store=tmp_path / "store", workers=0, tiers="identical,perceptual")
    jsonl, table = result.write(tmp_path / "j", report=False), result.write(tmp_path / "c", False, "csv")
    assert sorted(p.name for p in table.iterdir()) == [
        "duplicates.csv",
        "failed.csv",
        "label_issues.csv",
        "outliers.csv",
    ]
    for kind in ("duplicates", "outliers", "label_issues", "failed"):
        records = read_jsonl(jsonl / f"{kind}.jsonl")
        rows = list(csv.DictReader((table / f"{kind}.csv").open(newline="")))
        assert len(rows) == len(records)
        for row, record in zip(rows, records):
            assert list(row) == list(dict.fromkeys(k for r in records for k in r))
            for key, value in record.items():
                if isinstance(value, list) and all(isinstance(v, str) for v in value):
                    assert row[key].split("; ") == value
                elif isinstance(value, (list, dict)):
                    assert json.loads(row[key]) == value
                else:
                    assert row[key] == str(value)
    assert run_cli("audit", folder, "--model", tiny_clip, "--out", tmp_path / "x", "--format", "xml").returncode == 2


def test_user_mistakes(planted, tiny_clip, tmp_path):
    folder, _, origin, _ = planted
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    result = run_cli(
        "audit", folder, "--model", tiny_clip, "--out", a_file, "--store", tmp_path / "s", "--workers", "0"
    )
    assert result.returncode == 2 and "must be a folder" in result.stderr
    one_class = tmp_path / "one.csv"
    one_class.write_text("path,labels\n" + "".join(f"{p},cat\n" for p in origin))
    result = run_cli(
        "audit",
        folder,
        "--truth",
        one_class,
        "--model",
        tiny_clip,
        "--out",
        tmp_path / "o",
        "--store",
        tmp_path / "s",
        "--workers",
        "0",
    )
    assert result.returncode == 2 and result.stderr.startswith("error:") and "two classes" in result.stderr
    with pytest.raises(OptionError):
        ig.audit(folder, model=str(tiny_clip), phash_distance=65)
    with pytest.raises(OptionError, match="tiers"):
        ig.audit(folder, model=str(tiny_clip), tiers="identical,fuzzy")
    with pytest.raises(DataError):
        ig.audit([folder, folder], model=str(tiny_clip), store=tmp_path / "s", workers=0)


def test_report_escapes_hostile_names(tmp_path, tiny_clip):
    folder = tmp_path / "images"
    folder.mkdir()
    source = sorted(DATA.iterdir())[0]
    shutil.copyfile(source, folder / "a.jpg")
    shutil.copyfile(source, folder / "<script>alert(1)<!--.jpg")
    result = ig.audit(folder, model=str(tiny_clip), store=tmp_path / "store", workers=0, out=tmp_path / "out")
    assert result.duplicates[0]["tier"] == "identical"
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;!--.jpg" in page


def test_collection_audit_uses_stored_vectors_and_keeps_findings(planted, tiny_clip, tmp_path):
    from iconograph import Embedder
    from iconograph.auditing.run import load_findings
    from iconograph.search import SearchCollection

    folder, paths, origin, truth = planted
    store = tmp_path / "store"
    collection = SearchCollection("demo", store)
    collection.index(folder, Embedder(str(tiny_clip), store=str(store), workers=0, progress=False))
    out = tmp_path / "audit"
    args = ("audit", "--collection", "demo", "--store", store, "--tiers", "identical,perceptual", "--rotations")
    result = run_cli(*args, "--truth", truth, "--out", out, check=True)
    assert "0 embeddings computed, 0 from cache" in result.stderr  # no model ran
    duplicates = read_jsonl(out / "duplicates.jsonl")
    planted_pairs = {tuple(sorted((p, o))) for p, o in origin.items() if p != o}
    assert planted_pairs <= {tuple(sorted(r["paths"])) for r in duplicates}
    findings = load_findings(SearchCollection("demo", store))
    assert findings["duplicates"] == duplicates
    assert findings["label_issues"] == read_jsonl(out / "label_issues.jsonl")
    # the same findings as auditing the folder with the same model
    direct = ig.audit(
        folder, model=str(tiny_clip), store=store, workers=0, rotations=True, tiers="identical,perceptual"
    )
    assert direct.duplicates == duplicates
    assert [r["path"] for r in direct.outliers] == [r["path"] for r in findings["outliers"]]
    both = run_cli("audit", folder, "--collection", "demo", "--store", store, "--out", out)
    assert both.returncode == 2 and "not both" in both.stderr


def test_csv_cells_that_a_spreadsheet_would_run_are_text():
    from iconograph.auditing.run import csv_cell

    assert csv_cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert [csv_cell(v) for v in ("+1", "-2", "@SUM(A1)", "\tx", "\rx")] == ["'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx"]
    assert csv_cell(["=cmd", "cat"]) == "'=cmd; cat"  # a label list that starts with one
    assert csv_cell(-0.5) == -0.5 and csv_cell("cat") == "cat" and csv_cell([{"a": 1}]) == '[{"a": 1}]'
