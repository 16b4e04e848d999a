"""Colour quality on real colour footage: colourise a colour clip from its own luminance.

vidcolor reduces colour input to its lightness, so running it on a colour clip and comparing the
result with the clip itself measures how close the predicted colours come to the real ones.
The output is lossless (FFV1, 4:4:4) so that compression does not blur the comparison; the grey
baseline is the same frames with their colour removed.

    python benchmarks/quality_video.py [--render-size 160]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "footage" / "davis-bike-packing.mp4"


def frames_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--render-size", type=int, default=160)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from vidcolor.train.evaluate import grey_rgb

    from vidcolor import EncodeSettings, RunOptions, colorize_video
    from vidcolor.metrics import mean_scores, score

    if not CLIP.is_file():
        sys.exit(f"missing {CLIP}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ours.mkv"
        options = RunOptions(render_size=args.render_size, encode=EncodeSettings(codec="ffv1"))
        colorize_video(CLIP, out, options, device="cpu")
        truth, ours = frames_rgb(CLIP), frames_rgb(out)
    assert len(truth) == len(ours)
    model = mean_scores([score(t / 255.0, o / 255.0) for t, o in zip(truth, ours, strict=True)])
    grey = mean_scores([score(t / 255.0, grey_rgb(t)) for t in truth])
    truth_cf = model.colorfulness - model.delta_cf
    print(f"{CLIP.name}: {len(truth)} frames, render size {args.render_size}\n")
    print("| | PSNR | SSIM | colourfulness | ΔCF | CIEDE2000 |")
    print("|---|---|---|---|---|---|")
    for name, s in (("vidcolor", model), ("grey baseline", grey)):
        print(
            f"| {name} | {s.psnr:.2f} | {s.ssim:.4f} | {s.colorfulness:.1f} | "
            f"{s.delta_cf:+.1f} | {s.ciede2000:.2f} |"
        )
    print(f"| ground truth | | | {truth_cf:.1f} | | |")


if __name__ == "__main__":
    main()
