"""What a batch job works on: files, folders, globs, manifests and archives, as small items.

``vidcolor batch INPUT... -o OUTDIR`` takes any mix of these. Each becomes one or more
``Item`` rows (where the picture or film is, where its output goes under OUTDIR, and its size
and modification time for the resume ledger): rows travel to the workers, never pixels.

Where outputs go: a file goes to ``OUTDIR/name``; a folder's tree is mirrored into OUTDIR
(as ``vidcolor folder -o OUTDIR`` does); an archive of images becomes the folder
``OUTDIR/<archive name without suffix>/``; a manifest's paths are expanded as if given on the
command line (relative ones from the manifest's folder).

Safety: archive members with absolute names, ``..``, links or device entries are refused, and
so are archives whose members expand past ``MAX_RATIO`` times their compressed size or past
``MAX_MEMBER_BYTES`` (decompression bombs); symlinks are not followed out of an input's
folder; OUTDIR inside an input folder is not read as input; inputs are only ever read.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from vidcolor.errors import VidcolorError, one_line
from vidcolor.media.probe import IMAGE_SUFFIXES
from vidcolor.plan import MEDIA_SUFFIXES, walk_folder

MANIFEST_SUFFIXES = (".txt", ".csv", ".lst")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
# An archive member may expand to at most this many times its compressed size, and this much.
MAX_RATIO = 200
MAX_MEMBER_BYTES = 1 << 30
GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Item:
    """One picture or film: where it is, where its output goes under OUTDIR."""

    source: Path  # the file, or for an archive member the archive
    output: PurePosixPath  # relative to OUTDIR
    size: int
    mtime_ns: int
    member: str | None = None  # the member's name inside the archive

    @property
    def label(self) -> str:
        """How messages and the ledger name the item: ``path`` or ``archive:member``."""
        return str(self.source) if self.member is None else f"{self.source}:{self.member}"

    def read_member(self) -> bytes:
        """The member's bytes (archive members only), checked again against bombs."""
        if self.member is None:
            raise ValueError("not an archive member")
        with _open_archive(self.source) as archive:
            return archive.read(self.member)


@dataclass
class Expansion:
    items: list[Item] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # one line each
    failed_inputs: list[str] = field(default_factory=list)  # the INPUT each failure came from

    def failed(self) -> list[tuple[str, str]]:
        """(INPUT as given, one-line error) of every failure, for the job's report."""
        return list(zip(self.failed_inputs, self.failures, strict=True))


def expand_inputs(inputs: Sequence[str], outdir: Path) -> Expansion:
    """Every item the inputs name, in a stable order; problems come back as failure lines.

    The same file named twice is done once; a second file that would write the same output
    is a failure line.
    """
    found = Expansion()
    for text in inputs:
        _expand_one(text, outdir, found, manifest=None)
        found.failed_inputs += [text] * (len(found.failures) - len(found.failed_inputs))
    _drop_clashes(found)
    return found


def _expand_one(text: str, outdir: Path, found: Expansion, manifest: Path | None) -> None:
    path = Path(text)
    if manifest is not None and not path.is_absolute():
        path = manifest.parent / path
    if not os.path.lexists(path) and GLOB_CHARS & set(text):
        matches = sorted(glob.glob(str(path), recursive=True))
        if not matches:
            found.failures.append(f"{one_line(text)}: matches no file")
        for match in matches:
            _expand_path(Path(match), outdir, found, manifest)
        return
    _expand_path(path, outdir, found, manifest)


def _expand_path(path: Path, outdir: Path, found: Expansion, manifest: Path | None) -> None:
    name = one_line(str(path))
    if not path.exists():
        found.failures.append(f"{name}: not found")
    elif path.is_dir():
        failed = len(found.failures)
        pairs = walk_folder(path, outdir, found.failures)
        inside = [(s, t) for s, t in pairs if _within(s, path)]
        for source, target in pairs:
            if (source, target) not in inside:
                found.failures.append(f"{one_line(str(source))}: a link out of {name}, skipped")
        if not inside and len(found.failures) == failed:
            found.failures.append(f"{name}: folder holds no images or videos")
        for source, target in inside:
            found.items.append(_file_item(source, target.relative_to(outdir)))
    elif _suffix_in(path, MANIFEST_SUFFIXES):
        if manifest is not None:
            found.failures.append(f"{name}: a manifest inside manifest {manifest}, not read")
            return
        for line in _manifest_lines(path, found):
            _expand_one(line, outdir, found, manifest=path)
    elif _suffix_in(path, ARCHIVE_SUFFIXES):
        _expand_archive(path, found)
    elif path.suffix.lower() in MEDIA_SUFFIXES:
        found.items.append(_file_item(path, PurePosixPath(path.name)))
    else:
        found.failures.append(f"{name}: not an image, film, folder, manifest or archive")


def _file_item(path: Path, output: Path | PurePosixPath) -> Item:
    stat = path.stat()
    return Item(path, PurePosixPath(*Path(output).parts), stat.st_size, stat.st_mtime_ns)


