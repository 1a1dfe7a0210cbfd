"""Files become arrays one way, and arrays become graph input one way."""

import cv2
import numpy as np
import pytest

from edge.model.imageio import ImageReadError, ImageTooLarge, image_size, list_images, read_image
from edge.model.preprocess import InputSpec, preprocess


def test_color_png_reads_as_bgr_and_gray_jpg_as_two_dimensional(bottle, magnetic_tile):
    color = read_image(next((bottle / "test" / "good").glob("*.png")))
    assert color.dtype == np.uint8 and color.shape == (512, 512, 3)
    gray = read_image(next((magnetic_tile / "test" / "good").glob("*.jpg")))
    assert gray.ndim == 2


def test_sixteen_bit_and_rgba_files_are_normalised(tmp_path):
    deep = np.full((8, 8), 0xABCD, np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    assert read_image(tmp_path / "deep.png").max() == 0xAB
    rgba = np.zeros((8, 8, 4), np.uint8)
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert read_image(tmp_path / "rgba.png").shape == (8, 8, 3)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_corrupt_or_empty_files_raise_image_read_error_naming_the_file(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match="broken.png"):
        read_image(path)


def test_missing_file_raises_image_read_error(tmp_path):
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(tmp_path / "absent.png")


def test_list_images_is_recursive_sorted_and_filters_suffixes(tmp_path):
    for name in ("b/2.PNG", "a/1.jpg", "c.bmp", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a/1.jpg", "b/2.PNG", "c.bmp"]


def test_preprocess_matches_the_torchvision_recipe_by_hand():
    spec = InputSpec(height=32, width=48)
    bgr = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    tensor = preprocess(bgr, spec)
    assert tensor.shape == (1, 3, 32, 48) and tensor.dtype == np.float32
    rgb = cv2.resize(bgr[:, :, ::-1], (48, 32), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    expected = ((rgb - np.array(spec.mean)) / np.array(spec.std)).transpose(2, 0, 1)
    np.testing.assert_allclose(tensor[0], expected, atol=1e-5)


def test_gray_input_gives_three_identical_channels():
    spec = InputSpec(height=32, width=32)
    gray = np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)
    tensor = preprocess(gray, spec)[0]
    std, mean = np.array(spec.std)[:, None, None], np.array(spec.mean)[:, None, None]
    raw = tensor * std + mean
    np.testing.assert_allclose(raw[0], raw[1], atol=1e-5)
    np.testing.assert_allclose(raw[1], raw[2], atol=1e-5)


def test_input_spec_roundtrips_and_rejects_unknown_keys():
    spec = InputSpec(height=224, width=224)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown keys"):
        InputSpec.from_dict({**spec.to_dict(), "gamma": 2.2})


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_image_size_reads_the_header_of_each_format_without_decoding(suffix):
    image = np.zeros((37, 53, 3), np.uint8)
    ok, data = cv2.imencode(suffix, image)
    assert ok and image_size(data.tobytes()) == (53, 37)
    assert image_size(data.tobytes()[:10]) is None  # a header cut short


def test_a_file_above_max_pixels_is_refused_from_its_header_before_decoding(tmp_path):
    header_only = bytearray(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()[:33])
    header_only[16:24] = (8000).to_bytes(4, "big") + (8000).to_bytes(4, "big")  # IHDR says 8000x8000, no data
    (tmp_path / "huge.png").write_bytes(bytes(header_only))
    with pytest.raises(ImageTooLarge, match=r"frame too large: 8000x8000 = 64.0 Mpx, above camera.max_pixels 50 Mpx"):
        read_image(tmp_path / "huge.png", max_pixels=50_000_000)
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((10, 10), np.uint8))
    assert read_image(tmp_path / "small.png", max_pixels=100).shape == (10, 10)
    with pytest.raises(ImageTooLarge):
        read_image(tmp_path / "small.png", max_pixels=99)
