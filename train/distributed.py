"""Data-parallel training through Ray Train: ``vidcolor train CONFIG --workers N``.

The same recipe and the same loop as one process (``fit.train``); Ray's ``TorchTrainer`` starts
N workers (one per GPU, or CPU processes) and joins them in a torch process group. Each worker
builds the same data stream and takes its own slice of every global batch (``StepBatches``:
``optim.batch_size`` is split evenly, so a recipe means the same batch whatever N is), the
generator and discriminator are wrapped in DDP so gradients are averaged, and rank 0 alone
validates, logs and checkpoints. A cluster started with ``ray start`` is used when
``RAY_ADDRESS`` names it (the run folder must then lie on storage every node sees); otherwise
a local Ray starts for the run.

Everything a user can get wrong (recipe, data, a resume that does not fit) is checked here,
before Ray starts, so it still fails as one line. Differences from one process: batch norm
sees each worker's slice of the batch, and every worker keeps its own copy of the decoded
photos in memory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import torch

from vidcolor import signals
from vidcolor.errors import VidcolorError, one_line
from vidcolor.models.weights import read_metadata
from vidcolor.stderr import RAY_TEARDOWN_LOG, shutdown_ray_quietly

from .checkpoint import load_latest
from .data import EvalSource, StepBatches, find_source_files
from .fit import (
    Dist,
    RunFolder,
    TrainResult,
    _check_resumable,
    _prepare_run_folder,
    build_components,
    train,
)
from .recipe import Recipe

RAY_STORAGE = ".ray"  # Ray Train's run records, inside the run folder while it runs
STOP_GRACE_SECONDS = 300.0  # after a signal, for the workers to finish a step and checkpoint
GCS_PORT_VARIABLE = "RAY_GCS_SERVER_PORT"  # the port a local Ray's GCS listens on


def absolute(recipe: Recipe) -> Recipe:
    """The recipe with absolute data and init paths: Ray's workers need not share our cwd."""
    data = dataclasses.replace(
        recipe.data,
        sources=[dataclasses.replace(s, path=s.path.absolute()) for s in recipe.data.sources],
    )
    val = dataclasses.replace(
        recipe.val, sets=[dataclasses.replace(s, path=s.path.absolute()) for s in recipe.val.sets]
    )
    init = None if recipe.init is None else recipe.init.absolute()
    return dataclasses.replace(recipe, data=data, val=val, init=init)


def _uses_gpu(recipe: Recipe) -> bool:
    if recipe.device.startswith("cuda"):
        return True
    return recipe.device == "auto" and torch.cuda.is_available()


def _worker_loop(config: dict[str, Any]) -> None:
    """What each Ray worker runs: ``fit.train`` as rank r of N, then a report of the result."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    device = ray.train.torch.get_device() if config["gpu"] else torch.device("cpu")
    rank, world = context.get_world_rank(), context.get_world_size()
    dist = Dist(rank, world, str(device), stop_flag=config["stop_flag"])
    result = train(
        config["recipe"],
        Path(config["run"]),
        resume=config["resume"],
        overwrite=config["overwrite"],
        show_bar=False,
        dist=dist,
    )
    ray.train.report({"step": result.step, "finished": result.finished})  # (every rank)


class StopFlag:
    """A Ray actor the driver sets on a signal and rank 0 reads after every step: the
    workers stop together at the end of a step and checkpoint it, as one process does."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def request(self, signum: int) -> None:
        self.signum = self.signum or signum

    def requested(self) -> bool:
        return self.signum is not None


def _fit_answering_signals(trainer: Any, ray: Any, stop_flag: Any, teardown_log: Path) -> None:
    """trainer.fit() in a thread: the main thread, blocked inside ray.get, would never run a
    signal handler. On a signal the workers are asked to stop after their step and to
    checkpoint it, then ``Interrupted`` goes on to the command's one line. Workers that do not
    stop within ``STOP_GRACE_SECONDS`` (a step, a validation and a checkpoint) are ended; the
    run then keeps its last periodic checkpoint."""
    outcome: list[BaseException] = []
    # Waited on, not the thread: a signal inside Thread.join makes Python 3.11 and 3.12 take
    # the thread for finished (CPython gh-90882).
    done = threading.Event()

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # handed to the main thread
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=fit, name="ray-train-fit", daemon=True).start()
    try:
        while not done.wait(0.5):
            pass
    except signals.Interrupted as interrupted:
        print(
            f"{interrupted.name}: stopping the workers after this step to checkpoint",
            file=sys.stderr,
            flush=True,
        )
        try:
            ray.get(stop_flag.request.remote(interrupted.signum), timeout=30)
        except Exception:  # Ray itself is failing: nobody will stop more cleanly
            pass
        else:
            done.wait(STOP_GRACE_SECONDS)
        # ends workers still running (the fit thread then fails, unheard)
        shutdown_ray_quietly(ray, teardown_log)
        raise
    if outcome:
        raise outcome[0]


