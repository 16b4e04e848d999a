"""A batch worker: holds one engine and colourises the rows it is given, one at a time.

Plain Python (the driver wraps it as a Ray actor), so it runs and tests without Ray. Rows are
small: an item (where the picture or film is), and for a film's chunk its frame range and the
film's index. The worker reads and writes the files itself (decode -> colourise -> smooth ->
encode in its own threaded pipeline); no pixels travel through Ray's object store.

Every outcome comes back as a value, never an exception: a bad file is a ``Failed`` with its one
line, so the driver records it and goes on. Warnings logged while working on a row come back
with it, to be shown by the driver.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from vidcolor.batch.chunks import Chunk, colorize_chunk, plan_chunks
from vidcolor.batch.inputs import Item
from vidcolor.errors import VidcolorError, one_line
from vidcolor.media.index import FilmIndex
from vidcolor.options import RunOptions


@dataclass(frozen=True)
class EngineChoice:
    """Which engine each worker loads (the ``--model/--device/--backend/--precision`` options)."""

    weights: Path | None = None
    device: str = "auto"
    backend: str = "auto"
    precision: str = "auto"


@dataclass
class Done:
    """An output written under its temporary name, ready for the driver to publish."""

    tmp: Path
    frames: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


@dataclass
class Planned:
    """A film long enough to split: its index and chunks, to spread over the workers."""

    index: FilmIndex
    chunks: list[Chunk]
    warnings: list[str] = field(default_factory=list)


@dataclass
class Failed:
    error: str  # one line
    warnings: list[str] = field(default_factory=list)


Outcome = Done | Planned | Failed


class _Collect(logging.Handler):
    """Keeps the warnings logged while a row is worked on."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(one_line(record.getMessage()))


class ColorizeWorker:
    """One engine, many files: the engine loads once, then every row reuses it."""

    def __init__(
        self,
        choice: EngineChoice,
        options: RunOptions,
        threads: int | None = None,
        cores: list[int] | None = None,
    ) -> None:
        from vidcolor.engines import load_engine

        if cores:  # a CPU worker of N threads on N cores of its own: workers never share one
            _pin(cores)
        self.options = options
        self.engine = load_engine(
            choice.weights,
            choice.device,
            choice.backend,
            choice.precision,
            options.batch_size,
            options.render_size,
            threads=threads,
        )
        _limit_threads(threads)

    def where(self) -> dict[str, str]:
        """The worker's process, GPUs and engine (to check placement)."""
        return {
            "pid": str(os.getpid()),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "engine": self.engine.name,
            "device": self.engine.device,
            "cores": ",".join(str(c) for c in sorted(os.sched_getaffinity(0))),
        }

    def start(self, item: Item, tmp: Path, chunk_seconds: float) -> Outcome:
        """Colourise a still or a short film whole; plan a long film's chunks."""
        return self._guarded(item, lambda: self._start(item, tmp, chunk_seconds))

    def chunk(self, item: Item, index: FilmIndex, chunk: Chunk, tmp: Path) -> Outcome:
        def work() -> Outcome:
            started = time.perf_counter()
            frames = colorize_chunk(item.source, index, chunk, tmp, self.engine, self.options)
            return Done(tmp, frames, time.perf_counter() - started)

        return self._guarded(item, work)

    def join(self, item: Item, index: FilmIndex, parts: list[Path], tmp: Path) -> Outcome:
        def work() -> Outcome:
            from vidcolor.media.join import join_chunks

            started = time.perf_counter()
            frames = join_chunks(
                item.source,
                parts,
                tmp,
                index,
                self.options.encode,
                max_pixels=self.options.max_pixels,
            )
            return Done(tmp, frames, time.perf_counter() - started)

        return self._guarded(item, work)

    # --- inside ---------------------------------------------------------------------------

    def _start(self, item: Item, tmp: Path, chunk_seconds: float) -> Outcome:
        started = time.perf_counter()
        source = item.source if item.member is None else _extract(item, tmp)
        try:
            return self._colorize(item, source, tmp, chunk_seconds, started)
        except VidcolorError as exc:
            if source == item.source:
                raise
            # name the archive member, not the file it was unpacked to
            raise VidcolorError(str(exc).replace(str(source), one_line(item.label))) from exc
        finally:
            if source != item.source:
                source.unlink(missing_ok=True)

    def _colorize(
        self, item: Item, source: Path, tmp: Path, chunk_seconds: float, started: float
    ) -> Outcome:
        from vidcolor.api import colorize
        from vidcolor.media.probe import MediaKind, detect_kind

        if detect_kind(source) is MediaKind.VIDEO and chunk_seconds > 0:
            from vidcolor.media.index import build_film_index

            index = build_film_index(source)
            chunks = plan_chunks(index, chunk_seconds, self.options)
            if len(chunks) > 1:
                return Planned(index, chunks)
        result = colorize(source, tmp, self.options.with_(overwrite=True), engine=self.engine)
        return Done(tmp, result.frames, time.perf_counter() - started)

    def _guarded(self, item: Item, work) -> Outcome:  # type: ignore[no-untyped-def]
        collect = _Collect()
        root = logging.getLogger()
        root.addHandler(collect)
        try:
            outcome = work()
        except VidcolorError as exc:
            outcome = Failed(one_line(str(exc)))
        except MemoryError:
            outcome = Failed(f"{one_line(item.label)}: out of memory")
        except Exception as exc:  # a bug on one file must not end a thousand-file job
            outcome = Failed(
                f"{one_line(item.label)}: internal error: {type(exc).__name__}: "
                f"{one_line(str(exc))}"
            )
        finally:
            root.removeHandler(collect)
        outcome.warnings = collect.lines
        return outcome


def _extract(item: Item, tmp: Path) -> Path:
    """An archive member as a file of its own beside the temporary output."""
    suffix = Path(item.member or "").suffix
    path = tmp.with_name(f"{tmp.stem}-member{suffix}")
    try:
        data = item.read_member()
    except (OSError, ValueError, EOFError) as exc:
        raise VidcolorError(f"{one_line(item.label)}: cannot read from archive ({exc})") from exc
    path.write_bytes(data)
    return path


def _pin(cores: list[int]) -> None:
    """Pin every thread of this process (Linux pins threads, and Ray's worker has several
    before this runs); threads started later inherit it from the one that starts them."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except OSError:
            continue  # a thread that has just ended
    os.sched_setaffinity(0, cores)


def _limit_threads(threads: int | None) -> None:
    """A worker of N threads uses N cores: every library's own thread pool is sized to it."""
    if threads is None:
        return
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:  # only if the engine uses it: never imported just for this
        import torch

        torch.set_num_threads(threads)