def _manifest_lines(path: Path, found: Expansion) -> Iterator[str]:
    """Paths of a text manifest (one a line, ``#`` comments) or a CSV's first column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        found.failures.append(f"{one_line(str(path))}: cannot read manifest ({exc})")
        return
    rows = (
        csv.reader(io.StringIO(text))
        if path.suffix.lower() == ".csv"
        else ([line] for line in text.splitlines())
    )
    for number, row in enumerate(rows):
        entry = row[0].strip() if row else ""
        if not entry or entry.startswith("#"):
            continue
        if number == 0 and path.suffix.lower() == ".csv" and entry.lower() in ("path", "file"):
            continue  # a header
        yield entry


def _expand_archive(path: Path, found: Expansion) -> None:
    name = one_line(str(path))
    stat = path.stat()
    folder = PurePosixPath(_archive_stem(path))
    try:
        with _open_archive(path) as archive:
            members = archive.members()
    except VidcolorError as exc:
        found.failures.append(str(exc))
        return
    images = 0
    for member in members:
        if member.problem:
            found.failures.append(
                f"{name}: member {one_line(member.name)} refused ({member.problem})"
            )
            continue
        if _hidden(member.name) or PurePosixPath(member.name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        images += 1
        found.items.append(
            Item(path, folder / member.name, member.size, stat.st_mtime_ns, member.name)
        )
    if not images and not any(m.problem for m in members):
        found.failures.append(f"{name}: archive holds no images")


@dataclass
class _Member:
    name: str
    size: int
    problem: str | None


class _Archive:
    """Zip and tar behind one small interface: the members (checked), and reading one."""

    def __init__(self, path: Path):
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.tar: tarfile.TarFile | None = None
        try:
            if zipfile.is_zipfile(path):
                self.zip = zipfile.ZipFile(path)  # noqa: SIM115 - closed by __exit__
            else:
                self.tar = tarfile.open(path)  # noqa: SIM115 - closed by __exit__
        except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
            raise VidcolorError(
                f"{one_line(str(path))}: not a readable archive ({one_line(str(exc))})"
            ) from None

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        (self.zip or self.tar).close()  # type: ignore[union-attr]

    def members(self) -> list[_Member]:
        found = []
        if self.zip is not None:
            for info in self.zip.infolist():
                if info.is_dir():
                    continue
                problem = _name_problem(info.filename) or _size_problem(
                    info.file_size, info.compress_size
                )
                found.append(_Member(info.filename, info.file_size, problem))
        else:
            assert self.tar is not None
            try:
                for info in self.tar.getmembers():
                    if info.isdir():
                        continue
                    problem = _name_problem(info.name)
                    if problem is None and not info.isfile():
                        problem = "a link or device, not a file"
                    if problem is None and info.size > MAX_MEMBER_BYTES:
                        problem = f"declares {info.size} bytes"
                    found.append(_Member(info.name, info.size, problem))
            except (OSError, tarfile.TarError) as exc:
                raise VidcolorError(
                    f"{one_line(str(self.path))}: damaged archive ({exc})"
                ) from None
        return found

    def read(self, name: str) -> bytes:
        member = next((m for m in self.members() if m.name == name), None)
        if member is None or member.problem:
            raise VidcolorError(f"{one_line(str(self.path))}: no usable member {one_line(name)}")
        if self.zip is not None:
            return self.zip.read(name)
        handle = self.tar.extractfile(name)  # type: ignore[union-attr]
        if handle is None:
            raise VidcolorError(f"{one_line(str(self.path))}: cannot read {one_line(name)}")
        return handle.read(MAX_MEMBER_BYTES + 1)


def _open_archive(path: Path) -> _Archive:
    return _Archive(path)


def _hidden(name: str) -> bool:
    """Skipped as hidden files in folders are: dot names, and the resource forks macOS zips
    carry (``__MACOSX/._scan.jpg``), which are not images at all."""
    parts = PurePosixPath(name).parts
    return any(part.startswith(".") for part in parts) or parts[:1] == ("__MACOSX",)


def _name_problem(name: str) -> str | None:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute name"
    if ".." in pure.parts:
        return "a name that climbs out with .."
    return None


def _size_problem(size: int, compressed: int) -> str | None:
    if size > MAX_MEMBER_BYTES:
        return f"expands to {size} bytes"
    if size > MAX_RATIO * max(compressed, 1) and size > (1 << 20):
        return f"expands {size // max(compressed, 1)} times (a decompression bomb?)"
    return None


def _archive_stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return path.stem


def _suffix_in(path: Path, suffixes: Sequence[str]) -> bool:
    return path.name.lower().endswith(tuple(suffixes))


def _within(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def _drop_clashes(found: Expansion) -> None:
    """The same file named twice is one item; a second file that would write an output
    already taken is a failure of its own, and the rest of the job runs."""
    seen: dict[PurePosixPath, Item] = {}
    kept: list[Item] = []
    for item in found.items:
        first = seen.get(item.output)
        if first is None:
            seen[item.output] = item
            kept.append(item)
        elif (first.source.resolve(), first.member) != (item.source.resolve(), item.member):
            found.failures.append(
                f"{one_line(item.label)}: {item.output} is already written from "
                f"{one_line(first.label)}; give them different folders"
            )
            found.failed_inputs.append(item.label)
    found.items = kept
