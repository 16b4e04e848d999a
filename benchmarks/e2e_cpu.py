"""End-to-end speed and memory of ``vidcolor`` on the shared clips, beside a plain transcode.

For each clip, in one run on the same machine:
  * plain: decode + H.264 encode (libx264, same crf/preset/pix_fmt, same pts), no model;
  * vidcolor: the whole pipeline (decode, L, generator, temporal smoothing, join, encode) with
    the shipped model on the default engine (``--backend auto``: ONNX Runtime int8 on a CPU),
    the same with ``--no-temporal`` (the temporal stage's share of the end-to-end time is
    1 - (time without) / (time with)), and the same with each engine of ``--compare``
    (default: PyTorch fp32, the engine before ONNX Runtime).
The ratio vidcolor/plain is what to compare across machines. Peak memory (max RSS) is
measured in fresh subprocesses for the film and for the same film looped ``--loops`` times,
to show that memory does not grow with length.

    python benchmarks/e2e_cpu.py [--loops 8] [--repeat 2] [--compare torch:fp32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import torch

ROOT = Path(__file__).resolve().parents[1]
FOOTAGE = ROOT.parent / "shared" / "footage"
CLIPS = ["bw-film-a-bomb-blast-effects.mp4", "davis-goat-grey.mp4", "davis-bike-packing.mp4"]


def plain_transcode(source: Path, target: Path, crf: int = 18, preset: str = "medium") -> int:
    """The baseline: what ffmpeg -c:v libx264 -crf 18 would do, through PyAV."""
    with (
        av.open(str(source)) as inp,
        av.open(str(target), "w", options={"movflags": "+faststart"}) as out,
    ):
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        vout.codec_context.time_base = vin.time_base
        vout.options = {"crf": str(crf), "preset": preset}
        frames = 0
        for frame in inp.decode(vin):
            rgb = frame.to_ndarray(format="rgb24")  # same conversion work as vidcolor's decode
            new = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            new.pts, new.time_base = frame.pts, vin.time_base
            out.mux(vout.encode(new))
            frames += 1
        out.mux(vout.encode(None))
    return frames


def loop_film(source: Path, target: Path, loops: int) -> None:
    """Concatenate a film with itself by remuxing packets (no re-encode): a long input."""
    with av.open(str(source)) as first:
        stream = first.streams.video[0]
        duration = stream.duration or round(stream.frames / stream.average_rate / stream.time_base)
    with av.open(str(target), "w") as out:
        vout = None
        for i in range(loops):
            with av.open(str(source)) as inp:
                vin = inp.streams.video[0]
                if vout is None:
                    vout = out.add_stream_from_template(vin)
                for packet in inp.demux(vin):
                    if packet.dts is None:
                        continue
                    packet.pts += i * duration
                    packet.dts += i * duration
                    packet.stream = vout
                    out.mux(packet)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def peak_rss_mib(source: Path, target: Path, render_size: int) -> float:
    """Peak RSS of a fresh interpreter that colourises ``source`` (includes the runtime + model).

    Read from VmHWM, which starts afresh with the new program: getrusage's ru_maxrss does not
    (Linux keeps it across fork and exec, so it would report this benchmark's own size).
    """
    code = (
        "from vidcolor import RunOptions, colorize_video\n"
        f"colorize_video({str(source)!r}, {str(target)!r}, "
        f"RunOptions(render_size={render_size}, overwrite=True))\n"
        "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loops", type=int, default=8)
    parser.add_argument("--render-size", type=int, default=160)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of vidcolor with and without temporal"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--clips", nargs="*", default=CLIPS, help="names in shared/footage")
    parser.add_argument(
        "--compare", nargs="*", default=["torch:fp32"], help="other engines, backend:precision"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from vidcolor import RunOptions, colorize_video
    from vidcolor.engines import load_engine

    engine = load_engine(device="cpu")
    others = {
        spec: load_engine(device="cpu", backend=spec.split(":")[0], precision=spec.split(":")[1])
        for spec in args.compare
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for clip in args.clips:
            source = FOOTAGE / clip
            if not source.is_file():
                print(f"skip {clip}: not found in {FOOTAGE}", file=sys.stderr)
                continue
            plain_s, frames = timed(plain_transcode, source, tmp / "plain.mp4")
            options = RunOptions(render_size=args.render_size, overwrite=True)
            ours_s = plain_ours_s = float("inf")
            other_s = dict.fromkeys(others, float("inf"))
            for _ in range(args.repeat):  # alternated, fastest kept: a busy machine's noise
                seconds, result = timed(
                    colorize_video, source, tmp / "ours.mp4", options, engine=engine
                )
                ours_s = min(ours_s, seconds)
                seconds, _ = timed(
                    colorize_video,
                    source,
                    tmp / "ours-per-frame.mp4",
                    options.with_(temporal=False),
                    engine=engine,
                )
                plain_ours_s = min(plain_ours_s, seconds)
                for spec, other in others.items():
                    seconds, _ = timed(
                        colorize_video, source, tmp / "other.mp4", options, engine=other
                    )
                    other_s[spec] = min(other_s[spec], seconds)
            with av.open(str(source)) as c:
                size = f"{c.streams.video[0].width}x{c.streams.video[0].height}"
            rows.append(
                {
                    "clip": clip,
                    "size": size,
                    "frames": frames,
                    "plain_fps": frames / plain_s,
                    "vidcolor_fps": result.frames / ours_s,
                    "ratio": (result.frames / ours_s) / (frames / plain_s),
                    "per_frame_fps": result.frames / plain_ours_s,
                    "temporal_share": 1 - plain_ours_s / ours_s,
                    "compare_ratio": {
                        spec: (result.frames / secs) / (frames / plain_s)
                        for spec, secs in other_s.items()
                    },
                }
            )
        film = FOOTAGE / CLIPS[0]
        memory = {}
        if film.is_file():
            long_film = tmp / "long.mp4"
            loop_film(film, long_film, args.loops)
            with av.open(str(long_film)) as c:
                long_frames = sum(1 for _ in c.demux(c.streams.video[0]) if _.dts is not None)
            memory = {
                "short_frames": 360,
                "long_frames": long_frames,
                "short_peak_mib": peak_rss_mib(film, tmp / "m1.mp4", args.render_size),
                "long_peak_mib": peak_rss_mib(long_film, tmp / "m2.mp4", args.render_size),
            }
    import onnxruntime

    machine = (
        f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}, PyAV {av.__version__}"
    )
    print(f"machine: {machine}; render size {args.render_size}; engine {engine.name}\n")
    compare_heads = "".join(f" {spec} ratio |" for spec in others)
    print(
        "| clip | size | frames | plain decode+encode fps | vidcolor fps | ratio "
        f"| vidcolor --no-temporal fps | temporal share of time |{compare_heads}"
    )
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(others))
    for r in rows:
        compared = "".join(f" {v:.2f} |" for v in r["compare_ratio"].values())
        print(
            f"| {r['clip']} | {r['size']} | {r['frames']} | {r['plain_fps']:.1f} | "
            f"{r['vidcolor_fps']:.1f} | {r['ratio']:.2f} | {r['per_frame_fps']:.1f} | "
            f"{100 * r['temporal_share']:.0f} % |{compared}"
        )
    if memory:
        growth = memory["long_peak_mib"] / memory["short_peak_mib"]
        print(
            f"\npeak RSS: {memory['short_frames']} frames {memory['short_peak_mib']:.0f} MiB; "
            f"{memory['long_frames']} frames {memory['long_peak_mib']:.0f} MiB "
            f"(x{growth:.2f} for x{memory['long_frames'] / memory['short_frames']:.0f} length)"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "rows": rows,
                    "memory": memory,
                    "render_size": args.render_size,
                    "engine": engine.name,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
