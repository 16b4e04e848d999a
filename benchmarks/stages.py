"""Where a film's time goes: each pipeline stage timed while frames stream through them.

On one clip (default: the 480p davis-bike-packing.mp4 from shared/footage) with the default
engine, the stages run chained in one thread, as ``run_film`` chains them but without its
threads, and each stage's own time is measured (the time inside it, less the time inside the
stage it pulls from):

  decode   PyAV decode + conversion + CIE L of the full frame   (VideoReader.frames)
  resize   full-resolution L to the render size                 (render_planes)
  model    the engine on batches of the run's batch size        (engine.infer)
  smooth   the temporal filter (flow, blend, cut detection)     (smooth_stage)
  join     ab up to full size + Lab to RGB + rounding           (join_stage)
  encode   RGB to yuv420p + libx264                             (VideoWriter.write)

The sum is what one core spends per frame; ``run_film`` overlaps the stages in threads, so
its wall time (measured next, on the same clip) is the figure to compare with the sum. Also
printed: the join's OpenCV paths side by side, with their largest difference.

    python benchmarks/stages.py [--clip NAME] [--backend auto] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
FOOTAGE = ROOT.parent / "shared" / "footage"


class Timed:
    """Seconds spent inside an iterator's ``next``, less those inside the one it pulls from."""

    def __init__(self, items: Iterable, upstream: Timed | None = None):
        self.items = iter(items)
        self.upstream = upstream
        self.inside = 0.0

    @property
    def own(self) -> float:
        return self.inside - (self.upstream.inside if self.upstream else 0.0)

    def __iter__(self) -> Iterator:
        while True:
            start = time.perf_counter()
            try:
                item = next(self.items)
            except StopIteration:
                self.inside += time.perf_counter() - start
                return
            self.inside += time.perf_counter() - start
            yield item


class TimedEngine:
    """The engine, with the seconds spent in ``infer`` counted."""

    def __init__(self, engine):  # noqa: ANN001
        self.engine, self.name, self.device, self.seconds = engine, engine.name, "cpu", 0.0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        result = self.engine.infer(batch)
        self.seconds += time.perf_counter() - start
        return result


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
        RenderedFrame,
        colorize_stage,
        join_stage,
        render_shape,
        run_film,
    )
    from vidcolor.temporal import smooth_stage, temporal_settings

    source = FOOTAGE / args.clip
    options = RunOptions(overwrite=True)
    engine = TimedEngine(load_engine(device="cpu", backend=args.backend, precision=args.precision))

    def one_pass(folder: Path) -> dict[str, float]:
        with VideoReader(source) as reader:
            writer = VideoWriter(folder / "stages.mp4", reader.info, options.encode, [], "bench")
            engine.seconds = 0.0
            decode = Timed(reader.frames())
            colorize = Timed(
                colorize_stage(decode, engine, options.render_size, options.batch_size), decode
            )
            smooth = Timed(smooth_stage(colorize, temporal_settings(options)), colorize)
            join = Timed(join_stage(smooth, np.uint8), smooth)
            encode = 0.0
            for item in join:
                if isinstance(item, RenderedFrame):
                    start = time.perf_counter()
                    writer.write(item.rgb, item.pts)
                    encode += time.perf_counter() - start
            start = time.perf_counter()
            writer.close()
            encode += time.perf_counter() - start
        return {
            "decode": decode.own,
            "resize": colorize.own - engine.seconds,
            "model": engine.seconds,
            "smooth": smooth.own,
            "join": join.own,
            "encode": encode,
        }

    with tempfile.TemporaryDirectory() as tmp:
        one_pass(Path(tmp))  # warm-up: file cache, imports, tables
        times = one_pass(Path(tmp))
        with VideoReader(source) as reader:
            count = sum(isinstance(f, DecodedFrame) for f in reader.frames())
            height, width = reader.info.height, reader.info.width
        with VideoReader(source) as reader:
            writer = VideoWriter(Path(tmp) / "e2e.mp4", reader.info, options.encode, [], "bench")
            start = time.perf_counter()
            run_film(reader, writer, engine.engine, options)
            times["run_film"] = time.perf_counter() - start
    shape = render_shape(width, height, options.render_size)
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
    wall = times["run_film"]
    print(
        f"| run_film, stages overlapped | {1000 * wall / count:.2f} | "
        f"{100 * wall / total:.0f} % of the sum |"
    )
    with VideoReader(source) as reader:
        frames = [f for f in reader.frames() if isinstance(f, DecodedFrame)][:60]
    small_ab = [a for a in _predict(engine.engine, frames, shape)]
    joins = compare_joins(frames, small_ab)
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


def _predict(engine, frames, shape) -> list[np.ndarray]:  # noqa: ANN001
    from vidcolor.pipeline import predict_ab

    return predict_ab(engine, [f.luminance for f in frames], shape)


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
