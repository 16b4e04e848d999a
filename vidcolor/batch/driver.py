"""The batch driver: Ray actors colourise an archive; the driver plans, publishes, reports.

``run_batch`` expands the inputs into items, skips what the ledger in OUTDIR says is done,
starts a pool of ``ColorizeWorker`` actors (one per GPU, or CPU actors of a stated thread
count), and feeds them rows: a still or a short film whole; a long film first planned (its
index, built once), then its chunks on every actor at once, then joined by packet copy. Each
finished file is published and recorded by the driver alone (temporary name, then rename), so
a kill at any moment loses at most the rows in flight, and re-running finishes the job.

Failure isolation: a bad file comes back as a failed row; a worker that dies (a crash in a
decoder, the out-of-memory killer) is restarted by Ray and its row retried ``MAX_TASK_RETRIES``
times, then recorded as failed. The exit status counts failures; the JSON report names them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from vidcolor import signals
from vidcolor.batch.chunks import Chunk, chunk_suffix
from vidcolor.batch.inputs import Item, expand_inputs
from vidcolor.batch.ledger import LEDGER, Ledger
from vidcolor.batch.worker import ColorizeWorker, Done, EngineChoice, Failed, Outcome, Planned
from vidcolor.errors import VidcolorError, one_line
from vidcolor.locks import exclusive
from vidcolor.options import RunOptions
from vidcolor.plan import resolved
from vidcolor.stderr import RAY_TEARDOWN_LOG, shutdown_ray_quietly

log = logging.getLogger(__name__)

STATE = LEDGER.parent  # OUTDIR/.vidcolor-batch: ledger, lock, chunks, temporary files
REPORT = "vidcolor-report.json"
# A row whose worker process dies is run again this many times (on a restarted worker).
MAX_TASK_RETRIES = 2
# One row per worker at a time: a worker that dies (and Ray retries what it held) takes only
# its own row down, never a row queued behind a file that crashes it. The driver hands the
# next row over within milliseconds of the last one's end.
ROWS_PER_WORKER = 1
DEFAULT_CHUNK_SECONDS = 60.0
# The object store holds rows and film indexes only (a 10-minute reel: about 120 kB).
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2


@dataclass
class BatchSettings:
    """How the job runs on Ray (what to colourise and how is ``RunOptions``)."""

    address: str | None = None  # None: RAY_ADDRESS, else a local Ray started for the job
    workers: int | None = None  # None: one per GPU, else one per ``threads`` CPUs
    threads: int | None = None  # per worker; None: 1 on CPU workers, FFmpeg's choice on GPU ones
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    gpus_per_worker: float = 1.0
    verify: bool = False  # check finished outputs' sha256 before skipping them
    local_gpus: int | None = None  # GPUs a local Ray declares (None: the ones it finds)
    runtime_env: dict[str, Any] | None = None  # for the Ray job (tests add hooks here)


@dataclass
class Report:
    outdir: str
    items: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0
    ray_start_seconds: float = 0.0  # ray.init alone
    startup_seconds: float = 0.0  # until every worker holds its engine
    workers: list[dict[str, str]] = field(default_factory=list)
    address: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        failed = f", {len(self.failed)} failed" if self.failed else ""
        return (
            f"{self.done} done, {self.skipped} already done{failed} of {self.items} items "
            f"-> {self.outdir}: {self.frames} frames in {self.seconds:.1f} s "
            f"({self.fps:.1f} fps) on {len(self.workers)} workers"
        )

    def write(self, outdir: Path) -> Path:
        data = dataclasses.asdict(self)
        data["fps"] = round(self.fps, 2)
        path = outdir / REPORT
        tmp = outdir / STATE / f"{REPORT}.tmp"
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=True) + "\n")
        os.replace(tmp, path)
        return path


# --- rows ----------------------------------------------------------------------------------


@dataclass
class _Film:
    """A long film in flight: its index in the object store and its chunks' state."""

    item: Item
    index_ref: Any
    chunks: list[Chunk]
    parts: dict[str, Path]
    left: set[str]
    failed: bool = False


