"""Turn a command line's inputs into (input, output) pairs, mirroring folder trees.

Problems found while planning (an unreadable subfolder) do not stop the rest: they come back
as failures to count and report. Clashes (two inputs that would write the same output) stop
the job before it starts, since one would silently replace the other.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vidcolor.errors import VidcolorError
from vidcolor.media.probe import IMAGE_SUFFIXES, VIDEO_SUFFIXES, check_readable

MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
log = logging.getLogger(__name__)


@dataclass
class Plan:
    jobs: list[tuple[Path, Path]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # one line each
    many: bool = False  # OUTPUT is a folder


def plan_jobs(inputs: Sequence[Path], output: Path, codec: str | None = None) -> Plan:
    """Expand inputs; a single file maps to OUTPUT itself, anything else into folder OUTPUT.

    In a folder job each output keeps its input's name; a film whose container cannot hold
    ``codec`` (an ``.webm`` source into H.264) is written as ``.mkv`` instead, with a warning.
    """
    if not inputs:
        raise VidcolorError("no input given")
    if len(inputs) == 1:
        check_readable(inputs[0])
        if not inputs[0].is_dir():
            return Plan(jobs=[(inputs[0], output)])
    plan = Plan(many=True)
    if output.exists() and not output.is_dir():
        raise VidcolorError(f"{output}: must be a folder when colourising several inputs")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise VidcolorError(f"{output}: parent folder {parent} does not exist")
    for path in inputs:
        try:
            check_readable(path)
        except VidcolorError as exc:
            plan.failures.append(str(exc))
            continue
        if path.is_dir():
            failed_before = len(plan.failures)
            found = list(walk_folder(path, output, plan.failures))
            if not found and len(plan.failures) == failed_before:
                plan.failures.append(f"{path}: folder holds no images or videos")
            plan.jobs.extend(found)
        else:
            plan.jobs.append((path, output / path.name))
    if codec is not None:
        plan.jobs = [(source, output_for_codec(target, codec)) for source, target in plan.jobs]
    _refuse_clashes(plan.jobs)
    return plan


def output_for_codec(target: Path, codec: str) -> Path:
    """``target``, or ``.mkv`` in its place when its container cannot hold ``codec`` video."""
    from vidcolor.media.encode import container_holds

    suffix = target.suffix.lower()
    if suffix not in VIDEO_SUFFIXES or container_holds(suffix, codec):
        return target
    fixed = target.with_suffix(".mkv")
    log.warning("%s: a %s file cannot hold %s video: writing %s", target, suffix, codec, fixed)
    return fixed


def walk_folder(source: Path, output: Path, failures: list[str]) -> list[tuple[Path, Path]]:
    """Media files under ``source`` (hidden ones and the output folder itself skipped)."""
    skip = resolved(output)
    pairs: list[tuple[Path, Path]] = []

    def unreadable(error: OSError) -> None:
        failures.append(f"{error.filename}: cannot read folder ({error.strerror})")

    for root, dirs, files in os.walk(source, onerror=unreadable):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and resolved(here / d) != skip)
        for name in sorted(files):
            path = here / name
            if name.startswith(".") or path.suffix.lower() not in MEDIA_SUFFIXES:
                continue
            pairs.append((path, output / path.relative_to(source)))
    return pairs


def _refuse_clashes(jobs: list[tuple[Path, Path]]) -> None:
    seen: dict[Path, Path] = {}
    for source, target in jobs:
        key = Path(os.path.normpath(target))
        if key in seen:
            raise VidcolorError(
                f"{target}: two inputs would write it ({seen[key]} and {source}); "
                "colourise them into different folders"
            )
        seen[key] = source


def resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()
