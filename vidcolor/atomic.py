"""Atomic outputs: write under a hidden temporary name in the target folder, rename when done.

A crash, a kill or a bad input never leaves a partial file. Without ``overwrite`` the final
step never replaces anything, not even a file that appeared while we were writing (another
run, another input of the same job): it links the finished file into place, which fails if
the name is taken, instead of renaming over it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vidcolor.errors import VidcolorError

_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def check_writable_target(path: Path, overwrite: bool) -> None:
    """Refuse early (before any work) what the final rename would refuse anyway."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise VidcolorError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise VidcolorError(f"{path}: output folder {folder} is not writable")
    if path.is_dir():
        raise VidcolorError(f"{path}: is a folder, not a file")
    if os.path.lexists(path):
        if not overwrite:
            raise VidcolorError(f"{path}: already exists (use --overwrite to replace it)")
        _check_replaceable(path)


def check_output_path(source: Path, output: Path, overwrite: bool) -> None:
    """``check_writable_target``, and never the input itself (not even with --overwrite)."""
    check_writable_target(output, overwrite)
    if output.exists() and source.exists() and os.path.samefile(source, output):
        raise VidcolorError(f"{output}: output would overwrite the input")


def _check_replaceable(path: Path) -> None:
    """--overwrite replaces files, never a FIFO, a device or a socket that bears the name."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return  # gone meanwhile, or a dangling link: nothing to protect
    if not stat.S_ISREG(mode):
        raise VidcolorError(f"{path}: is not a regular file; --overwrite only replaces files")


@contextmanager
def atomic_output(path: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path with the same extension; move it to ``path`` on success."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=".vidcolor-", suffix=f".part{path.suffix}", dir=folder
        )
    except OSError as exc:
        raise VidcolorError(f"{path}: cannot write in {folder} ({exc.strerror})") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        publish(tmp, path, overwrite)
    finally:
        if tmp.exists():
            tmp.unlink()


def publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move a finished temporary file onto its final name."""
    try:
        if overwrite:
            _check_replaceable(path)
            os.replace(tmp, path)
        else:
            _move_without_replacing(tmp, path)
    except FileExistsError:
        raise VidcolorError(
            f"{path}: appeared while vidcolor was writing it; left untouched "
            "(use --overwrite to replace it)"
        ) from None
    except OSError as exc:
        raise VidcolorError(f"{path}: cannot write ({exc.strerror})") from exc


def _move_without_replacing(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)  # fails with EEXIST when the name is taken: nothing is replaced
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
        _rename_noreplace(tmp, path)  # file systems without hard links (FAT, some mounts)
    else:
        tmp.unlink()


def _rename_noreplace(tmp: Path, path: Path) -> None:
    renameat2 = _libc_renameat2()
    if renameat2 is not None:
        result = renameat2(
            _AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(path), _RENAME_NOREPLACE
        )
        if result == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(code, os.strerror(code), str(path))
    if os.path.lexists(path):  # last resort: a check, then a rename (a tiny race remains)
        raise FileExistsError(errno.EEXIST, "File exists", str(path))
    os.rename(tmp, path)


def _libc_renameat2():  # type: ignore[no-untyped-def]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    return getattr(libc, "renameat2", None)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
