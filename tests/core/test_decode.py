import numpy as np
import pytest
from PIL import Image

from iconograph.reading.decode import DecodeError, read_image
from tests.core.images import BLUE, RED, write_bad_collection, write_exif_rotated


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    return folder, write_bad_collection(folder)


def pixel(image: Image.Image, x: int, y: int) -> np.ndarray:
    return np.asarray(image)[y, x].astype(int)


def test_every_readable_file_decodes_to_rgb_and_the_rest_give_one_line_reasons(bad):
    folder, readable = bad
    for name, ok in readable.items():
        if ok:
            assert read_image(folder / name).image.mode == "RGB", name
        else:
            with pytest.raises(DecodeError) as excinfo:
                read_image(folder / name)
            assert str(excinfo.value) and "\n" not in str(excinfo.value), name


def test_exif_orientation_is_applied(tmp_path):
    image = read_image(write_exif_rotated(tmp_path / "r.jpg")).image
    assert image.size == (20, 40)  # portrait as displayed
    assert np.abs(pixel(image, 10, 5) - RED).max() < 40  # the stored left half is now on top
    assert np.abs(pixel(image, 10, 35) - BLUE).max() < 40


def test_sixteen_bit_keeps_its_full_range(bad):
    folder, _ = bad
    image = read_image(folder / "deep16.png").image
    source = np.asarray(Image.open(folder / "deep16.png")).astype(np.uint32)
    np.testing.assert_array_equal(np.asarray(image)[..., 0], (source >> 8).astype(np.uint8))
    assert np.asarray(image).max() > 200  # not clipped to white or crushed to black


def test_cmyk_palette_transparency_and_animation(bad):
    folder, _ = bad
    assert np.abs(pixel(read_image(folder / "cmyk.jpg").image, 16, 16) - RED).max() < 30
    palette = read_image(folder / "palette_alpha.png").image
    assert tuple(pixel(palette, 4, 4)) == RED
    assert tuple(pixel(palette, 28, 4)) == (255, 255, 255)  # the transparent index, on white
    assert tuple(pixel(read_image(folder / "animated.gif").image, 5, 5)) == RED  # first frame


def test_reasons_say_what_is_wrong(bad):
    folder, _ = bad
    reasons = {}
    for name in ("truncated.jpg", "empty.jpg", "notes.jpg", "bomb.png"):
        with pytest.raises(DecodeError) as excinfo:
            read_image(folder / name)
        reasons[name] = str(excinfo.value)
    assert "truncated" in reasons["truncated.jpg"]
    assert "empty" in reasons["empty.jpg"]
    assert "not a recognised image" in reasons["notes.jpg"]
    assert "decompression-bomb" in reasons["bomb.png"]
    with pytest.raises(DecodeError, match="file not found"):
        read_image(folder / "missing.jpg")
