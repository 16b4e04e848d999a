"""Temporal consistency on the shared footage: the figures behind the README's targets.

In one run, with the shipped model on the CPU and lossless (FFV1) outputs so that compression
does not blur the comparison:
  * DAVIS bike-packing (a real colour clip): colourised from its own luminance (vidcolor
    reduces colour input to its lightness, the same as desaturating it first), per frame
    (``--no-temporal``) and with the temporal stage, both scored against the clip itself:
    chroma warp error beside the ground truth's own, and PSNR;
  * DAVIS goat, colourised frame by frame by another tool: ``vidcolor deflicker``'s output
    against its input (flow from the grey clip); vidcolor itself on the grey clip alongside;
  * the sample film: within shots, the 95th percentile of the frame-to-frame change of the
    mean a,b, per frame and smoothed; at every cut, the smoothed frame beside the per-frame one;
  * faster motion: the bike clip with only every 2nd, 3rd and 4th frame kept (losslessly
    re-encoded), so that things move two to four times as far between frames.
Chroma warp error follows Lai et al. (2018) on Lab a,b (``vidcolor eval-video``): DIS flow from
the reference, occlusion-masked, Lab units squared.

    python benchmarks/temporal.py [--render-size 160] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from e2e_cpu import cpu_name  # a sibling script: benchmarks/ is sys.path[0] when run

ROOT = Path(__file__).resolve().parents[1]
FOOTAGE = ROOT.parent / "shared" / "footage"
BIKE = FOOTAGE / "davis-bike-packing.mp4"
GOAT_GREY = FOOTAGE / "davis-goat-grey.mp4"
GOAT_FLICKER = FOOTAGE / "davis-goat-perframe-colorized.mp4"
FILM = FOOTAGE / "bw-film-a-bomb-blast-effects.mp4"


def rgb_frames(path: Path, indices: set[int]) -> dict[int, np.ndarray]:
    with av.open(str(path)) as container:
        return {
            i: f.to_ndarray(format="rgb24")
            for i, f in enumerate(container.decode(video=0))
            if i in indices
        }


def every_nth(source: Path, target: Path, step: int) -> None:
    """Keep every ``step``-th frame of ``source`` (lossless FFV1): the same scene, faster."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("ffv1", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv444p"
        for index, frame in enumerate(inp.decode(vin)):
            if index % step == 0:
                new = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), "rgb24")
                new = new.reformat(format="yuv444p")
                new.pts = index // step
                out.mux(vout.encode(new))
        out.mux(vout.encode(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--render-size", type=int, default=160)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from vidcolor import EncodeSettings, RunOptions, colorize_video
    from vidcolor.engines import load_engine
    from vidcolor.temporal.deflicker import deflicker_video
    from vidcolor.temporal.evaluate import evaluate_videos

    missing = [p for p in (BIKE, GOAT_GREY, GOAT_FLICKER, FILM) if not p.is_file()]
    if missing:
        sys.exit(f"missing footage: {', '.join(map(str, missing))}")
    engine = load_engine(device="cpu")
    smooth = RunOptions(
        render_size=args.render_size, encode=EncodeSettings(codec="ffv1"), overwrite=True
    )
    per_frame = smooth.with_(temporal=False)
    results: dict[str, object] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)

        def both(source: Path, stem: str) -> tuple[Path, Path]:
            plain, steady = tmp / f"{stem}-per-frame.mkv", tmp / f"{stem}-temporal.mkv"
            colorize_video(source, plain, per_frame, engine=engine)
            colorize_video(source, steady, smooth, engine=engine)
            return plain, steady

        # 1. real colour footage, against its own colours
        plain, steady = both(BIKE, "bike")
        bike = evaluate_videos(BIKE, [plain, steady])
        gt, pf, tc = bike.reference, *bike.videos
        results["bike"] = {
            "ground_truth_chroma_we": gt.chroma_warp_error,
            "per_frame": pf.to_json(),
            "temporal": tc.to_json(),
            "vs_ground_truth": tc.chroma_warp_error / gt.chroma_warp_error,
            "vs_per_frame": tc.chroma_warp_error / pf.chroma_warp_error,
            "psnr_change": tc.psnr - pf.psnr,  # type: ignore[operator]
        }

        # 2. deflicker another tool's per-frame colourisation; vidcolor on the same clip
        deflickered = tmp / "goat-deflickered.mkv"
        deflicker_video(GOAT_FLICKER, deflickered, smooth)
        goat_plain, goat_steady = both(GOAT_GREY, "goat")
        goat = evaluate_videos(GOAT_GREY, [GOAT_FLICKER, deflickered, goat_plain, goat_steady])
        fin, fout, gpf, gtc = goat.videos
        results["goat"] = {
            "input": fin.to_json(),
            "deflickered": fout.to_json(),
            "ratio": fout.chroma_warp_error / fin.chroma_warp_error,
            "vidcolor_per_frame": gpf.to_json(),
            "vidcolor_temporal": gtc.to_json(),
        }

        # 3. the sample film: steadier within shots, untouched at cuts
        plain, steady = both(FILM, "film")
        film = evaluate_videos(FILM, [plain, steady])
        fpf, ftc = film.videos
        starts = {0, *film.cuts}
        a, b = rgb_frames(plain, starts), rgb_frames(steady, starts)
        at_cuts = {i: int(np.abs(a[i].astype(int) - b[i]).max()) for i in sorted(starts)}
        results["film"] = {
            "cuts": film.cuts,
            "per_frame_p95": fpf.ab_change_p95,
            "temporal_p95": ftc.ab_change_p95,
            "ratio": ftc.ab_change_p95 / fpf.ab_change_p95,
            "per_frame_chroma_we": fpf.chroma_warp_error,
            "temporal_chroma_we": ftc.chroma_warp_error,
            "max_rgb_difference_at_shot_starts": at_cuts,
        }

        # 4. faster motion: the same clip with frames left out
        faster = {}
        for step in (2, 3, 4):
            clip = tmp / f"bike-every-{step}.mkv"
            every_nth(BIKE, clip, step)
            plain, steady = both(clip, f"bike-{step}")
            fast = evaluate_videos(clip, [plain, steady])
            ref_, fpf_, ftc_ = fast.reference, *fast.videos
            faster[step] = {
                "ground_truth_chroma_we": ref_.chroma_warp_error,
                "per_frame_chroma_we": fpf_.chroma_warp_error,
                "temporal_chroma_we": ftc_.chroma_warp_error,
                "psnr_change": ftc_.psnr - fpf_.psnr,  # type: ignore[operator]
            }
        results["faster"] = faster
    machine = (
        f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, PyAV {av.__version__}"
    )
    results["machine"] = machine
    results["render_size"] = args.render_size
    results["seconds"] = round(time.perf_counter() - started, 1)

    r = results
    bk, gt_, fm = r["bike"], r["goat"], r["film"]  # type: ignore[assignment]
    print(f"machine: {machine}; render size {args.render_size}; {r['seconds']} s\n")
    print("chroma warp error: Lab a,b units², DIS flow from the reference, occlusion-masked\n")
    print("| clip | | chroma warp error | warp error (RGB) | PSNR | target | met |")
    print("|---|---|---|---|---|---|---|")
    pfj, tcj = bk["per_frame"], bk["temporal"]
    ok1 = bk["vs_ground_truth"] <= 1.5 and bk["vs_per_frame"] <= 0.5 and bk["psnr_change"] >= -0.3
    print(f"| bike-packing | ground truth | {bk['ground_truth_chroma_we']:.2f} | | | | |")
    print(
        f"| | vidcolor per frame | {pfj['chroma_warp_error']:.2f} | {pfj['warp_error']:.5f} | "
        f"{pfj['psnr']:.2f} | | |"
    )
    print(
        f"| | vidcolor temporal | {tcj['chroma_warp_error']:.2f} "
        f"(x{bk['vs_ground_truth']:.2f} ground truth, x{bk['vs_per_frame']:.2f} per frame) | "
        f"{tcj['warp_error']:.5f} | {tcj['psnr']:.2f} ({bk['psnr_change']:+.2f} dB) | "
        f"≤ x1.5 GT, ≤ x0.5 per frame, ≥ -0.3 dB | {'yes' if ok1 else 'NO'} |"
    )
    ok2 = gt_["ratio"] <= 0.25
    print(
        f"| goat, per-frame colourised | input | {gt_['input']['chroma_warp_error']:.2f} | "
        f"{gt_['input']['warp_error']:.5f} | | | |"
    )
    print(
        f"| | vidcolor deflicker | {gt_['deflickered']['chroma_warp_error']:.2f} "
        f"(x{gt_['ratio']:.3f}) | {gt_['deflickered']['warp_error']:.5f} | | ≤ x0.25 | "
        f"{'yes' if ok2 else 'NO'} |"
    )
    print(
        f"| goat, grey | vidcolor per frame | {gt_['vidcolor_per_frame']['chroma_warp_error']:.2f}"
        f" | {gt_['vidcolor_per_frame']['warp_error']:.5f} | | | |"
    )
    print(
        f"| | vidcolor temporal | {gt_['vidcolor_temporal']['chroma_warp_error']:.2f} | "
        f"{gt_['vidcolor_temporal']['warp_error']:.5f} | | | |"
    )
    ok3 = fm["ratio"] <= 0.5 and all(
        v == 0 for v in fm["max_rgb_difference_at_shot_starts"].values()
    )
    print(
        f"\nsample film: cuts at {fm['cuts']}; within shots, p95 of the frame-to-frame mean a,b "
        f"change {fm['per_frame_p95']:.2f} per frame -> {fm['temporal_p95']:.2f} temporal "
        f"(x{fm['ratio']:.2f}, target ≤ x0.5); chroma warp error "
        f"{fm['per_frame_chroma_we']:.2f} -> {fm['temporal_chroma_we']:.2f}; largest RGB "
        f"difference from the per-frame output at each shot's first frame: "
        f"{fm['max_rgb_difference_at_shot_starts']} (target 0); "
        f"{'met' if ok3 else 'NOT met'}"
    )
    print("\n| bike, every n-th frame | ground truth | per frame | temporal | PSNR change |")
    print("|---|---|---|---|---|")
    for step, f in r["faster"].items():  # type: ignore[attr-defined]
        gt_we = f["ground_truth_chroma_we"]
        print(
            f"| {step} | {gt_we:.2f} | {f['per_frame_chroma_we']:.2f} | "
            f"{f['temporal_chroma_we']:.2f} (x{f['temporal_chroma_we'] / gt_we:.2f} GT, "
            f"x{f['temporal_chroma_we'] / f['per_frame_chroma_we']:.2f} per frame) | "
            f"{f['psnr_change']:+.2f} dB |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
