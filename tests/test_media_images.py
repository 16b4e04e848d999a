"""vidcolor.media.images and .atomic: stills in and out, upright, at their depth, atomically."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PNG_SIGNATURE, REPO, asymmetric_grey, png_chunk, png_declaring
from PIL import Image, ImageFile, ImageOps

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


# What each EXIF orientation asks of the stored pixels to show them upright.
UPRIGHT = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.swapaxes(np.rot90(a, 2), 0, 1),
    8: lambda a: np.rot90(a, 1),
}


def test_every_tiff_orientation_is_applied_once(tmp_path):
    """OpenCV's TIFF reader applies the orientation tag itself: it must not be applied twice."""
    grey = asymmetric_grey(40, 24)
    rgb = np.dstack([grey, grey // 2, 255 - grey])
    grey16 = asymmetric_grey(40, 24, np.uint16)
    wrong = []
    for orientation, upright in UPRIGHT.items():
        path = tmp_path / f"o{orientation}.tif"
        Image.fromarray(rgb, "RGB").save(path, tiffinfo={0x0112: orientation})
        deep = tmp_path / f"o{orientation}-16bit.tif"
        Image.fromarray(grey16).save(deep, tiffinfo={0x0112: orientation})
        loaded = read_image(path).rgb
        if not (
            np.array_equal(loaded, upright(rgb)) and np.array_equal(loaded, pillow_upright(path))
        ):
            wrong.append(path.name)
        loaded = read_image(deep).rgb
        if loaded.dtype != np.uint16 or not np.array_equal(loaded, upright(grey16)):
            wrong.append(deep.name)
    assert wrong == []


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


def test_write_replaces_an_existing_file_only_when_told(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"an earlier result")
    with pytest.raises(VidcolorError, match="--overwrite"):
        write_image(path, np.zeros((8, 8, 3), np.uint8))
    assert path.read_bytes() == b"an earlier result"
    write_image(path, np.full((8, 8, 3), 200, np.uint8), overwrite=True)
    assert read_image(path).rgb.min() == 200
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


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


# --- hostile inputs: odd names, memory bombs, library chatter --------------------------------

NOT_UTF8 = os.fsdecode(b"bad\xff.png")


def png_with_chunk(png: bytes, chunk: bytes, after_pixels: bool = False) -> bytes:
    """Insert ``chunk`` right after IHDR, or right before IEND."""
    at = len(png) - 12 if after_pixels else len(PNG_SIGNATURE) + 25
    return png[:at] + chunk + png[at:]


def run_python(code: str, *args: str | os.PathLike) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter: what C libraries print on stderr, and crashes, are only seen there."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", code, *map(os.fsencode, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=120,
    )


ODD_NAMES_SCRIPT = """
import os, sys
from pathlib import Path
import numpy as np
from vidcolor.errors import VidcolorError
from vidcolor.media.images import read_image, write_image

source, png_out, tif_out, bad_suffix = (Path(os.fsdecode(a)) for a in sys.argv[1:])
loaded = read_image(source)
write_image(png_out, loaded.rgb, loaded.alpha)
write_image(tif_out, (loaded.rgb.astype(np.uint16) * 257))
try:
    write_image(bad_suffix, loaded.rgb)
except VidcolorError as exc:
    print("refused:", exc)
print("ok", loaded.rgb.shape, loaded.alpha.shape)
"""


def test_names_that_are_not_utf8_are_read_and_written(tmp_path):
    rgb = np.dstack([asymmetric_grey(80, 48)] * 3)
    alpha = np.tile(np.arange(80, dtype=np.uint8) * 3, (48, 1))
    source = tmp_path / NOT_UTF8
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(source, format="PNG")
    png_out = tmp_path / os.fsdecode(b"out\xfe.png")
    tif_out = tmp_path / os.fsdecode(b"out\xe9\x80.tif")
    bad_suffix = tmp_path / os.fsdecode(b"out.p\xffg")
    run = run_python(ODD_NAMES_SCRIPT, source, png_out, tif_out, bad_suffix)
    assert run.returncode == 0, run.stderr  # OpenCV given such a name: segmentation fault
    assert run.stderr == ""
    assert r"out.p\xffg: cannot write an image with this extension" in run.stdout
    with Image.open(png_out) as back:
        assert np.array_equal(np.asarray(back), np.dstack([rgb, alpha]))
    with Image.open(tif_out) as back:
        assert back.size == (80, 48)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [source.name, png_out.name, tif_out.name]
    )


def test_newline_in_names_reads_writes_and_errors_stay_on_one_line(tmp_path):
    source = tmp_path / "two\nlines.png"
    grey = asymmetric_grey(80, 48)
    Image.fromarray(grey, "L").save(source, format="PNG")
    output = tmp_path / "out\nput.png"
    write_image(output, read_image(source).rgb)
    assert np.array_equal(as_rgb(read_image(output).rgb), as_rgb(grey))
    with pytest.raises(VidcolorError) as refused:
        write_image(tmp_path / "out\nput.xyz", np.zeros((8, 8, 3), np.uint8))
    assert "\n" not in str(refused.value) and r"out\nput.xyz" in str(refused.value)
    broken = tmp_path / "bro\nken.png"
    broken.write_bytes(source.read_bytes()[:60])
    with pytest.raises(VidcolorError) as refused:
        read_image(broken)
    assert "\n" not in str(refused.value) and r"bro\nken.png" in str(refused.value)


@pytest.fixture
def no_decoding(monkeypatch):
    """Any attempt to decode pixels fails the test: a refusal must come from the header."""

    def refuse(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(cv2, "imdecode", refuse)
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (12_000, 12_000)])
def test_picture_declaring_too_many_pixels_is_refused_before_decoding(
    tmp_path, no_decoding, width, height
):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(width, height))
    assert bomb.stat().st_size < 200
    message = (
        f"{bomb}: {width}x{height} pixels is more than the limit of 89478485 "
        "(use --max-pixels to raise it)"
    )
    with pytest.raises(VidcolorError) as refused:
        read_image(bomb)
    assert str(refused.value) == message


