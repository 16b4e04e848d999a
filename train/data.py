"""Training and validation images as Lab tensors.

Shards are WebDataset-style tars (``KEY.jpg`` + ``KEY.json``). The shared set is small (about ten
thousand photos), so it is decoded once into memory at a modest size; every step then costs only a
random crop, a flip and a Lab conversion.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from vidcolor.color import rgb_to_lab
from vidcolor.errors import VidcolorError
from vidcolor.media.images import read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# What ``vidcolor eval`` reads from a folder of photos: everything vidcolor itself colourises.
PHOTO_SUFFIXES = (*IMAGE_SUFFIXES, ".tif", ".tiff", ".bmp")


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


def iter_shard_members(shards: list[Path]) -> Iterator[tuple[str, np.ndarray]]:
    """(shard/member name, uint8 RGB) of every decodable image in the shards, in order."""
    for shard in shards:
        try:
            with tarfile.open(shard) as tar:
                for member in tar:
                    if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                        handle = tar.extractfile(member)
                        rgb = None if handle is None else _decode_rgb(handle.read())
                        if rgb is not None:
                            yield f"{shard.name}/{member.name}", rgb
        except (OSError, tarfile.TarError) as exc:
            raise VidcolorError(f"{shard}: not a readable .tar shard ({exc})") from exc


def iter_shard_images(shards: list[Path]) -> Iterator[np.ndarray]:
    for _, rgb in iter_shard_members(shards):
        yield rgb


def find_shards(shard_dir: Path) -> list[Path]:
    """The .tar shards of a training folder; a missing or empty folder is a user error."""
    shard_dir = Path(shard_dir)
    if not shard_dir.is_dir():
        raise VidcolorError(f"training data folder not found: {shard_dir}")
    shards = sorted(shard_dir.glob("*.tar"))
    if not shards:
        raise VidcolorError(f"no .tar shards in training data folder {shard_dir}")
    return shards


def load_shards(
    shard_dir: Path, short_side: int, on_shard: Callable[[], None] | None = None
) -> list[np.ndarray]:
    """Every image of every shard, shrunk to ``short_side``; ``on_shard`` ticks per shard."""
    images: list[np.ndarray] = []
    for shard in find_shards(shard_dir):
        images.extend(_fit_short_side(rgb, short_side) for rgb in iter_shard_images([shard]))
        if on_shard is not None:
            on_shard()
    if not images:
        raise VidcolorError(f"no decodable images in the shards of {shard_dir}")
    return images


class EvalSource:
    """Photos to score a model on: a folder of photos, a folder of .tar shards, or one file.

    Photos are read with vidcolor's own image reader (EXIF orientation, 16 bits, grey), so they
    are exactly what ``vidcolor photo.jpg`` would see; shard members are decoded as training
    decodes them. Checked when made: a missing or empty source fails before any model runs.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        if self.path.is_file():
            is_tar = self.path.suffix.lower() == ".tar"
            self.photos = [] if is_tar else [self.path]
            self.shards = [self.path] if is_tar else []
        elif self.path.is_dir():
            files = sorted(
                p for p in self.path.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
            self.photos = [p for p in files if p.suffix.lower() in PHOTO_SUFFIXES]
            self.shards = [p for p in files if p.suffix.lower() == ".tar"]
            if not self.photos and not self.shards:
                raise VidcolorError(f"{self.path}: holds no photos and no .tar shards")
        else:
            raise VidcolorError(f"data not found: {self.path}")

    def known_count(self, limit: int | None = None) -> int | None:
        """How many photos ``images`` yields, when that is known without reading shards."""
        if self.shards:
            return None
        return len(self.photos) if limit is None else min(limit, len(self.photos))

    def images(self, limit: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """(name, pixels) in a stable order: uint8/uint16 RGB or grey, as read."""
        count = 0
        for path in self.photos:
            if limit is not None and count >= limit:
                return
            name = path.name if path == self.path else str(path.relative_to(self.path))
            yield name, read_image(path).rgb
            count += 1
        for name, rgb in iter_shard_members(self.shards):
            if limit is not None and count >= limit:
                return
            yield name, rgb
            count += 1


def lab_pair(rgb_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB -> (L (1, H, W), ab (2, H, W)) float32, the generator's input and target."""
    lab = rgb_to_lab(rgb_uint8.astype(np.float32) / 255.0)
    return lab[None, :, :, 0], np.ascontiguousarray(lab[:, :, 1:].transpose(2, 0, 1))


class RandomCropBatches:
    """Endless shuffled batches of random-scale crops with horizontal flips."""

    def __init__(self, images: list[np.ndarray], crop: int, batch_size: int, seed: int = 0):
        if len(images) < batch_size:  # no full batch: iterating would spin forever
            raise VidcolorError(
                f"{len(images)} training images: fewer than one batch ({batch_size})"
            )
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