@dataclass
class _Row:
    kind: str  # "start", "chunk" or "join"
    item: Item
    chunk: Chunk | None = None


# --- the job -------------------------------------------------------------------------------


def run_batch(
    inputs: Sequence[str],
    outdir: Path,
    options: RunOptions,
    choice: EngineChoice,
    settings: BatchSettings,
    progress: Callable[[Report, int], None] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> Report:
    """Colourise every input into ``outdir``; returns the report (also written there)."""
    outdir = Path(outdir)
    _check_outdir_apart(inputs, outdir)
    _make_outdir(outdir)
    say = on_message or (lambda line: log.warning("%s", line))
    with _exclusive(outdir):
        expansion = expand_inputs(list(inputs), outdir)
        report = Report(outdir=str(outdir), items=len(expansion.items) + len(expansion.failures))
        for source, line in expansion.failed():
            report.failed.append({"input": source, "error": one_line(line)})
            say(f"error: {one_line(line)}")
        ledger = Ledger(outdir, _options_key(options, choice))
        _clear_temporary(outdir)
        todo = []
        for item in expansion.items:
            item = _with_output_suffix(item, options)
            if ledger.is_done(item, verify=settings.verify):
                report.skipped += 1
                continue
            error = _output_problem(item, outdir, ledger, options.overwrite)
            if error is None:
                todo.append(item)
                continue
            report.failed.append({"input": item.label, "error": one_line(error)})
            ledger.fail(item, error)
            say(f"error: {one_line(error)}")
        started = time.perf_counter()
        if todo:
            _Job(outdir, options, choice, settings, ledger, report, say, progress).run(todo)
        report.seconds = round(time.perf_counter() - started, 3)
        report.write(outdir)
        _clear_temporary(outdir)
    return report


def _output_problem(item: Item, outdir: Path, ledger: Ledger, overwrite: bool) -> str | None:
    """Why the item's output may not be written: it is the input, it is not a regular
    file, or it is someone's file (not one this job published) and there is no --overwrite."""
    final = outdir / item.output
    if not os.path.lexists(final):
        return None
    if item.member is None and _same_file(final, item.source):
        return f"{final}: output would overwrite the input"
    if not final.is_file() or final.is_symlink():
        return f"{final}: exists and is not a regular file; it is never replaced"
    if overwrite or ledger.published(item.output):
        return None
    return f"{final}: exists (use --overwrite to replace it)"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_outdir_apart(inputs: Sequence[str], outdir: Path) -> None:
    """OUTDIR may lie inside an input folder (it is then skipped) but not be one."""
    target = resolved(outdir)
    for text in inputs:
        path = Path(text)
        if path.is_dir() and resolved(path) == target:
            raise VidcolorError(f"{outdir}: is also an input folder; colourise into another folder")


class _Job:
    def __init__(
        self,
        outdir: Path,
        options: RunOptions,
        choice: EngineChoice,
        settings: BatchSettings,
        ledger: Ledger,
        report: Report,
        say: Callable[[str], None],
        progress: Callable[[Report, int], None] | None,
    ):
        self.outdir = outdir
        self.options = options
        self.choice = choice
        self.settings = settings
        self.ledger = ledger
        self.report = report
        self.say = say
        self.progress = progress
        self.films: dict[str, _Film] = {}
        self.rows: deque[_Row] = deque()
        self.in_flight: dict[Any, tuple[Any, _Row]] = {}
        self.load: dict[Any, int] = {}
        self.run_id = f"{os.getpid()}-{int(time.time() * 1000)}"
        self.finished = 0

    def run(self, todo: list[Item]) -> None:
        try:
            self._run(todo)
        except Exception:
            signum = signals.received()
            if signum is not None:  # Ray's C++ turned our Interrupted into an error of its own
                raise signals.Interrupted(signum) from None
            raise

    def _run(self, todo: list[Item]) -> None:
        started = time.perf_counter()
        teardown_log = self.outdir / STATE / RAY_TEARDOWN_LOG
        with _ray(self.settings, self.report, teardown_log) as ray:
            self.ray = ray
            with signals.kept_through():  # starting the workers puts Ray's handlers back
                actors = self._start_actors(ray)
            self.report.startup_seconds = round(time.perf_counter() - started, 3)
            self.load = {actor: 0 for actor in actors}
            self.rows.extend(_Row("start", item) for item in todo)
            self._tick()
            while self.rows or self.in_flight:
                self._submit()
                ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=1.0)
                for ref in ready:
                    actor, row = self.in_flight.pop(ref)
                    self.load[actor] -= 1
                    self._handle(row, self._result(ref, row))

    # --- actors -----------------------------------------------------------------------

    def _start_actors(self, ray: Any) -> list[Any]:
        settings = self.settings
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0) // settings.gpus_per_worker)
        cpus = int(resources.get("CPU", 1))
        threads = settings.threads
        if gpus:  # GPU workers: FFmpeg's own thread choice unless --threads says otherwise
            count = settings.workers or gpus
            placement: dict[str, Any] = {
                "num_gpus": settings.gpus_per_worker,
                "num_cpus": threads or 1,
            }
        else:
            threads = threads or 1
            count = settings.workers or max(1, cpus // threads)
            placement = {"num_cpus": threads}
        options = self.options
        if threads is not None:
            options = options.with_(
                threads=threads, encode=dataclasses.replace(options.encode, threads=threads)
            )
        remote = ray.remote(ColorizeWorker).options(
            max_restarts=-1, max_task_retries=MAX_TASK_RETRIES, **placement
        )
        local_cpu = not gpus and self.report.address == "local"
        cores = _cores_of_each(count, threads or 1) if local_cpu else []
        actors = [
            remote.remote(self.choice, options, threads, cores[k] if cores else None)
            for k in range(count)
        ]
        where = [actor.where.remote() for actor in actors]
        try:
            self.report.workers = ray.get(where)
        except ray.exceptions.RayError as exc:
            raise VidcolorError(f"the workers could not start: {_ray_reason(exc)}") from exc
        return actors

    def _submit(self) -> None:
        while self.rows:
            actor = min(self.load, key=self.load.__getitem__)
            if self.load[actor] >= ROWS_PER_WORKER:
                return
            row = self.rows.popleft()
            ref = self._call(actor, row)
            if ref is None:
                continue
            self.in_flight[ref] = (actor, row)
            self.load[actor] += 1

    def _call(self, actor: Any, row: _Row) -> Any:
        item = row.item
        if row.kind == "start":
            tmp = self._tmp(item, "", item.output.suffix)
            return actor.start.remote(item, tmp, self.settings.chunk_seconds)
        film = self.films[item.label]
        if film.failed:
            return None
        if row.kind == "chunk":
            assert row.chunk is not None
            tmp = self._tmp(item, row.chunk.name, film.parts[row.chunk.name].suffix)
            return actor.chunk.remote(item, film.index_ref, row.chunk, tmp)
        parts = [film.parts[c.name] for c in film.chunks]
        return actor.join.remote(
            item, film.index_ref, parts, self._tmp(item, "", item.output.suffix)
        )

    def _result(self, ref: Any, row: _Row) -> Outcome:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            return Failed(
                f"{one_line(row.item.label)}: its worker died {MAX_TASK_RETRIES + 1} times on "
                f"it ({_ray_reason(exc)})"
            )

    # --- results ----------------------------------------------------------------------

    def _handle(self, row: _Row, outcome: Outcome) -> None:
        for line in outcome.warnings:
            self.say(f"warning: {line}")
        item = row.item
        if isinstance(outcome, Failed):
            self._fail(item, outcome.error)
        elif isinstance(outcome, Planned):
            self._plan(item, outcome)
        elif row.kind == "chunk":
            assert row.chunk is not None
            self._chunk_done(item, row.chunk, outcome)
        elif self._publish(item, outcome, self._final(item)):
            self.films.pop(item.label, None)
            _remove(self._chunk_folder(item))
            self.report.done += 1
            self.report.frames += outcome.frames if row.kind == "start" else 0
            self._item_finished()

    def _publish(self, item: Item, outcome: Done, final: Path, part: str = "") -> bool:
        """Rename the worker's file onto its name and record it; False if that failed."""
        try:
            self.ledger.commit(item, outcome.tmp, final, part)
        except OSError as exc:
            self._fail(item, f"{one_line(str(final))}: cannot publish ({exc.strerror or exc})")
            return False
        return True

    def _plan(self, item: Item, planned: Planned) -> None:
        folder = self._chunk_folder(item)
        folder.mkdir(parents=True, exist_ok=True)
        suffix = chunk_suffix(self.options.encode.codec)
        parts = {c.name: folder / f"{c.name}{suffix}" for c in planned.chunks}
        verify = self.settings.verify
        left = {
            c.name for c in planned.chunks if not self.ledger.is_done(item, _part(c), verify=verify)
        }
        film = _Film(item, self.ray.put(planned.index), planned.chunks, parts, left)
        self.films[item.label] = film
        # A film's chunks go first, so one film keeps every worker busy; the longest first,
        # so that workers finishing the short ones last end together.
        if left:
            for chunk in sorted(planned.chunks, key=lambda c: c.frames):
                if chunk.name in left:
                    self.rows.appendleft(_Row("chunk", item, chunk))
        else:
            self.rows.appendleft(_Row("join", item))

    def _chunk_done(self, item: Item, chunk: Chunk, outcome: Done) -> None:
        film = self.films.get(item.label)
        if film is None or film.failed:
            return
        if not self._publish(item, outcome, film.parts[chunk.name], _part(chunk)):
            return
        self.report.frames += outcome.frames
        film.left.discard(chunk.name)
        if not film.left:
            self.rows.appendleft(_Row("join", item))
        self._tick()

    def _fail(self, item: Item, error: str) -> None:
        film = self.films.get(item.label)
        if film is not None:
            if film.failed:
                return  # another chunk of the same film already failed it
            film.failed = True
        self.ledger.fail(item, error)
        self.report.failed.append({"input": item.label, "error": one_line(error)})
        self.say(f"error: {one_line(error)}")
        self._item_finished()

    def _item_finished(self) -> None:
        self.finished += 1
        self._tick()

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress(self.report, self.finished)

    # --- paths ------------------------------------------------------------------------

    def _final(self, item: Item) -> Path:
        final = self.outdir / item.output
        final.parent.mkdir(parents=True, exist_ok=True)
        return final

    def _chunk_folder(self, item: Item) -> Path:
        return self.outdir / STATE / "chunks" / self.ledger.key(item)

    def _tmp(self, item: Item, part: str, suffix: str) -> Path:
        """Unique per run: a worker orphaned by a killed driver never writes a name in use."""
        name = hashlib.sha256(f"{self.ledger.key(item, part)}-{self.run_id}".encode()).hexdigest()
        return self.outdir / STATE / "tmp" / f"{name[:24]}{suffix}"


def _cores_of_each(workers: int, threads: int) -> list[list[int]]:
    """Cores of this machine for each local CPU worker, when there are enough for all: the
    pipeline's stage threads of one worker then never take cycles from another's."""
    usable = sorted(os.sched_getaffinity(0))
    if workers * threads > len(usable):
        return []
    return [usable[k * threads : (k + 1) * threads] for k in range(workers)]


def _part(chunk: Chunk) -> str:
    return f"chunk {chunk.name}"


# --- set-up --------------------------------------------------------------------------------


@contextlib.contextmanager
def _ray(settings: BatchSettings, report: Report, teardown_log: Path) -> Iterator[Any]:
    """A local Ray for this job (never a stale cluster by accident), or the one named."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = settings.address or os.environ.get("RAY_ADDRESS") or "local"
    if address != "local" and "RAY_AUTH_MODE" not in os.environ and _ray_token_available():
        # As Ray's own commands do: a cluster started with token authentication (Ray's
        # default) refuses a driver that does not say it has the token.
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        import ray
    except ImportError as exc:
        raise VidcolorError(
            f"vidcolor batch runs on Ray, which is not installed ({exc}): "
            "pip install 'vidcolor[ray]'"
        ) from None

    # Ray's default (token authentication for a local cluster) stays; its notice does not.
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)

    kwargs: dict[str, Any] = {
        "address": address,
        "include_dashboard": False,
        "logging_level": logging.ERROR,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if settings.runtime_env:
        kwargs["runtime_env"] = settings.runtime_env
    if address == "local":
        cpus = os.cpu_count() or 1
        if settings.workers:
            cpus = max(cpus, settings.workers * (settings.threads or 1))
        kwargs.update(num_cpus=cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
        if settings.local_gpus is not None:
            kwargs["num_gpus"] = settings.local_gpus
    _check_reachable(address)
    started = time.perf_counter()
    with signals.kept_through():
        try:
            with _printable_entrypoint(ray):
                ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise VidcolorError(f"cannot start or reach Ray at {address} ({exc})") from exc
        try:
            # ray.init puts in a Python SIGTERM handler, and Ray's core worker a C++ one
            # (which dumps a stack trace) once it is fully up: an object going through it
            # brings that about here, before ours go back in.
            ray.get(ray.put(None))
        except BaseException:
            ray.shutdown()
            raise
    report.ray_start_seconds = round(time.perf_counter() - started, 3)
    report.address = address
    try:
        yield ray
    finally:
        shutdown_ray_quietly(ray, teardown_log)


def _check_reachable(address: str) -> None:
    """A cluster that is not there is one line in seconds (ray.init would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if address in ("local", "auto") or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=10).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise VidcolorError(f"cannot reach Ray at {one_line(address)} ({reason})") from None


@contextlib.contextmanager
def _printable_entrypoint(ray: Any) -> Iterator[None]:
    """Ray records the driver's command line (read from /proc) as UTF-8: a file name that
    is not UTF-8 would stop ray.init, so Ray is handed it escaped, as our messages show it."""
    utils = getattr(getattr(ray, "_private", None), "utils", None)
    original = getattr(utils, "get_entrypoint_name", None)
    if original is None:
        yield
        return
    utils.get_entrypoint_name = lambda: one_line(original())
    try:
        yield
    finally:
        utils.get_entrypoint_name = original


def _ray_token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return Path(path).is_file()


def _options_key(options: RunOptions, choice: EngineChoice) -> str:
    """What makes two runs' outputs the same: every option and the model's bytes."""
    from vidcolor.engines import check_weights
    from vidcolor.hashing import file_sha256

    weights = check_weights(choice.weights)
    settings = dataclasses.asdict(options)
    settings.pop("overwrite")
    settings.pop("threads")
    settings["encode"].pop("threads")
    text = json.dumps(
        [settings, file_sha256(weights), choice.device, choice.backend, choice.precision],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _with_output_suffix(item: Item, options: RunOptions) -> Item:
    """A film whose container cannot hold the codec (.webm into H.264) is written as .mkv."""
    from vidcolor.plan import output_for_codec

    output = output_for_codec(Path(item.output), options.encode.codec)
    return dataclasses.replace(item, output=PurePosixPath(*output.parts))


def _make_outdir(outdir: Path) -> None:
    try:
        (outdir / STATE).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VidcolorError(f"{outdir}: cannot create output folder ({exc.strerror})") from exc


def _exclusive(outdir: Path) -> contextlib.AbstractContextManager[None]:
    """One job per OUTDIR: a second one at the same time would publish the same files."""
    return exclusive(
        outdir / STATE / "lock",
        f"{outdir}: another vidcolor batch job (process {{pid}}) is writing here; wait for it "
        "to end",
    )


def _clear_temporary(outdir: Path) -> None:
    """Temporary files of killed runs (the ledger has already kept what they finished)."""
    folder = outdir / STATE / "tmp"
    if folder.exists():
        _remove(folder)
    folder.mkdir(parents=True, exist_ok=True)


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _ray_reason(exc: BaseException) -> str:
    """Ray's errors run to pages (tracebacks, hints): their first line says what happened."""
    text = str(exc).strip().splitlines()
    return one_line(text[0] if text else type(exc).__name__)[:300]
