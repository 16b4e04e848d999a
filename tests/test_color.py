import numpy as np
import pytest

from vidcolor.color import as_float_rgb, join_lab, lab_to_rgb, luminance, rgb_to_lab, to_uint


def test_grey_has_no_chroma_and_known_lightness():
    lab = rgb_to_lab(np.full((4, 4, 3), 0.5, np.float32))
    assert np.allclose(lab[..., 1:], 0, atol=0.05)
    assert lab[0, 0, 0] == pytest.approx(53.39, abs=0.3)  # CIE L* of sRGB 50% grey


def test_luminance_is_the_same_for_8_and_16_bit_grey():
    eight = np.full((3, 3), 200, np.uint8)
    sixteen = np.full((3, 3), 200 * 257, np.uint16)
    assert np.allclose(luminance(eight), luminance(sixteen), atol=1e-3)


def test_tinted_input_keeps_only_its_lightness():
    rng = np.random.default_rng(0)
    grey = rng.random((8, 8)).astype(np.float32)
    sepia = np.stack([grey * 1.0, grey * 0.85, grey * 0.65], axis=2)
    lum = luminance(sepia)
    # Joining that L with zero chroma gives a neutral grey: the tint is gone.
    neutral = join_lab(lum, np.zeros((8, 8, 2), np.float32))
    assert np.abs(neutral[..., 0] - neutral[..., 2]).max() < 0.01


def test_join_lab_round_trips_a_colour_image():
    rng = np.random.default_rng(1)
    rgb = rng.random((16, 24, 3)).astype(np.float32)
    lab = rgb_to_lab(rgb)
    out = join_lab(lab[..., 0], lab[..., 1:])
    assert np.abs(out - rgb).max() < 0.01


def test_join_lab_upsamples_low_resolution_ab():
    lum = np.full((40, 60), 60.0, np.float32)
    ab = np.zeros((10, 15, 2), np.float32)
    ab[..., 0] = 40.0  # reddish
    out = join_lab(lum, ab)
    assert out.shape == (40, 60, 3)
    assert (out[..., 0] > out[..., 1]).all()


def test_as_float_rgb_shapes_and_ranges():
    assert as_float_rgb(np.zeros((2, 3), np.uint8)).shape == (2, 3, 3)
    rgba = as_float_rgb(np.full((2, 3, 4), 65535, np.uint16))
    assert rgba.shape == (2, 3, 3) and rgba.max() == 1.0


def test_to_uint_rounds_and_clips():
    values = np.array([[-0.1, 0.5, 1.2]], np.float32)
    assert to_uint(values).tolist() == [[0, 128, 255]]
    assert to_uint(values, np.uint16).tolist() == [[0, 32768, 65535]]


def test_lab_to_rgb_clips_out_of_gamut():
    lab = np.array([[[50.0, 120.0, -120.0]]], np.float32)
    rgb = lab_to_rgb(lab)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_grey_fast_path_gives_exactly_the_general_paths_luminance(dtype):
    from vidcolor.color import rgb_to_lab

    top = np.iinfo(dtype).max
    levels = np.linspace(0, top, 97 * 61).astype(dtype).reshape(61, 97)
    for image in (
        levels,  # (H, W)
        levels[:, :, None],  # (H, W, 1)
        np.repeat(levels[:, :, None], 3, axis=2),  # grey RGB
        np.dstack([levels] * 3 + [np.full_like(levels, top)]),  # grey RGBA
    ):
        general = rgb_to_lab(as_float_rgb(image))[:, :, 0]
        assert np.array_equal(luminance(image), general)
    tinted = np.repeat(levels[:, :, None], 3, axis=2)
    tinted[30, 40, 2] = tinted[30, 40, 2] // 2  # one pixel not grey: the general path
    assert np.array_equal(luminance(tinted), rgb_to_lab(as_float_rgb(tinted))[:, :, 0])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_opencv_join_equals_the_numpy_steps_within_one_level(dtype):
    from vidcolor.color import join_lab_uint

    rng = np.random.default_rng(3)
    lum = (rng.random((45, 70)) * 100).astype(np.float32)
    ab = ((rng.random((12, 20, 2)) - 0.5) * 240).astype(np.float32)  # out of gamut too
    fast = join_lab_uint(lum, ab, dtype)
    slow = to_uint(join_lab(lum, ab), dtype)
    assert fast.dtype == dtype and fast.shape == (45, 70, 3)
    assert np.abs(fast.astype(np.int64) - slow.astype(np.int64)).max() <= 1


@pytest.mark.parametrize(("dtype", "levels"), [(np.uint8, 1), (np.uint16, 8)])
def test_torch_join_for_gpu_batches_equals_opencvs(dtype, levels):
    """The GPU join's maths, checked on the CPU: within one 8-bit level of OpenCV's path
    (16-bit: OpenCV's sRGB curve is a spline, 8 of 65535 levels off at most)."""
    from vidcolor.color import join_lab_uint
    from vidcolor.color_torch import join_lab_batch

    rng = np.random.default_rng(5)
    lum = [(rng.random((45, 70)) * 100).astype(np.float32) for _ in range(3)]
    lum[0][:5] = np.linspace(0, 9, 70, dtype=np.float32)  # the dark, linear part of L
    ab = [((rng.random((12, 20, 2)) - 0.5) * 240).astype(np.float32) for _ in range(3)]
    ab.append(((rng.random((60, 90, 2)) - 0.5) * 100).astype(np.float32))  # larger: shrunk
    lum.append(lum[1])
    for frames, tolerance in ((slice(0, 3), levels), (slice(3, 4), levels)):
        ours = join_lab_batch(lum[frames], ab[frames], "cpu", dtype)
        for rgb, plane, chroma in zip(ours, lum[frames], ab[frames], strict=True):
            assert rgb.dtype == dtype and rgb.shape == (45, 70, 3)
            opencv = join_lab_uint(plane, chroma, dtype)
            assert np.abs(rgb.astype(np.int64) - opencv.astype(np.int64)).max() <= tolerance
