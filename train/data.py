"""Training and validation images as Lab tensors.

Shards are WebDataset-style tars (``KEY.jpg`` + ``KEY.json``). The shared set is small (about ten
thousand photos), so it is decoded once into memory at a modest size; every step then costs only a
random crop, a flip and a Lab conversion.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from vidcolor.color import rgb_to_lab

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def _decode_rgb(data: bytes) -> np.ndarray | None:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _fit_short_side(rgb: np.ndarray, short_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = short_side / min(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def iter_shard_images(shards: list[Path]) -> Iterator[np.ndarray]:
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                    handle = tar.extractfile(member)
                    rgb = None if handle is None else _decode_rgb(handle.read())
                    if rgb is not None:
                        yield rgb


def load_shards(shard_dir: Path, short_side: int) -> list[np.ndarray]:
    shards = sorted(Path(shard_dir).glob("*.tar"))
    if not shards:
        raise FileNotFoundError(f"no .tar shards in {shard_dir}")
    return [_fit_short_side(rgb, short_side) for rgb in iter_shard_images(shards)]


def load_folder(folder: Path, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    out = []
    for path in files[:limit]:
        rgb = _decode_rgb(path.read_bytes())
        if rgb is not None:
            out.append((path.name, rgb))
    return out


def lab_pair(rgb_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB -> (L (1, H, W), ab (2, H, W)) float32, the generator's input and target."""
    lab = rgb_to_lab(rgb_uint8.astype(np.float32) / 255.0)
    return lab[None, :, :, 0], np.ascontiguousarray(lab[:, :, 1:].transpose(2, 0, 1))


class RandomCropBatches:
    """Endless shuffled batches of random-scale crops with horizontal flips."""

    def __init__(self, images: list[np.ndarray], crop: int, batch_size: int, seed: int = 0):
        self.images = images
        self.crop = crop
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def _sample(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        side = int(min(h, w) * self.rng.uniform(0.55, 1.0))
        y = int(self.rng.integers(0, h - side + 1))
        x = int(self.rng.integers(0, w - side + 1))
        patch = cv2.resize(
            rgb[y : y + side, x : x + side], (self.crop, self.crop), interpolation=cv2.INTER_AREA
        )
        return patch[:, ::-1] if self.rng.random() < 0.5 else patch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            order = self.rng.permutation(len(self.images))
            for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
                pairs = [
                    lab_pair(self._sample(self.images[i]))
                    for i in order[start : start + self.batch_size]
                ]
                lum = torch.from_numpy(np.stack([p[0] for p in pairs]))
                ab = torch.from_numpy(np.stack([p[1] for p in pairs]))
                yield lum, ab
