"""The resume ledger: what a batch job has finished, kept in OUTDIR, true after any kill.

One JSON line per event, appended and fsync'd by the job's driver (its only writer). An item
counts as done when the ledger says so *and* its output is still there with the recorded size
and modification time (or sha256, on request), for the same input (path, size, modification
time) and the same options: re-running a command skips exactly that, and redoes anything
changed, deleted or never finished.

Publishing an output is a two-phase commit, so a kill at any moment neither loses finished
work nor counts unfinished work as done:

1. ``committing``: the finished temporary file, its final name and its sha256 are recorded;
2. the temporary file is renamed onto the final name;
3. ``done`` is recorded.

Opening the ledger finishes what a kill interrupted: a ``committing`` entry whose final file
(or still-temporary file) has the recorded sha256 is completed; anything else is redone. A torn
last line (killed mid-write) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcolor.batch.inputs import Item
from vidcolor.hashing import file_sha256 as sha256_of

LEDGER = Path(".vidcolor-batch") / "ledger.jsonl"


@dataclass(frozen=True)
class Done:
    output: str
    size: int
    sha256: str
    mtime_ns: int | None = None  # of the published file; None in ledgers that predate it


class Ledger:
    """The ledger of one OUTDIR, for one set of options (``options_key``)."""

    def __init__(self, outdir: Path, options_key: str):
        self.outdir = Path(outdir)
        self.options_key = options_key
        self.path = self.outdir / LEDGER
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._done: dict[str, Done] = {}
        self._published: dict[str, Done] = {}  # by output, the last one recorded
        self._failed: dict[str, str] = {}
        self._end_torn_line()
        self._recover()

    # --- keys ---------------------------------------------------------------------------

    def key(self, item: Item, part: str = "") -> str:
        """What makes work the same work: input, its size and time, options, and the part."""
        text = json.dumps(
            [item.label, item.size, item.mtime_ns, self.options_key, part], ensure_ascii=True
        )
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    # --- questions ----------------------------------------------------------------------

    def is_done(self, item: Item, part: str = "", verify: bool = False) -> bool:
        """Finished before, and its output is still what was published: the same size and
        modification time (as make and rsync judge), or with ``verify`` the same sha256 (an
        archive's worth of outputs is then read in full)."""
        done = self._done.get(self.key(item, part))
        if done is None:
            return False
        final = self.outdir / done.output
        try:
            stat = final.stat()
            if stat.st_size != done.size:
                return False
            if done.mtime_ns is not None and not verify:
                return stat.st_mtime_ns == done.mtime_ns
            return sha256_of(final) == done.sha256
        except OSError:
            return False

    def published(self, output: str | os.PathLike) -> bool:
        """Whether the file at ``output`` (relative to OUTDIR) is one this job published and
        nobody has touched since: redoing its item may replace it without --overwrite."""
        done = self._published.get(str(output))
        if done is None:
            return False
        try:
            stat = (self.outdir / done.output).stat()
        except OSError:
            return False
        return stat.st_size == done.size and stat.st_mtime_ns == done.mtime_ns

    def failures(self) -> dict[str, str]:
        """Label of each item whose last attempt failed -> its one-line error."""
        return dict(self._failed)

    # --- records ------------------------------------------------------------------------

    def commit(self, item: Item, tmp: Path, final: Path, part: str = "") -> None:
        """Publish ``tmp`` as ``final`` (inside OUTDIR) and record it done, surviving kills."""
        key = self.key(item, part)
        output = str(Path(final).relative_to(self.outdir))
        digest = sha256_of(tmp)
        size = Path(tmp).stat().st_size
        self._append(
            {
                "event": "committing",
                "key": key,
                "label": item.label,
                "tmp": str(Path(tmp).relative_to(self.outdir)),
                "output": output,
                "size": size,
                "sha256": digest,
            }
        )
        os.replace(tmp, final)
        self._record_done(key, item.label, output, size, digest)
        self._failed.pop(item.label, None)

    def fail(self, item: Item, error: str, part: str = "") -> None:
        self._append(
            {"event": "failed", "key": self.key(item, part), "label": item.label, "error": error}
        )
        self._failed[item.label] = error

    # --- the file -----------------------------------------------------------------------

    def _append(self, record: dict[str, Any]) -> None:
        record["time"] = round(time.time(), 3)
        line = json.dumps(record, ensure_ascii=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _end_torn_line(self) -> None:
        """A kill mid-write leaves a line without its newline: end it, so the next record
        starts a line of its own (the torn one is then skipped as unreadable)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                torn = handle.read(1) != b"\n"
        except OSError:  # no ledger yet, or an empty one
            return
        if torn:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)

    def _records(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return []
        records = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill
            if isinstance(record, dict) and isinstance(record.get("key"), str):
                records.append(record)
        return records

    def _recover(self) -> None:
        pending: dict[str, dict[str, Any]] = {}
        for record in self._records():
            event, key = record.get("event"), record["key"]
            if event == "committing":
                pending[key] = record
            elif event == "done" and key in pending:
                started = pending.pop(key)
                mtime = record.get("mtime_ns")
                done = Done(
                    started["output"],
                    started["size"],
                    started["sha256"],
                    mtime if isinstance(mtime, int) else None,
                )
                self._done[key] = self._published[done.output] = done
                self._failed.pop(str(record.get("label")), None)
            elif event == "failed":
                self._failed[str(record.get("label"))] = str(record.get("error"))
        for key, started in pending.items():  # killed between "committing" and "done"
            self._finish(key, started)

    def _finish(self, key: str, started: dict[str, Any]) -> None:
        final = self.outdir / started["output"]
        tmp = self.outdir / started["tmp"]
        if not self._holds(final, started) and self._holds(tmp, started):
            os.replace(tmp, final)  # killed before the rename: the work itself was finished
        if self._holds(final, started):
            self._record_done(
                key, started["label"], started["output"], started["size"], started["sha256"]
            )

    def _record_done(self, key: str, label: str, output: str, size: int, digest: str) -> None:
        mtime_ns = (self.outdir / output).stat().st_mtime_ns
        record = {"event": "done", "key": key, "label": label, "output": output}
        self._append({**record, "mtime_ns": mtime_ns})
        self._done[key] = self._published[output] = Done(output, size, digest, mtime_ns)

    @staticmethod
    def _holds(path: Path, started: dict[str, Any]) -> bool:
        try:
            return path.stat().st_size == started["size"] and sha256_of(path) == started["sha256"]
        except OSError:
            return False
