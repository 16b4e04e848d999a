"""int8 engines for CPUs: ONNX Runtime static quantisation of the fp32 export.

Activations are calibrated on real photos at vidcolor's own render size: by default the few
hundred training photos shipped as ``engines/calibration.tar`` (grey JPEGs; see
``make_calibration_set``), or a user's own with ``vidcolor engine export --calibration DIR``.
Weights are quantised per output channel. CPUs without VNNI multiply u8 by s8 in 16 bits that
can saturate, so there weights use ONNX Runtime's reduced range (7 bits); the choice is part of
the cache key, so a cache moved to another CPU never serves the wrong variant.
"""

from __future__ import annotations

import io
import logging
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from vidcolor.engines import cache
from vidcolor.engines.export import INPUT_NAME, cached_export, export_key, note
from vidcolor.errors import VidcolorError, one_line
from vidcolor.options import DEFAULT_RENDER_SIZE

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.tar"
CALIBRATION_PHOTOS = 256
FEW_PHOTOS = 32  # fewer calibration photos than this get a warning
# Shipped calibration photos are stored at the render size's short side (grey JPEG, quality 90).
CALIBRATION_SIDE = DEFAULT_RENDER_SIZE


def default_calibration() -> Path:
    from vidcolor.models.shipped import engines_dir

    return engines_dir() / CALIBRATION_FILE


def cpu_has_vnni() -> bool:
    """True where x86 CPUs multiply u8 x s8 without saturating (AVX512-VNNI, AVX-VNNI, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cached_int8(
    weights: Path,
    calibration: Path | None = None,
    photos: int = CALIBRATION_PHOTOS,
    render_size: int = DEFAULT_RENDER_SIZE,
) -> Path:
    """The int8 ONNX file for these weights, calibrated now if not yet cached."""
    source = Path(calibration) if calibration is not None else default_calibration()
    if not source.exists():
        raise VidcolorError(f"calibration photos not found: {one_line(str(source))}")
    reduce_range = not cpu_has_vnni()
    parts = export_key(
        weights,
        "int8",
        {
            "calibration": _source_digest(source),
            "calibration_photos": photos,
            "calibration_render_size": render_size,
            "reduce_range": reduce_range,
            "fp32_head": True,
        },
    )
    item = cache.entry("onnx", parts, ".onnx")

    def build(tmp: Path) -> None:
        from vidcolor.models.weights import read_tensor_names

        fp32 = cached_export(weights, "fp32")
        planes = calibration_planes(source, photos, render_size)
        note(f"calibrating the int8 engine on {len(planes)} photos, once for this model")
        if len(planes) < FEW_PHOTOS:
            log.warning(
                "only %d calibration photos: int8 ranges from a few hundred are steadier",
                len(planes),
            )
        head = head_nodes(fp32, read_tensor_names(weights))  # names the export gave
        quantize(fp32, tmp, planes, reduce_range, keep_fp32=head)

    return cache.get_or_build(item, build)


def quantize(
    fp32: Path,
    output: Path,
    planes: list[np.ndarray],
    reduce_range: bool,
    keep_fp32: list[str] | tuple[str, ...] = (),
) -> None:
    """Static int8 quantisation (QDQ, per-channel weights, MinMax ranges) of an fp32 export,
    but for the nodes named in ``keep_fp32`` (``head_nodes``)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Planes(CalibrationDataReader):
        def __init__(self) -> None:
            self._inputs = iter(planes)

        def get_next(self) -> dict[str, np.ndarray] | None:
            plane = next(self._inputs, None)
            return None if plane is None else {INPUT_NAME: plane[None, None]}

    with tempfile.TemporaryDirectory(prefix="vidcolor-int8-") as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(output),
            Planes(),
            nodes_to_exclude=list(keep_fp32),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibMaxIntermediateOutputs": _flush_every(len(planes))},
        )


_HEAD_LAYERS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
_SHAPE_ONLY = {"Shape", "Size"}  # their output is the input's size, not its values


