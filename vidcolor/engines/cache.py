"""The on-disk cache of exported and compiled engines, so a film never waits for an export twice.

Each entry is a file named by a key that changes whenever anything it was built from changes
(the weights' bytes, the exporter, the precision, the opset, and for TensorRT the library
version and the GPU), plus a JSON sidecar that says what it holds for ``vidcolor engine list``.
Entries are written under a temporary name and linked into place, so two runs exporting the
same model at once both end with one whole file, and a killed export leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcolor.atomic import atomic_output
from vidcolor.errors import VidcolorError, one_line

CACHE_ENV = "VIDCOLOR_CACHE_DIR"
# Bump when the export recipe changes in a way the other key parts do not show.
EXPORT_FORMAT = 1


def cache_dir() -> Path:
    """``$VIDCOLOR_CACHE_DIR``, else ``$XDG_CACHE_HOME/vidcolor``, else ``~/.cache/vidcolor``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vidcolor"


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (hex): what identifies a model, whatever its name."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def entry(kind: str, stem: str, parts: Mapping[str, Any], suffix: str) -> CacheEntry:
    """Where the entry for ``parts`` lives (it may not exist yet)."""
    info = {"kind": kind, "format": EXPORT_FORMAT, **parts}
    name = f"{stem}-{entry_key(info)}{suffix}"
    return CacheEntry(cache_dir() / kind / name, info)


def prepare_folder(kind: str) -> Path:
    folder = cache_dir() / kind
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VidcolorError(
            f"cannot create the engine cache {one_line(str(folder))} ({exc.strerror}); "
            f"set {CACHE_ENV} to a writable folder"
        ) from None
    return folder


@contextmanager
def writing(item: CacheEntry, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary path to build the entry in; publish it (and its sidecar) on success.

    Another run may publish the same entry meanwhile: that one is kept, as it holds the same.
    ``replace`` is for files that grow (TensorRT's timing cache): the newest wins.
    """
    prepare_folder(item.path.parent.name)
    try:
        with atomic_output(item.path, overwrite=replace) as tmp:
            yield tmp
    except VidcolorError:
        if not item.path.is_file():
            raise
    with atomic_output(item.sidecar, overwrite=True) as tmp:
        tmp.write_text(json.dumps(item.info, indent=1, sort_keys=True, default=str))


def list_entries() -> list[CacheEntry]:
    """Every complete entry (file and sidecar) in the cache, sorted by path."""
    found = []
    root = cache_dir()
    if not root.is_dir():
        return []
    for sidecar in sorted(root.glob("*/*.json")):
        path = sidecar.with_name(sidecar.name[: -len(".json")])
        if not path.is_file():
            continue
        try:
            info = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        found.append(CacheEntry(path, info if isinstance(info, dict) else {}))
    return found


def clear_entries() -> tuple[int, int]:
    """Delete every entry, sidecar and leftover temporary file; returns (files, bytes)."""
    root = cache_dir()
    count = size = 0
    if not root.is_dir():
        return 0, 0
    for path in sorted(root.glob("*/*")):
        if path.is_file() and not path.is_symlink():
            size += path.stat().st_size
            path.unlink()
            count += 1
    return count, size
