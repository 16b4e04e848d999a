"""The resume ledger: done means published and unchanged; kills at any moment recover."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from vidcolor.batch.inputs import Item
from vidcolor.batch.ledger import LEDGER, Ledger


@pytest.fixture
def job(tmp_path: Path):
    source = tmp_path / "in" / "a.png"
    source.parent.mkdir()
    source.write_bytes(b"picture")
    stat = source.stat()
    item = Item(source, PurePosixPath("a.png"), stat.st_size, stat.st_mtime_ns)
    outdir = tmp_path / "out"
    outdir.mkdir()
    return item, outdir


def finished(outdir: Path, data: bytes = b"colour") -> Path:
    tmp = outdir / ".vidcolor-a.part.png"
    tmp.write_bytes(data)
    return tmp


def test_done_survives_a_new_ledger_and_is_skipped(job):
    item, outdir = job
    ledger = Ledger(outdir, "opts")
    assert not ledger.is_done(item)
    ledger.commit(item, finished(outdir), outdir / "a.png")
    assert (outdir / "a.png").read_bytes() == b"colour"
    assert Ledger(outdir, "opts").is_done(item)  # a re-run skips it


@pytest.mark.parametrize("change", ["output deleted", "output changed", "input changed", "options"])
def test_anything_changed_is_redone(job, change):
    item, outdir = job
    Ledger(outdir, "opts").commit(item, finished(outdir), outdir / "a.png")
    options = "opts"
    if change == "output deleted":
        (outdir / "a.png").unlink()
    elif change == "output changed":
        (outdir / "a.png").write_bytes(b"COLOUR")
    elif change == "input changed":
        item = Item(item.source, item.output, item.size + 1, item.mtime_ns)
    else:
        options = "other opts"
    assert not Ledger(outdir, options).is_done(item)


def test_killed_before_the_rename_is_completed_on_reopen(job, monkeypatch):
    item, outdir = job
    ledger = Ledger(outdir, "opts")

    def killed(*args):
        raise KeyboardInterrupt  # as SIGKILL between "committing" and the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        ledger.commit(item, finished(outdir), outdir / "a.png")
    monkeypatch.undo()
    assert not (outdir / "a.png").exists()
    reopened = Ledger(outdir, "opts")
    assert reopened.is_done(item) and (outdir / "a.png").read_bytes() == b"colour"
    assert not (outdir / ".vidcolor-a.part.png").exists()


def test_killed_after_the_rename_is_recorded_on_reopen(job, monkeypatch):
    item, outdir = job
    ledger = Ledger(outdir, "opts")
    real_append = Ledger._append

    def append_then_die(self, record):
        if record["event"] == "done":
            raise KeyboardInterrupt  # the rename happened; the "done" line never did
        real_append(self, record)

    monkeypatch.setattr(Ledger, "_append", append_then_die)
    with pytest.raises(KeyboardInterrupt):
        ledger.commit(item, finished(outdir), outdir / "a.png")
    monkeypatch.undo()
    assert Ledger(outdir, "opts").is_done(item)  # not done twice


def test_killed_while_the_work_was_unfinished_is_redone(job):
    item, outdir = job
    ledger = Ledger(outdir, "opts")
    ledger._append(
        {
            "event": "committing",
            "key": ledger.key(item),
            "label": item.label,
            "tmp": ".vidcolor-a.part.png",
            "output": "a.png",
            "size": 6,
            "sha256": "0" * 64,
        }
    )
    finished(outdir, b"half")  # the temporary file does not hold what was recorded
    assert not Ledger(outdir, "opts").is_done(item)
    assert not (outdir / "a.png").exists()


def test_a_torn_last_line_is_ignored_and_failures_are_remembered(job):
    item, outdir = job
    ledger = Ledger(outdir, "opts")
    ledger.fail(item, "corrupt at frame 3")
    with open(outdir / LEDGER, "a") as handle:
        handle.write('{"event": "done", "key": "abc", "lab')  # killed mid-write
    reopened = Ledger(outdir, "opts")
    assert reopened.failures() == {item.label: "corrupt at frame 3"}
    reopened.commit(item, finished(outdir), outdir / "a.png")  # a retry that works
    assert Ledger(outdir, "opts").failures() == {} and Ledger(outdir, "opts").is_done(item)


def test_parts_of_one_film_are_separate_work(job):
    item, outdir = job
    ledger = Ledger(outdir, "opts")
    ledger.commit(item, finished(outdir), outdir / "a.png", part="frames 0-99")
    assert ledger.is_done(item, part="frames 0-99") and not ledger.is_done(item, "frames 100-199")
