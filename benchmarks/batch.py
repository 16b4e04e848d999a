"""``vidcolor batch`` on a local Ray: how throughput scales with workers, and one long film
split into chunks across them. Everything measured side by side in one run.

  * items: stills (grey photos from ../shared/data/val, else generated) and two copies of the
    sample film, with 1 and then 2 CPU workers of one thread each (films whole);
  * long film: the sample film looped to about 2 minutes, on 1 worker in one pass and on
    2 workers in 4 chunks joined by packet copy.
Each job starts its own local Ray; its start-up (ray.init, then every worker loading its
engine) is reported apart and left out of the throughput.

    python benchmarks/batch.py [--stills 48] [--loops 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from e2e_cpu import cpu_name, loop_film  # noqa: E402

from vidcolor.batch.driver import BatchSettings, Report, run_batch  # noqa: E402
from vidcolor.batch.worker import EngineChoice  # noqa: E402
from vidcolor.media.index import build_film_index  # noqa: E402
from vidcolor.options import RunOptions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "a-bomb-blast-effects.mp4"
VAL = ROOT.parent / "shared" / "data" / "val"


def make_stills(folder: Path, count: int) -> None:
    """Grey versions of validation photos (or textured greys when ../shared is absent)."""
    folder.mkdir(parents=True)
    photos = sorted(p for p in VAL.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    for k in range(count):
        if photos:
            grey = cv2.imread(str(photos[k % len(photos)]), cv2.IMREAD_GRAYSCALE)
        else:
            rng = np.random.default_rng(k)
            grey = cv2.GaussianBlur(rng.integers(0, 255, (256, 384), np.uint8), (0, 0), 3)
        cv2.imwrite(str(folder / f"scan-{k:04d}.jpg"), grey)


def timed(inputs: list[str], outdir: Path, workers: int, chunk_seconds: float) -> Report:
    settings = BatchSettings(workers=workers, threads=1, chunk_seconds=chunk_seconds)
    report = run_batch(inputs, outdir, RunOptions(), EngineChoice(), settings)
    if report.failed:
        raise SystemExit(f"benchmark job failed: {report.failed}")
    return report


def work_seconds(report: Report) -> float:
    return report.seconds - report.startup_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stills", type=int, default=48)
    parser.add_argument("--loops", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, object] = {"cpu": cpu_name(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="vidcolor-bench-batch-") as tmp:
        work = Path(tmp)
        make_stills(work / "archive" / "scans", args.stills)
        for k in range(2):
            shutil.copy(SAMPLE, work / "archive" / f"reel-{k}.mp4")
        items = [str(work / "archive")]
        rows = {}
        for workers in (1, 2):
            report = timed(items, work / f"items-{workers}", workers, 0)
            seconds = work_seconds(report)
            rows[workers] = {
                "items": report.done,
                "frames": report.frames,
                "work_seconds": round(seconds, 2),
                "items_per_s": round(report.done / seconds, 3),
                "frames_per_s": round(report.frames / seconds, 2),
                "ray_init_seconds": report.ray_start_seconds,
                "startup_seconds": report.startup_seconds,
            }
            print(f"items, {workers} worker(s): {rows[workers]}", flush=True)
        results["items"] = rows
        results["items_speedup_2_vs_1"] = round(rows[2]["items_per_s"] / rows[1]["items_per_s"], 3)

        film = work / "long" / "long.mp4"
        film.parent.mkdir()
        loop_film(SAMPLE, film, args.loops)
        index = build_film_index(film)
        length = index.seconds(index.frame_count)
        chunk_seconds = length / 4 * 0.99
        one = timed([str(film)], work / "long-1", 1, 0)
        four = timed([str(film)], work / "long-2", 2, chunk_seconds)
        results["long_film"] = {
            "frames": index.frame_count,
            "seconds_of_film": round(length, 1),
            "chunk_seconds": round(chunk_seconds, 2),
            "one_worker_one_pass_s": round(work_seconds(one), 2),
            "two_workers_four_chunks_s": round(work_seconds(four), 2),
            "ratio": round(work_seconds(four) / work_seconds(one), 3),
        }
        print(f"long film: {results['long_film']}", flush=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"benchmark took {time.perf_counter() - started:.0f} s", file=sys.stderr)
