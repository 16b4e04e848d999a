"""Where a film's time goes: each pipeline stage timed on its own, then the whole pipeline.

On one clip (default: the 480p davis-bike-packing.mp4 from shared/footage) with the default
engine, each stage runs alone over every frame, in order, its input prepared beforehand:

  decode   PyAV decode + conversion + CIE L of the full frame   (VideoReader.frames)
  resize   full-resolution L to the render size                 (render_planes)
  model    the engine on batches of the run's batch size        (engine.infer)
  smooth   the temporal filter (flow, blend, cut detection)     (smooth_stage)
  join     ab up to full size + Lab to RGB + rounding           (join_stage)
  encode   RGB to yuv420p + libx264                             (VideoWriter.write)

The sum of the stage times is what one core would spend; ``run_film`` overlaps them in
threads, so its wall time is the figure to compare with the sum. Also printed: the join's
OpenCV paths side by side (float32 Lab and 8-bit Lab), with their largest difference.

    python benchmarks/stages.py [--clip NAME] [--backend auto] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
FOOTAGE = ROOT.parent / "shared" / "footage"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clip", default="davis-bike-packing.mp4")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from e2e_cpu import cpu_name

    from vidcolor import RunOptions
    from vidcolor.engines import load_engine
    from vidcolor.media.decode import DecodedFrame, VideoReader
    from vidcolor.media.encode import VideoWriter
    from vidcolor.pipeline import (
        ColorizedFrame,
        RenderedFrame,
        infer_ab,
        join_stage,
        render_planes,
        render_shape,
        run_film,
    )
    from vidcolor.temporal import smooth_stage, temporal_settings

    source = FOOTAGE / args.clip
    options = RunOptions(overwrite=True)
    engine = load_engine(device="cpu", backend=args.backend, precision=args.precision)
    times: dict[str, float] = {}

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        start = time.perf_counter()
        result = fn()
        times[name] = time.perf_counter() - start
        return result

    with VideoReader(source) as reader:
        info = reader.info
        frames = timed(
            "decode", lambda: [f for f in reader.frames() if isinstance(f, DecodedFrame)]
        )
    height, width = frames[0].luminance.shape
    shape = render_shape(width, height, options.render_size)
    small = timed("resize", lambda: render_planes([f.luminance for f in frames], shape))

    def model() -> list[np.ndarray]:
        out = []
        for i in range(0, len(small), options.batch_size):
            out += infer_ab(engine, small[i : i + options.batch_size])
        return out

    abs_ = timed("model", model)
    colorized = [
        ColorizedFrame(f.index, f.pts, f.luminance, ab, s)
        for f, ab, s in zip(frames, abs_, small, strict=True)
    ]
    smoothed = timed(
        "smooth", lambda: list(smooth_stage(iter(colorized), temporal_settings(options)))
    )
    rendered = timed("join", lambda: list(join_stage(iter(smoothed), np.uint8)))
    with tempfile.TemporaryDirectory() as tmp:
        writer = VideoWriter(Path(tmp) / "stages.mp4", info, options.encode, [], label="bench")

        def encode() -> None:
            for item in rendered:
                if isinstance(item, RenderedFrame):
                    writer.write(item.rgb, item.pts)
            writer.close()

        timed("encode", encode)
        with VideoReader(source) as reader:
            writer = VideoWriter(Path(tmp) / "e2e.mp4", info, options.encode, [], label="bench")
            timed("pipeline (threads)", lambda: run_film(reader, writer, engine, options))
    count = len(frames)
    stage_names = ["decode", "resize", "model", "smooth", "join", "encode"]
    total = sum(times[n] for n in stage_names)
    print(
        f"machine: {cpu_name()}; clip {args.clip} {width}x{height}, {count} frames; "
        f"engine {engine.name}; render {shape[0]}x{shape[1]}, batch {options.batch_size}\n"
    )
    print("| stage | ms/frame | share of the sum |")
    print("|---|---|---|")
    for name in stage_names:
        print(f"| {name} | {1000 * times[name] / count:.2f} | {100 * times[name] / total:.0f} % |")
    print(f"| sum of stages | {1000 * total / count:.2f} | 100 % |")
    wall = times["pipeline (threads)"]
    print(
        f"| run_film, stages overlapped | {1000 * wall / count:.2f} | "
        f"{100 * wall / total:.0f} % of the sum |"
    )
    joins = compare_joins(frames[: min(count, 60)], abs_[: min(count, 60)])
    print("\njoin paths on the same frames (ms/frame; largest difference in 8-bit RGB levels):")
    for name, (ms, diff) in joins.items():
        print(f"  {name}: {ms:.2f} ms, max diff {diff}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": cpu_name(),
                    "clip": args.clip,
                    "frames": count,
                    "engine": engine.name,
                    "ms_per_frame": {k: 1000 * v / count for k, v in times.items()},
                    "joins": joins,
                },
                indent=1,
            )
        )


def compare_joins(frames, abs_) -> dict[str, tuple[float, int]]:  # noqa: ANN001
    """The join's candidate OpenCV paths, timed on the same frames, and how far each is off.

    Kept: the merged float32 path (``color.join_lab_uint``), equal to the numpy one within a
    rounding step. The 8-bit Lab path is fastest but quantises L to 256 steps, which loses
    shadow detail that the source's grey levels have.
    """
    import cv2

    from vidcolor.color import join_lab, join_lab_uint, to_uint

    def numpy_steps(lum, ab):  # noqa: ANN001, ANN202
        return to_uint(join_lab(lum, ab), np.uint8)

    def lab_8bit(lum, ab):  # noqa: ANN001, ANN202
        height, width = lum.shape
        light = cv2.convertScaleAbs(lum, alpha=255 / 100)
        chroma = cv2.addWeighted(ab, 1.0, ab, 0.0, 128.0, dtype=cv2.CV_8U)
        chroma = cv2.resize(chroma, (width, height), interpolation=cv2.INTER_LINEAR)
        return cv2.cvtColor(cv2.merge([light, chroma]), cv2.COLOR_Lab2RGB)

    paths = {
        "numpy steps (before)": numpy_steps,
        "OpenCV merged float32 (kept)": lambda lum, ab: join_lab_uint(lum, ab, np.uint8),
        "OpenCV 8-bit Lab": lab_8bit,
    }
    results = {}
    reference = None
    for name, join in paths.items():
        start = time.perf_counter()
        out = [join(f.luminance, ab) for f, ab in zip(frames, abs_, strict=True)]
        ms = 1000 * (time.perf_counter() - start) / len(frames)
        if reference is None:
            reference = out
        diff = max(
            int(np.abs(a.astype(int) - b.astype(int)).max())
            for a, b in zip(out, reference, strict=True)
        )
        results[name] = (round(ms, 2), diff)
    return results


if __name__ == "__main__":
    main()
