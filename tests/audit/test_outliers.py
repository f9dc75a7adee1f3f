import numpy as np
import pytest
from PIL import Image, ImageFilter

from iconograph.auditing.images import collect_facts
from iconograph.auditing.outliers import find_outliers, robust_threshold
from tests.audit.planted import DATA, originals

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared imagenet-samples not present")


def noise(size=(200, 160), seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def checkers() -> Image.Image:
    """Coloured 40 px squares: contrast everywhere, sharp edges until blurred."""
    y, x = np.mgrid[0:160, 0:200] // 40
    cells = ((x + y) % 2).astype(np.uint8)
    rgb = np.stack([40 + 170 * cells, 60 + 120 * cells, 200 - 150 * cells], axis=2).astype(np.uint8)
    return Image.fromarray(rgb)


def synthetic(tmp_path) -> dict[str, list[str]]:
    """One image per flag, each tripping exactly the flags listed."""
    rng = np.random.default_rng(3)
    gray = rng.integers(40, 220, (160, 200), dtype=np.uint8)
    images = {
        "tiny": (noise((50, 120)), ["tiny"]),
        "blurred": (checkers().filter(ImageFilter.GaussianBlur(5)), ["blurred"]),
        "sharp": (checkers(), []),
        "dark": (Image.fromarray((np.asarray(noise()) * 0.15).astype(np.uint8)), ["dark"]),
        "bright": (Image.fromarray((255 - np.asarray(noise()) * 0.15).astype(np.uint8)), ["bright"]),
        "empty": (Image.new("RGB", (200, 160), (120, 90, 60)), ["near-empty"]),
        "gray": (Image.fromarray(gray).convert("RGB"), ["grayscale"]),
        "fine": (noise(), []),
    }
    expected = {}
    for name, (image, reasons) in images.items():
        path = tmp_path / f"{name}.png"
        image.save(path)
        expected[str(path)] = reasons
    return expected


def test_each_quality_flag_is_tripped_alone(tmp_path):
    expected = synthetic(tmp_path)
    facts = collect_facts(list(expected))
    records, threshold = find_outliers(facts)  # no vectors: quality only
    assert threshold is None
    got = {r["path"]: r["reasons"] for r in records}
    assert got == {path: reasons for path, reasons in expected.items() if reasons}
    for record in records:
        assert {"luminance", "contrast", "sharpness", "colour", "width", "height"} <= set(record)


@needs_data
def test_real_images_trip_few_flags():
    paths = [str(p) for p in originals(100)]
    records, _ = find_outliers(collect_facts(paths))
    got = {r["path"].rsplit("/", 1)[-1]: r["reasons"] for r in records}
    # A dim, soft photo of a digital clock and a black-and-white photo: the only two of 100.
    assert got == {
        "n03196217_digital_clock.JPEG": ["blurred", "dark"],
        "n03908714_pencil_sharpener.JPEG": ["grayscale"],
    }


def test_isolated_vectors_are_flagged_with_neighbours(tmp_path):
    paths = []
    for i in range(30):
        noise(seed=i).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    facts = collect_facts(paths)
    rng = np.random.default_rng(0)
    centre = rng.normal(size=64)
    vectors = centre + 0.3 * rng.normal(size=(30, 64))
    vectors[7] = rng.normal(size=64) * 3  # far from the cluster
    records, threshold = find_outliers(facts, vectors.astype(np.float32))
    assert [r["path"] for r in records] == [paths[7]]
    (record,) = records
    assert record["reasons"] == ["isolated"] and record["knn_distance"] > threshold
    assert len(record["neighbours"]) == 3 and all(0 <= n["similarity"] <= 1 for n in record["neighbours"])


def test_robust_threshold():
    values = np.array([1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 100.0])
    assert robust_threshold(values) == pytest.approx(2 + 3 * 1.4826 * 1.0)