def head_nodes(model: Path, learned: set[str] | frozenset[str]) -> list[str]:
    """The output head: each last learned layer and every node after it, kept in fp32.

    8-bit head weights and an 8-bit ab are coarse next to the small a,b differences that make
    a colour, and a classification head's softmax over quantised logits flattens its bins;
    the head is a sliver of the compute. (Its input stays 8-bit, as the decoder made it.)
    A layer is learned when its weight is one of the weights file's tensors (the annealed
    mean's 1x1 convolution over the bin centres is not: its weight is folded from a buffer).
    """
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    head: dict[str, None] = {}
    pending = [output.name for output in graph.output]
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.name in head:
            continue
        head[node.name] = None
        if node.op_type in _SHAPE_ONLY:
            continue
        if node.op_type not in _HEAD_LAYERS or node.input[1] not in learned:
            pending.extend(node.input)
    if len(head) > len(graph.node) // 4:  # no learned layer was recognised: all int8, as before
        log.warning("no output head found in %s: the whole network is int8", model.name)
        return []
    return list(head)


def _flush_every(count: int) -> int:
    """How many photos' activations the calibrator holds before folding them into its ranges.

    Bounds memory (every activation of every held photo is kept until then). ONNX Runtime
    raises "No data is collected" when the last fold leaves nothing, that is when this divides
    the photo count, so it never does.
    """
    return next(k for k in range(16, 64) if count % k != 0)


def calibration_planes(source: Path, photos: int, render_size: int) -> list[np.ndarray]:
    """L planes of up to ``photos`` calibration photos, each at vidcolor's render shape."""
    from vidcolor.color import luminance, resize_plane
    from vidcolor.pipeline import render_shape

    planes = []
    for pixels in _photos(source, photos):
        lum = luminance(pixels)
        height, width = lum.shape
        shape = render_shape(width, height, render_size)
        planes.append(resize_plane(lum, *shape).astype(np.float32))
    if not planes:
        raise VidcolorError(f"{one_line(str(source))}: holds no photos to calibrate on")
    return planes


def _photos(source: Path, limit: int) -> Iterator[np.ndarray]:
    from vidcolor.train.data import EvalSource

    for _, pixels in EvalSource(source).images(limit):
        yield pixels


def _source_digest(source: Path) -> str:
    """What the calibration photos are: a file's bytes, or a folder's names, sizes and times."""
    if source.is_file():
        return cache.file_digest(source)
    listing = sorted(
        (str(p.relative_to(source)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in source.rglob("*")
        if p.is_file()
    )
    return cache.entry_key({"listing": listing})


def make_calibration_set(
    sources: list[Path], output: Path, photos: int, seed: int = 0, overwrite: bool = False
) -> int:
    """Write ``photos`` photos drawn evenly and at random from ``sources`` as grey JPEGs in a .tar.

    Grey is enough (the engine sees only L) and keeps the shipped file small. Each source is
    read once, keeping a uniform random sample of its photos (reservoir sampling).
    """
    from vidcolor.atomic import atomic_output

    rng = np.random.default_rng(seed)
    shares = [photos // len(sources) + (i < photos % len(sources)) for i in range(len(sources))]
    chosen: list[np.ndarray] = []
    for source, share in zip(sources, shares, strict=True):
        sample: list[np.ndarray] = []
        for seen, pixels in enumerate(_photos(Path(source), 10**9)):
            if len(sample) < share:
                sample.append(_grey_uint8(pixels))
            else:
                slot = int(rng.integers(0, seen + 1))
                if slot < share:
                    sample[slot] = _grey_uint8(pixels)
        chosen.extend(sample)
    with atomic_output(Path(output), overwrite) as tmp, tarfile.open(tmp, "w") as tar:
        for index, grey in enumerate(chosen):
            ok, data = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:  # pragma: no cover - OpenCV encodes any uint8 plane
                raise VidcolorError("cannot encode a calibration photo")
            member = tarfile.TarInfo(f"{index:04d}.jpg")
            member.size = len(data)
            member.mtime = 0
            tar.addfile(member, io.BytesIO(data.tobytes()))
    return len(chosen)


def _grey_uint8(pixels: np.ndarray) -> np.ndarray:
    from vidcolor.color import luminance

    lum = luminance(pixels)  # takes any image itself (and grey ones by the fast table)
    height, width = lum.shape
    scale = CALIBRATION_SIDE / min(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        lum = cv2.resize(lum, size, interpolation=cv2.INTER_AREA)
    # L 0..100 stored as the grey level whose L it is: decoding gives back the same L.
    return _grey_for_luminance(lum)


def _grey_for_luminance(lum: np.ndarray) -> np.ndarray:
    from vidcolor.color import lab_to_rgb, to_uint

    lab = np.zeros((*lum.shape, 3), np.float32)
    lab[:, :, 0] = lum
    return to_uint(lab_to_rgb(lab)[:, :, 0], np.uint8)
