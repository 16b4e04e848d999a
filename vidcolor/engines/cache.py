"""The on-disk cache of exported and compiled engines, so a film never waits for an export twice.

Each entry is a file named by a key that changes whenever anything it was built from changes
(the weights' bytes, the exporter, the precision, the opset, and for TensorRT the library
version and the GPU), plus a JSON sidecar that records the key and the file's sha256. An entry
is used only when both agree, so a truncated, replaced or half-written file is rebuilt, never
loaded. Builders of the same entry take turns (a lock file per entry): two runs started at
once export once. A cache folder that cannot be used (not writable, not a folder, a name ONNX
Runtime cannot open) is replaced, with a warning, by a temporary one for this run.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcolor.errors import VidcolorError, one_line
from vidcolor.hashing import file_sha256 as file_digest  # what identifies a model

log = logging.getLogger(__name__)

CACHE_ENV = "VIDCOLOR_CACHE_DIR"
# Bump when the export recipe changes in a way the other key parts do not show.
EXPORT_FORMAT = 1
KINDS = ("onnx", "tensorrt")
# What vidcolor writes in a kind's folder, and so all that ``clear_entries`` may delete.
_OURS = re.compile(
    r"(.+-[0-9a-f]{20}\.(onnx|engine)(\.json|\.lock)?|timing-[0-9a-f]{20}\.cache"
    r"|\.vidcolor-.*\.part.*)"
)
_fallback: Path | None = None


def cache_dir() -> Path:
    """``$VIDCOLOR_CACHE_DIR``, else ``$XDG_CACHE_HOME/vidcolor``, else ``~/.cache/vidcolor``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vidcolor"


def usable_dir(kind: str) -> Path:
    """The kind's folder in the cache, made if need be, or a temporary one for this run."""
    global _fallback
    folder = cache_dir() / kind
    problem = _unusable(folder)
    if problem is None:
        return folder
    if _fallback is None:
        _fallback = Path(tempfile.mkdtemp(prefix="vidcolor-cache-"))
        atexit.register(shutil.rmtree, _fallback, ignore_errors=True)
        log.warning(
            "engine cache %s %s: using a temporary one for this run (set %s to fix)",
            one_line(str(cache_dir())),
            problem,
            CACHE_ENV,
        )
    folder = _fallback / kind
    folder.mkdir(exist_ok=True)
    return folder


def _unusable(folder: Path) -> str | None:
    try:
        str(folder).encode("utf-8")
    except UnicodeEncodeError:
        return "has a name that is not UTF-8"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return "is not a folder"
    except OSError as exc:
        return f"cannot be created ({(exc.strerror or str(exc)).lower()})"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "is not writable"
    return None


def entry_key(parts: Mapping[str, Any]) -> str:
    """A short stable hash of everything an entry was built from."""
    text = json.dumps(dict(parts), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    info: dict[str, Any]

    @property
    def sidecar(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    @property
    def lock(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")


def entry(kind: str, parts: Mapping[str, Any], suffix: str) -> CacheEntry:
    """Where the entry for ``parts`` lives (it may not exist yet).

    Named by precision and key only: the same weights under another file name are the same
    entry (the sidecar keeps the name for ``vidcolor engine list``).
    """
    info = {"kind": kind, "format": EXPORT_FORMAT, **parts}
    key = entry_key({k: v for k, v in info.items() if k != "model_name"})
    label = re.sub(r"[^a-z0-9]", "", str(info.get("precision", kind)))[:8] or kind
    return CacheEntry(usable_dir(kind) / f"{label}-{key}{suffix}", {**info, "key": key})


def valid(item: CacheEntry) -> bool:
    """The entry's file is there, and its sidecar names this key and the file's sha256."""
    try:
        recorded = json.loads(item.sidecar.read_text())
        return (
            isinstance(recorded, dict)
            and recorded.get("key") == item.info["key"]
            and recorded.get("sha256") == file_digest(item.path)
        )
    except (OSError, ValueError):
        return False


def get_or_build(item: CacheEntry, build: Callable[[Path], None]) -> Path:
    """The entry's path, built first with ``build(temporary_path)`` unless a valid one exists."""
    if valid(item):
        return item.path
    try:
        with _locked(item.lock):
            if valid(item):  # another run built it while we waited
                return item.path
            fd, name = tempfile.mkstemp(
                prefix=".vidcolor-", suffix=f".part{item.path.suffix}", dir=item.path.parent
            )
            os.close(fd)
            tmp = Path(name)
            try:
                build(tmp)
                record = {**item.info, "sha256": file_digest(tmp)}
                _replace_text(item.sidecar, json.dumps(record, indent=1, sort_keys=True))
                os.replace(tmp, item.path)
            finally:
                tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise VidcolorError(
            f"cannot write the engine cache in {one_line(str(item.path.parent))} "
            f"({(exc.strerror or str(exc)).lower()}); set {CACHE_ENV} to another folder"
        ) from None
    return item.path


def replace_file(path: Path, data: bytes) -> None:
    """Write a file that is replaced as it grows (TensorRT's timing cache), atomically."""
    fd, name = tempfile.mkstemp(prefix=".vidcolor-", suffix=".part", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(name, path)


def _replace_text(path: Path, text: str) -> None:
    replace_file(path, text.encode())


@contextlib.contextmanager
def _locked(path: Path):  # noqa: ANN202
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def list_entries() -> list[CacheEntry]:
    """Every entry in the cache with a readable sidecar, sorted by path (validity unchecked)."""
    found = []
    for kind in KINDS:
        folder = cache_dir() / kind
        if folder.is_symlink() or not folder.is_dir():
            continue
        for sidecar in sorted(folder.glob("*.json")):
            path = sidecar.with_name(sidecar.name[: -len(".json")])
            if not _OURS.fullmatch(sidecar.name) or not path.is_file():
                continue
            try:
                info = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                continue
            found.append(CacheEntry(path, info if isinstance(info, dict) else {}))
    return found


def clear_entries() -> tuple[int, int]:
    """Delete what vidcolor wrote in the cache (nothing else); returns (files, bytes)."""
    count = size = 0
    for kind in KINDS:
        folder = cache_dir() / kind
        if folder.is_symlink() or not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not _OURS.fullmatch(path.name) or path.is_symlink() or not path.is_file():
                continue
            try:
                bytes_ = path.stat().st_size
                path.unlink()
            except OSError as exc:
                raise VidcolorError(
                    f"cannot delete {one_line(str(path))} ({(exc.strerror or str(exc)).lower()})"
                ) from None
            size += bytes_
            count += 1
    return count, size
