import json

import pytest

from iconograph.reading.sources import SourceError, read_collection, read_image_folder


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folders_are_walked_recursively_in_sorted_order_skipping_hidden_and_non_images(tmp_path):
    for name in ("b/2.jpg", "a/1.PNG", "a/deeper/0.webp", "notes.txt", ".hidden/x.jpg", "a/._x.jpg"):
        touch(tmp_path / name)
    paths = [item.path for item in read_collection(tmp_path)]
    assert paths == [str(tmp_path / p) for p in ("a/1.PNG", "a/deeper/0.webp", "b/2.jpg")]


def test_image_folder_labels_come_from_the_parent_folder(tmp_path):
    touch(tmp_path / "eagle" / "1.jpg")
    touch(tmp_path / "zeus" / "sub" / "2.jpg")
    items = read_image_folder(tmp_path)
    assert [(i.path.rsplit("/", 1)[-1], i.labels) for i in items] == [("1.jpg", ("eagle",)), ("2.jpg", ("zeus",))]


def test_csv_and_jsonl_labels_with_paths_relative_to_the_file(tmp_path):
    (tmp_path / "t.csv").write_text("path,labels,museum\nimg/a.jpg,zeus; eagle,Berlin\n/abs/b.jpg,,Paris\n")
    items = read_collection(tmp_path / "t.csv")
    assert items[0].path == str(tmp_path / "img/a.jpg") and items[0].labels == ("zeus", "eagle")
    assert items[0].meta == {"museum": "Berlin"}
    assert items[1].path == "/abs/b.jpg" and items[1].labels == ()

    (tmp_path / "t.jsonl").write_text(
        json.dumps({"path": "c.jpg", "labels": ["patera"]}) + "\n\n" + json.dumps({"path": "d.jpg"}) + "\n"
    )
    items = read_collection(tmp_path / "t.jsonl")
    assert [(i.path, i.labels) for i in items] == [
        (str(tmp_path / "c.jpg"), ("patera",)),
        (str(tmp_path / "d.jpg"), None),
    ]


def test_coco_json_lists_images_with_their_category_names(tmp_path):
    coco = {
        "images": [{"id": 1, "file_name": "x.jpg"}, {"id": 2, "file_name": "y.jpg"}],
        "annotations": [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1]}],
        "categories": [{"id": 7, "name": "raccoon"}],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    items = read_collection(tmp_path / "c.json")
    assert [(i.path, i.labels) for i in items] == [
        (str(tmp_path / "x.jpg"), ("raccoon",)),
        (str(tmp_path / "y.jpg"), ()),
    ]


@pytest.mark.parametrize(
    "content, message", [("path,labels\n,cat\n", "no 'path'"), ('{"path": "a.jpg"}\nnot json\n', "line 2")]
)
def test_malformed_tables_are_clear_errors(tmp_path, content, message):
    path = tmp_path / ("t.csv" if content.startswith("path") else "t.jsonl")
    path.write_text(content)
    with pytest.raises(SourceError, match=message):
        read_collection(path)
