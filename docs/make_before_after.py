"""Make the README's before/after picture with vidcolor itself, from the shared film frames.

python docs/make_before_after.py   # writes docs/before-after.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from vidcolor import colorize_image

ROOT = Path(__file__).resolve().parents[1]
FRAMES = [
    ROOT.parent / "shared" / "footage" / name
    for name in ("bw-film-frame-soldier.png", "bw-film-frame-trucks.png")
]


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for frame in FRAMES:
            if not frame.is_file():
                sys.exit(f"missing {frame}")
            out = Path(tmp) / frame.name
            colorize_image(frame, out, device="cpu")
            before = cv2.imread(str(frame), cv2.IMREAD_COLOR)
            after = cv2.imread(str(out), cv2.IMREAD_COLOR)
            gap = np.full((before.shape[0], 8, 3), 255, np.uint8)
            rows.append(np.hstack([before, gap, after]))
    gap = np.full((8, rows[0].shape[1], 3), 255, np.uint8)
    picture = np.vstack([rows[0], gap, rows[1]])
    target = ROOT / "docs" / "before-after.png"
    cv2.imwrite(str(target), picture)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