def _start_local_ray(ray: Any) -> None:
    """A local Ray whose own processes are told its address (RAY_ADDRESS). Ray Train's
    placement-group cleaner looks the cluster up with no address; with a second Ray on the
    machine (a user's ``ray start``, another job) it cannot tell which is ours, and its thread
    dies printing a traceback into the run's output."""
    import socket

    with socket.socket() as probe:  # a free port for the GCS, so the address is known first
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    address = f"{ray.util.get_node_ip_address()}:{port}"
    before = os.environ.get(GCS_PORT_VARIABLE)
    os.environ[GCS_PORT_VARIABLE] = str(port)
    try:
        ray.init(
            address="local",
            include_dashboard=False,
            logging_level=logging.ERROR,  # its start-up chatter is not the run's output
            runtime_env={"env_vars": {"RAY_ADDRESS": address}},
        )
    finally:
        if before is None:
            del os.environ[GCS_PORT_VARIABLE]
        else:
            os.environ[GCS_PORT_VARIABLE] = before


def _worker_error(exc: Exception) -> str:
    """What failed, as the worker said it. Ray Train's ``WorkerGroupError`` keeps each rank's
    own exception; anything else (the controller failing) is summed up by its last line."""
    failures = getattr(exc, "worker_failures", None)
    if failures:
        first = failures[min(failures)]
        ours = isinstance(first, VidcolorError)
        return one_line(str(first) if ours else f"{type(first).__name__}: {first}")
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return one_line(lines[-1])


def train_with_ray(
    recipe: Recipe,
    run_dir: Path,
    workers: int,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Run ``recipe`` on ``workers`` Ray Train workers; returns what rank 0 reported."""
    try:
        import ray
        from ray.train import FailureConfig, LoggingConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError as exc:
        raise VidcolorError("--workers needs Ray Train: pip install 'ray[train]'") from exc
    recipe = absolute(recipe)
    run_dir = Path(run_dir).absolute()
    # The checks train() makes first, made here so that a mistake is one line, not a Ray trace.
    StepBatches(recipe.optim.batch_size, 0, 0, rank=0, world=workers)
    build_components(recipe)
    for spec in recipe.val.sets:
        EvalSource(spec.path, spec.held_out)
    for source in recipe.data.sources:
        find_source_files(source.path)
    if resume:
        path, state = load_latest(run_dir / "checkpoints")
        _check_resumable(recipe, state, path)
    address = os.environ.get("RAY_ADDRESS") or "local"  # never a stale cluster by accident
    gpu = _uses_gpu(recipe)
    cpus = os.cpu_count() or 1
    if address == "local" and not gpu and workers * (recipe.threads or 1) > cpus:
        raise VidcolorError(
            f"--workers {workers} with {recipe.threads or 1} thread(s) each needs "
            f"{workers * (recipe.threads or 1)} CPUs, and this machine has {cpus}; Ray would "
            "wait for them forever (a cluster: set RAY_ADDRESS)"
        )
    _prepare_run_folder(RunFolder(run_dir), resume, overwrite)
    ours = not ray.is_initialized()  # a caller's own Ray session is left to the caller
    with signals.kept_through():  # ray.init puts in handlers of its own
        if ours and address == "local":
            _start_local_ray(ray)
        elif ours:
            ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR)
    stop_flag = ray.remote(num_cpus=0)(StopFlag).remote()
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "stop_flag": stop_flag,
            "recipe": recipe,
            "run": str(run_dir),
            "resume": resume,
            "overwrite": overwrite,
            "gpu": gpu,
        },
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=gpu,
            resources_per_worker={"CPU": recipe.threads or 1, **({"GPU": 1} if gpu else {})},
        ),
        run_config=RunConfig(
            name=recipe.name,
            storage_path=str(run_dir / RAY_STORAGE),
            failure_config=FailureConfig(max_failures=0),
            # Ray Train's own console logs: a worker's error with its whole traceback, logged
            # again by the controller, and start-up chatter. The driver says what failed in one
            # line; they stay in Ray's session logs. Rank 0 prints its progress, unaffected.
            logging_config=LoggingConfig(log_level="CRITICAL"),
        ),
    )
    try:
        _fit_answering_signals(trainer, ray, stop_flag, run_dir / RAY_TEARDOWN_LOG)
    except Exception as exc:  # Ray wraps a worker's error in its own types
        raise VidcolorError(f"training failed on a Ray worker: {_worker_error(exc)}") from exc
    finally:
        if ours:  # also stops the streaming of the workers' output: our line comes last
            shutdown_ray_quietly(ray, run_dir / RAY_TEARDOWN_LOG)
        shutil.rmtree(run_dir / RAY_STORAGE, ignore_errors=True)  # Ray Train's own records
    weights = run_dir / "generator.safetensors"
    info = read_metadata(weights)  # what rank 0 wrote last
    return TrainResult(weights, int(info["step"]), info.get("complete") == "yes")
