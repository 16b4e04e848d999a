"""Training and validation images as Lab tensors.

Training photos come from several sources mixed by weight: folders of WebDataset-style tars
(``KEY.jpg`` + ``KEY.json``) and folders of a user's own photos, searched recursively. The
shared sets are small (about sixteen thousand photos), so each photo is decoded once and kept in
memory as uint8 RGB at a modest short side (``data.short_side``, 192 by default: about 2 GB
for the shared sets); a run refuses to start if that would exceed ``data.max_memory_mb``.
Greyscale and nearly greyscale photos (mean Lab chroma under ``data.min_chroma``) are skipped:
they teach the model that everything is grey. A source's ``hold_out`` share is left out of
training by a hash of each photo's file name (``is_held_out``), and ``EvalSource`` reads that
same share back: a held-out set drawn across every kind of photo the source holds.

Every random choice is a pure function of the seed and of a sample's position in the stream
(``epoch * epoch_size + index``): the epoch's order comes from a generator seeded by (seed,
epoch) and each sample's crop and flip from one seeded by (seed, epoch, index). Step ``s`` of
a run therefore always sees the same batch, whatever the number of DataLoader workers and
however often the run was stopped and resumed; ``StepBatches`` hands the positions of steps
``start..stop`` (of one rank's share, under Ray) to a plain ``DataLoader``.
"""

from __future__ import annotations

import hashlib
import io
import signal
import tarfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vidcolor.color import rgb_to_lab
from vidcolor.errors import VidcolorError, one_line
from vidcolor.media.images import open_pillow, read_image
from vidcolor.options import DEFAULT_MAX_PIXELS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# What ``vidcolor eval`` and training read from a folder of photos: what vidcolor colourises.
PHOTO_SUFFIXES = (*IMAGE_SUFFIXES, ".tif", ".tiff", ".bmp")
MAX_MEMBER_BYTES = 256 << 20  # a shard member bigger than this is not a photo
# Streams of the data RNG, so that no two kinds of random choice ever share a seed.
_PLAN_STREAM, _SAMPLE_STREAM = 0, 1


