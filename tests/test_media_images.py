"""vidcolor.media.images and .atomic: stills in and out, upright, at their depth, atomically."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import asymmetric_grey
from PIL import Image, ImageOps

from vidcolor.atomic import atomic_output, check_writable_target
from vidcolor.errors import VidcolorError
from vidcolor.media.images import read_image, write_image


def pillow_upright(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels


def test_grey_jpeg(make_image):
    loaded = read_image(make_image("grey_jpeg"))
    assert loaded.rgb.shape == (48, 80)
    assert loaded.rgb.dtype == np.uint8
    assert loaded.alpha is None


def test_rgb_png_is_exact(make_image):
    loaded = read_image(make_image("rgb_png"))
    grey = asymmetric_grey(80, 48)
    assert np.array_equal(loaded.rgb, np.dstack([grey, grey, grey]))


@pytest.mark.parametrize("kind", ["grey16_png", "rgb16_png", "grey16_tiff"])
def test_sixteen_bit_is_kept(make_image, kind):
    loaded = read_image(make_image(kind))
    assert loaded.rgb.dtype == np.uint16
    expected = asymmetric_grey(80, 48, np.uint16)
    if loaded.rgb.ndim == 3:
        assert loaded.rgb.shape == (48, 80, 3)
        assert np.array_equal(loaded.rgb[:, :, 1], expected)
    else:
        assert np.array_equal(loaded.rgb, expected)
    assert np.any(loaded.rgb % 257 != 0)  # not 8-bit data scaled up


def test_palette_png(make_image):
    path = make_image("palette_png")
    with Image.open(path) as image:
        assert image.mode == "P"
    loaded = read_image(path)
    assert loaded.rgb.shape == (48, 80, 3)
    assert loaded.rgb.dtype == np.uint8
    assert np.array_equal(loaded.rgb, pillow_upright(path))


def test_rgba_png_keeps_alpha(make_image):
    loaded = read_image(make_image("rgba_png"))
    assert loaded.rgb.shape == (48, 80, 3)
    assert loaded.alpha is not None
    assert np.array_equal(loaded.alpha[0], np.linspace(0, 255, 80).astype(np.uint8))


def test_exif_orientation_of_jpeg_matches_pillow(make_image):
    path = make_image("exif6_jpeg")
    loaded = read_image(path)
    expected = pillow_upright(path)
    assert as_rgb(loaded.rgb).shape == expected.shape == (80, 48, 3)
    diff = np.abs(as_rgb(loaded.rgb).astype(int) - expected.astype(int))
    assert diff.max() <= 2  # allows for another JPEG decoder


def test_grey_with_alpha_and_sixteen_bit_rgba(tmp_path):
    grey = asymmetric_grey(80, 48)
    alpha = np.tile(np.arange(80, dtype=np.uint8) * 3, (48, 1))
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(tmp_path / "la.png")
    loaded = read_image(tmp_path / "la.png")
    assert np.array_equal(loaded.alpha, alpha)
    assert np.array_equal(as_rgb(loaded.rgb)[:, :, 0], grey)
    grey16 = asymmetric_grey(80, 48, np.uint16)
    cv2.imwrite(str(tmp_path / "rgba16.png"), np.dstack([grey16, grey16, grey16, grey16 // 2]))
    loaded = read_image(tmp_path / "rgba16.png")
    assert loaded.rgb.dtype == loaded.alpha.dtype == np.uint16
    assert np.array_equal(loaded.alpha, grey16 // 2)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(tmp_path, orientation):
    grey = asymmetric_grey(40, 24)
    rgb = np.dstack([grey, grey // 2, 255 - grey])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(rgb, "RGB").save(path, exif=exif)
    assert np.array_equal(read_image(path).rgb, pillow_upright(path))


def test_exif_orientation_of_sixteen_bit_png(tmp_path):
    grey = asymmetric_grey(40, 24, np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "o6-16bit.png"
    Image.fromarray(grey).save(path, exif=exif)
    loaded = read_image(path)
    assert loaded.rgb.dtype == np.uint16
    assert np.array_equal(loaded.rgb, np.rot90(grey, k=-1))


@pytest.mark.parametrize("kind", ["rgb_png", "grey_jpeg"])
def test_truncated_image_is_refused(make_image, tmp_path, kind):
    path = make_image(kind)
    cut = tmp_path / f"cut{path.suffix}"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(VidcolorError, match="truncated"):
        read_image(cut)


def rgb16() -> np.ndarray:
    grey = asymmetric_grey(80, 48, np.uint16)
    return np.dstack([grey, grey // 2, grey // 3])


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_write_sixteen_bit_stays_sixteen_bit(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    write_image(path, rgb16())
    back = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    assert back.dtype == np.uint16
    assert np.array_equal(back, rgb16())


def test_write_sixteen_bit_to_jpeg_is_eight_bit(tmp_path):
    path = tmp_path / "out.jpg"
    write_image(path, rgb16())
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint8
    assert back.shape == (48, 80, 3)


def test_write_keeps_alpha_in_png_and_drops_it_in_jpeg(tmp_path):
    rgb = np.full((48, 80, 3), 120, np.uint8)
    alpha = np.tile(np.arange(80, dtype=np.uint8) * 3, (48, 1))
    write_image(tmp_path / "a.png", rgb, alpha)
    assert np.array_equal(read_image(tmp_path / "a.png").alpha, alpha)
    write_image(tmp_path / "a.jpg", rgb, alpha)
    assert read_image(tmp_path / "a.jpg").alpha is None


def test_write_to_unknown_extension_leaves_nothing(tmp_path):
    with pytest.raises(VidcolorError):
        write_image(tmp_path / "out.xyz", np.zeros((8, 8, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


# --- atomic outputs -------------------------------------------------------------------------


def test_atomic_output_renames_on_success(tmp_path):
    target = tmp_path / "done.txt"
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and ".part" in tmp.name
        assert tmp.suffix == ".txt"
        tmp.write_text("complete")
    assert target.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["done.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_output_leaves_no_temp_file_on_failure(tmp_path):
    target = tmp_path / "never.txt"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_leaves_an_existing_file_untouched_on_failure(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("original")
    with pytest.raises(KeyboardInterrupt), atomic_output(target) as tmp:
        tmp.write_text("replacement")
        raise KeyboardInterrupt
    assert target.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_check_writable_target(tmp_path):
    with pytest.raises(VidcolorError, match="does not exist"):
        check_writable_target(tmp_path / "nowhere" / "out.png", overwrite=False)
    existing = tmp_path / "there.png"
    existing.write_bytes(b"x")
    with pytest.raises(VidcolorError, match="already exists"):
        check_writable_target(existing, overwrite=False)
    check_writable_target(existing, overwrite=True)
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(VidcolorError, match="folder"):
        check_writable_target(folder, overwrite=True)
    check_writable_target(tmp_path / "fresh.png", overwrite=False)
