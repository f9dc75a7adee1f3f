"""`detect --format yolo` makes a self-contained dataset: images/ holds the images data.yaml names."""

from __future__ import annotations

from tests.conftest import run_cli


def test_detect_yolo_links_the_images_as_convert_boxes_does(tiny_owlvit, raccoon_images, tmp_path):
    images = raccoon_images[:2]
    run_cli("detect", *images, "--queries", "raccoon", "--model", tiny_owlvit, "--format", "yolo",
            "--out", tmp_path / "yolo", check=True)
    placed = sorted((tmp_path / "yolo" / "images").iterdir())
    assert [p.name for p in placed] == sorted(p.name for p in images)
    assert all(p.resolve() == image.resolve() for p, image in zip(placed, sorted(images)))
    assert "train: images" in (tmp_path / "yolo" / "data.yaml").read_text()
    assert len(list((tmp_path / "yolo" / "labels").glob("*.txt"))) == 2