def _decode_rgb(data: bytes) -> np.ndarray | None:
    """uint8 RGB, or None for what is not a picture or declares more than DEFAULT_MAX_PIXELS
    (a decompression bomb: the header is read first, by Pillow, without decoding)."""
    try:
        with open_pillow(io.BytesIO(data), DEFAULT_MAX_PIXELS):  # type: ignore[arg-type]
            pass
    except VidcolorError:
        return None
    except (OSError, ValueError):
        pass  # OpenCV reads some files Pillow does not; it has a limit of its own
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _fit_short_side(rgb: np.ndarray, short_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = short_side / min(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def mean_chroma(rgb: np.ndarray) -> float:
    """Mean Lab chroma sqrt(a² + b²) of uint8 RGB, on a subsample (grey photos: under 3)."""
    step = max(1, min(rgb.shape[:2]) // 64)
    lab = rgb_to_lab(rgb[::step, ::step].astype(np.float32) / 255.0)
    return float(np.hypot(lab[:, :, 1], lab[:, :, 2]).mean())


def iter_shard_members(
    shards: list[Path], held_out: float | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """(shard/member name, uint8 RGB) of every decodable image in the shards, in order (with
    ``held_out``: of those in that held-out share only, the others not decoded)."""
    for shard in shards:
        for name, data in _shard_images(shard):
            if held_out is not None and not is_held_out(name, held_out):
                continue
            rgb = _decode_rgb(data)
            if rgb is not None:
                yield f"{shard.name}/{name}", rgb


def _shard_images(shard: Path, read: bool = True) -> Iterator[tuple[str, bytes]]:
    """(member name, encoded bytes) of the image members of one tar, in the tar's order (with
    ``read`` False, the names from the tar's headers alone, with empty bytes)."""
    try:
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                    if member.size > MAX_MEMBER_BYTES:
                        raise VidcolorError(
                            f"{shard}: member {one_line(member.name)} declares {member.size} "
                            f"bytes, more than any photo ({MAX_MEMBER_BYTES >> 20} MiB); not read"
                        )
                    if not read:
                        yield member.name, b""
                        continue
                    handle = tar.extractfile(member)
                    if handle is not None:
                        yield member.name, handle.read()
    except (OSError, tarfile.TarError) as exc:
        raise VidcolorError(f"{shard}: not a readable .tar shard ({exc})") from exc


def is_held_out(key: str, fraction: float) -> bool:
    """Whether a photo falls in a source's held-out share. Decided by its file name alone, so
    the split stays the same wherever the source lies and however it is sharded, and it cuts
    across every shard (the shared sets' shards each hold one kind of photo)."""
    if fraction <= 0:
        return False
    name = key.rsplit("/", 1)[-1].encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha256(name).digest()[:8], "big") < fraction * 2**64


def _visible_files(folder: Path) -> list[Path]:
    """Files under ``folder``, recursively, sorted, hidden files and folders left out."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def find_source_files(path: Path) -> tuple[list[Path], list[Path]]:
    """(.tar shards, photos) of a training source: a folder (recursively) or one .tar file."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".tar":
        return [path], []
    if not path.is_dir():
        raise VidcolorError(f"training data not found: {path}")
    files = _visible_files(path)
    shards = [p for p in files if p.suffix.lower() == ".tar"]
    photos = [p for p in files if p.suffix.lower() in PHOTO_SUFFIXES]
    if not shards and not photos:
        raise VidcolorError(f"{path}: holds no photos and no .tar shards")
    return shards, photos


@dataclass
class SourceImages:
    """One training source, decoded: uint8 RGB photos at the recipe's short side, with keys."""

    path: Path
    images: list[np.ndarray] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    skipped_grey: int = 0
    skipped_unreadable: int = 0
    held_out: int = 0
    nbytes: int = 0  # of the kept pixels

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)

    def __len__(self) -> int:
        return len(self.images)

    def fingerprint(self) -> str:
        """Which photos, in which order: a resumed run must see the same ones (paths may move)."""
        digest = hashlib.sha256(f"{len(self.keys)}\n".encode())
        for key in self.keys:
            digest.update(key.encode("utf-8", "surrogateescape") + b"\n")
        return digest.hexdigest()[:16]

    def summary(self) -> str:
        skipped = []
        if self.skipped_grey:
            skipped.append(f"{self.skipped_grey} greyscale")
        if self.skipped_unreadable:
            skipped.append(f"{self.skipped_unreadable} unreadable")
        extra = f" ({', '.join(skipped)} skipped)" if skipped else ""
        if self.held_out:
            extra += f" ({self.held_out} held out)"
        return f"{len(self)} from {one_line(str(self.path))}{extra}"


def _prepare(rgb: np.ndarray | None, short_side: int, min_chroma: float) -> np.ndarray | str:
    """The photo as kept in memory, or why it is skipped ('grey', 'unreadable')."""
    if rgb is None:
        return "unreadable"
    if rgb.ndim == 2:
        return "grey"
    if rgb.dtype == np.uint16:
        rgb = (rgb.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    small = np.ascontiguousarray(_fit_short_side(rgb, short_side))
    if min_chroma > 0 and mean_chroma(small) < min_chroma:
        return "grey"
    return small


def _read_photo(path: Path) -> np.ndarray | None:
    try:
        return read_image(path).rgb
    except VidcolorError:
        return None  # one bad file in a user's archive does not stop a run


def load_source(
    path: Path,
    short_side: int,
    min_chroma: float = 3.0,
    threads: int = 2,
    memory_left: int | None = None,
    on_file: Callable[[], None] | None = None,
    hold_out: float = 0.0,
) -> SourceImages:
    """Decode every photo of one source (shards first, then photos, each sorted by path) but
    its ``hold_out`` share (``is_held_out``), which is not even decoded.

    Decoding runs on ``threads`` threads (OpenCV releases the GIL); the order is kept.
    ``memory_left`` bytes bound what the source may keep; ``on_file`` ticks per shard or photo.
    """
    shards, photos = find_source_files(path)
    root = Path(path) if Path(path).is_dir() else Path(path).parent
    source = SourceImages(Path(path))

    def keep(key: str, result: np.ndarray | str) -> None:
        if isinstance(result, str):
            if result == "grey":
                source.skipped_grey += 1
            else:
                source.skipped_unreadable += 1
            return
        source.images.append(result)
        source.keys.append(key)
        source.nbytes += result.nbytes
        if memory_left is not None and source.nbytes > memory_left:
            raise VidcolorError(
                f"the training photos take more than data.max_memory_mb at short side "
                f"{short_side} (reached at {one_line(str(path))}); lower data.short_side or "
                "raise data.max_memory_mb"
            )

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for shard in shards:
            prefix = shard.relative_to(root).as_posix()
            members = []
            for name, data in _shard_images(shard):
                if is_held_out(name, hold_out):
                    source.held_out += 1
                else:
                    members.append((name, data))
            results = pool.map(
                lambda item: _prepare(_decode_rgb(item[1]), short_side, min_chroma), members
            )
            for (name, _), result in zip(members, results, strict=True):
                keep(f"{prefix}/{name}", result)
            if on_file is not None:
                on_file()
        training = [p for p in photos if not is_held_out(p.name, hold_out)]
        source.held_out += len(photos) - len(training)
        photos = training
        results = pool.map(
            lambda p: _prepare(_read_photo(p), short_side, min_chroma), photos, chunksize=8
        )
        for photo, result in zip(photos, results, strict=True):
            keep(photo.relative_to(root).as_posix(), result)
            if on_file is not None:
                on_file()
    if not source.images:
        raise VidcolorError(f"{one_line(str(path))}: no usable colour photos ({source.summary()})")
    return source


def count_source_files(path: Path) -> int:
    """How many ticks ``load_source`` gives (shards + photos): a progress bar's total."""
    shards, photos = find_source_files(path)
    return len(shards) + len(photos)


def lab_pair(rgb_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB -> (L (1, H, W), ab (2, H, W)) float32, the generator's input and target."""
    lab = rgb_to_lab(rgb_uint8.astype(np.float32) / 255.0)
    return lab[None, :, :, 0], np.ascontiguousarray(lab[:, :, 1:].transpose(2, 0, 1))


def random_crop(
    rgb: np.ndarray,
    rng: np.random.Generator,
    crop: int,
    min_scale: float = 0.55,
    max_scale: float = 1.0,
    flip: bool = True,
) -> np.ndarray:
    """A random square of ``min_scale..max_scale`` of the short side, resized to ``crop``."""
    h, w = rgb.shape[:2]
    side = max(1, round(min(h, w) * rng.uniform(min_scale, max_scale)))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    flipped = rng.random() < 0.5  # drawn even when flips are off: the stream stays the same
    interp = cv2.INTER_AREA if side > crop else cv2.INTER_LINEAR
    patch = cv2.resize(rgb[y : y + side, x : x + side], (crop, crop), interpolation=interp)
    return np.ascontiguousarray(patch[:, ::-1]) if flip and flipped else patch


def split_counts(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders, ties to the first)."""
    shares = np.asarray(weights, np.float64) / float(np.sum(weights)) * total
    counts = np.floor(shares).astype(np.int64)
    order = sorted(range(len(shares)), key=lambda i: (-(shares[i] - counts[i]), i))
    for i in order[: total - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


class TrainingSet(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Item ``position`` of an endless stream of (L, ab) crops; a pure function of the seed.

    Epoch ``e`` holds ``epoch_size`` samples: source ``i`` gives its share of them by weight,
    each source's photos in a fresh permutation (repeated when a small source is sampled more
    often than it has photos), and the epoch is shuffled as a whole.
    """

    def __init__(
        self,
        sources: Sequence[SourceImages],
        weights: Sequence[float],
        crop: int,
        seed: int = 0,
        min_scale: float = 0.55,
        max_scale: float = 1.0,
        flip: bool = True,
        epoch_size: int | None = None,
    ):
        if len(sources) != len(weights) or not sources:
            raise ValueError("one weight per source, at least one source")
        self.sources = list(sources)
        self.weights = [float(w) for w in weights]
        self.crop = crop
        self.seed = seed
        self.min_scale, self.max_scale, self.flip = min_scale, max_scale, flip
        self.epoch_size = epoch_size or sum(len(s) for s in self.sources)
        self._plans: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        """One epoch (the stream itself is endless; ``StepBatches`` indexes it)."""
        return self.epoch_size

    def epoch_plan(self, epoch: int) -> np.ndarray:
        """(epoch_size, 2) int64: (source, photo) of every sample of the epoch, in order."""
        plan = self._plans.get(epoch)
        if plan is not None:
            return plan
        rng = np.random.default_rng([self.seed, _PLAN_STREAM, epoch])
        parts = []
        for i, (source, count) in enumerate(
            zip(self.sources, split_counts(self.epoch_size, self.weights), strict=True)
        ):
            rounds = -(-count // len(source))
            photos = np.concatenate([rng.permutation(len(source)) for _ in range(rounds)])
            parts.append(np.stack([np.full(count, i), photos[:count]], axis=1))
        plan = np.concatenate(parts)[rng.permutation(self.epoch_size)]
        self._plans = {epoch: plan}  # a worker moves through epochs in order: keep one
        return plan

    def photo(self, position: int) -> np.ndarray:
        """The uint8 RGB photo (as kept in memory) that stream item ``position`` crops."""
        epoch, index = divmod(position, self.epoch_size)
        source, photo = self.epoch_plan(epoch)[index]
        return self.sources[int(source)].images[int(photo)]

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = divmod(int(position), self.epoch_size)
        rng = np.random.default_rng([self.seed, _SAMPLE_STREAM, epoch, index])
        patch = random_crop(
            self.photo(position), rng, self.crop, self.min_scale, self.max_scale, self.flip
        )
        lum, ab = lab_pair(patch)
        return torch.from_numpy(lum), torch.from_numpy(ab)


class StepBatches(Sampler[list[int]]):
    """Stream positions of steps ``start..stop``: one global batch per step, ``rank``'s share.

    Step ``s`` is positions ``s*B .. s*B+B-1`` of the stream; with ``world`` ranks (Ray Train
    workers) rank ``r`` takes the ``r``-th of ``world`` equal slices, so together the ranks
    see exactly the batch one process would.
    """

    def __init__(self, batch_size: int, start: int, stop: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise VidcolorError(
                f"optim.batch_size {batch_size} does not split evenly over {world} workers"
            )
        self.batch_size, self.start, self.stop = batch_size, start, stop
        self.local = batch_size // world
        self.offset = rank * self.local

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            first = step * self.batch_size + self.offset
            yield list(range(first, first + self.local))


def _init_worker(_: int) -> None:
    """A DataLoader worker: one torch thread, so workers and the training step share the CPU.

    Ctrl-C and SIGTERM reach the whole process group: workers ignore them and let the training
    process finish its step, checkpoint and stop them (a worker that died of the signal would
    abort that step instead). Not ``cv2.setNumThreads``: in a forked worker it can wait
    forever on the parent's thread pool.
    """
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    torch.set_num_threads(1)


def step_loader(
    dataset: TrainingSet,
    batches: StepBatches,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    """A DataLoader over ``batches``; it draws nothing from torch's global RNG."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        worker_init_fn=_init_worker if workers else None,
        # Without a generator of its own, each iterator would draw its base seed from the
        # global RNG, and a resumed run would then draw different dropout masks.
        generator=torch.Generator().manual_seed(dataset.seed),
        pin_memory=pin_memory,
        prefetch_factor=2 if workers else None,
    )


def sample_ab(sources: Sequence[SourceImages], count: int, seed: int) -> torch.Tensor:
    """(1, 2, N, 1) a,b of a fixed sample of the photos (every 4th pixel), for loss statistics."""
    rng = np.random.default_rng([seed, 2])
    everything = [(s, i) for s in range(len(sources)) for i in range(len(sources[s]))]
    picks = rng.choice(len(everything), size=min(count, len(everything)), replace=False)
    flat = []
    for pick in sorted(int(p) for p in picks):
        s, i = everything[pick]
        flat.append(lab_pair(sources[s].images[i])[1][:, ::4, ::4].reshape(2, -1))
    return torch.from_numpy(np.concatenate(flat, axis=1))[None, :, :, None]


class EvalSource:
    """Photos to score a model on: a folder of photos, a folder of .tar shards, or one file.

    Photos are read with vidcolor's own image reader (EXIF orientation, 16 bits, grey), so they
    are exactly what ``vidcolor photo.jpg`` would see; shard members are decoded as training
    decodes them. Checked when made: a missing or empty source fails before any model runs.
    With ``held_out``, only the photos a training source with that ``hold_out`` left out.
    """

    def __init__(self, path: Path, held_out: float | None = None):
        self.path = Path(path)
        self.held_out = held_out
        if self.path.is_file():
            is_tar = self.path.suffix.lower() == ".tar"
            self.photos = [] if is_tar else [self.path]
            self.shards = [self.path] if is_tar else []
        elif self.path.is_dir():
            files = _visible_files(self.path)
            self.photos = [p for p in files if p.suffix.lower() in PHOTO_SUFFIXES]
            self.shards = [p for p in files if p.suffix.lower() == ".tar"]
            if not self.photos and not self.shards:
                raise VidcolorError(f"{self.path}: holds no photos and no .tar shards")
        else:
            raise VidcolorError(f"data not found: {self.path}")
        if held_out is not None:
            self.photos = [p for p in self.photos if is_held_out(p.name, held_out)]
            in_shards = (
                is_held_out(name, held_out)
                for shard in self.shards
                for name, _ in _shard_images(shard, read=False)
            )
            if not self.photos and not any(in_shards):
                raise VidcolorError(
                    f"{self.path}: none of its photos is in a {held_out:g} hold-out"
                )

    def known_count(self, limit: int | None = None) -> int | None:
        """How many photos ``images`` yields, when that is known without reading shards."""
        if self.shards:
            return None
        return len(self.photos) if limit is None else min(limit, len(self.photos))

    def images(
        self, limit: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> Iterator[tuple[str, np.ndarray]]:
        """(name, pixels) in a stable order: uint8/uint16 RGB or grey, as read."""
        count = 0
        for path in self.photos:
            if limit is not None and count >= limit:
                return
            name = path.name if path == self.path else str(path.relative_to(self.path))
            yield name, read_image(path, max_pixels).rgb
            count += 1
        for name, rgb in iter_shard_members(self.shards, self.held_out):
            if limit is not None and count >= limit:
                return
            yield name, rgb
            count += 1