def test_bomb_that_pillow_cannot_open_is_refused_before_decoding(tmp_path, no_decoding):
    bad_crc = png_chunk(b"tEXt", b"Comment\x00hello")[:-4] + b"\x00\x00\x00\x00"
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(12_000, 12_000, bad_crc))
    with pytest.raises(VidcolorError, match="12000x12000 pixels is more than the limit"):
        read_image(bomb)


def test_pixel_limit_is_a_parameter(tmp_path, make_image):
    path = make_image("rgb_png")  # 80 x 48 = 3840 pixels
    with pytest.raises(VidcolorError, match="80x48 pixels is more than the limit of 3839"):
        read_image(path, max_pixels=3839)
    assert read_image(path, max_pixels=3840).rgb.shape == (48, 80, 3)
    strip = tmp_path / "strip.png"
    strip.write_bytes(png_declaring(2, 20_000))
    with pytest.raises(VidcolorError, match="2x20000 pixels is more than the limit of 39999"):
        read_image(strip, max_pixels=39_999)


def test_our_limit_decides_not_pillows(make_image, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow would refuse 80 x 48
    path = make_image("exif6_jpeg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = read_image(path)
    assert as_rgb(loaded.rgb).shape == (80, 48, 3)  # read, and upright
    assert Image.MAX_IMAGE_PIXELS == 100  # Pillow's setting is left as it was


def test_png_orientation_without_decoding_the_png_twice(tmp_path, monkeypatch):
    grey = asymmetric_grey(40, 24)
    exif = Image.Exif()
    exif[0x0112] = 6
    early = tmp_path / "early.png"
    Image.fromarray(grey, "L").save(early, exif=exif)
    late = tmp_path / "late.png"
    plain = tmp_path / "plain.png"
    Image.fromarray(grey, "L").save(plain)
    late.write_bytes(png_with_chunk(plain.read_bytes(), png_chunk(b"eXIf", exif.tobytes()), True))
    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: loads.append(self) or real_load(self)
    )
    assert np.array_equal(read_image(early).rgb, np.rot90(grey, k=-1))
    assert np.array_equal(read_image(plain).rgb, grey)
    assert loads == []  # OpenCV decodes the pixels; Pillow only read the header
    assert np.array_equal(read_image(late).rgb, np.rot90(grey, k=-1))  # EXIF after the pixels


QUIET_SCRIPT = """
import sys
from pathlib import Path
from vidcolor.errors import VidcolorError
from vidcolor.media.images import read_image

for name in sys.argv[1:]:
    try:
        print(name, read_image(Path(name)).rgb.shape)
    except VidcolorError as exc:
        print("refused:", exc)
"""


def test_damaged_metadata_leaves_stderr_silent(tmp_path):
    grey = asymmetric_grey(40, 24)
    plain = tmp_path / "plain.png"
    Image.fromarray(grey, "L").save(plain)
    profile = zlib.compress(b"\x00\x00\x01\x00" + b"not an ICC profile" * 8)
    bad_icc = tmp_path / "bad-icc.png"
    bad_icc.write_bytes(
        png_with_chunk(plain.read_bytes(), png_chunk(b"iCCP", b"icc\x00\x00" + profile))
    )
    bad_crc = tmp_path / "bad-crc.png"
    chunk = png_chunk(b"tEXt", b"Comment\x00hello")[:-4] + b"\x00\x00\x00\x00"
    bad_crc.write_bytes(png_with_chunk(plain.read_bytes(), chunk))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "a description long enough to live outside the IFD"
    bad_exif = tmp_path / "bad-exif.jpg"
    Image.fromarray(grey, "L").save(bad_exif, exif=exif, quality=95)
    data = bytearray(bad_exif.read_bytes())
    tiff = data.index(b"Exif\x00\x00") + 6
    order = "big" if data[tiff : tiff + 2] == b"MM" else "little"
    entry = tiff + 8 + 2  # TIFF header, entry count, then the first entry (the description)
    data[entry + 4 : entry + 8] = (0x7FFF).to_bytes(4, order)  # its length: past the end
    bad_exif.write_bytes(bytes(data))
    cut = tmp_path / "cut.png"
    cut.write_bytes(plain.read_bytes()[:70])
    run = run_python(QUIET_SCRIPT, bad_icc, bad_crc, bad_exif, cut)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    lines = run.stdout.splitlines()
    assert lines[:3] == [f"{bad_icc} (24, 40)", f"{bad_crc} (24, 40)", f"{bad_exif} (40, 24)"]
    assert lines[3].startswith(f"refused: {cut}: not a readable image")


def test_png_with_half_its_rows_is_refused(tmp_path):
    """libpng (inside OpenCV) fills the missing rows with black and reports success."""
    rows = np.random.default_rng(0).integers(0, 255, (200, 300), np.uint8)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(100))  # half the rows
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 300, 200, 8, 0, 0, 0, 0))
    half = tmp_path / "half.png"
    half.write_bytes(
        PNG_SIGNATURE + ihdr + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")
    )
    with pytest.raises(VidcolorError, match="truncated or corrupt pixel data"):
        read_image(half)
