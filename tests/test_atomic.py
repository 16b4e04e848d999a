"""vidcolor.atomic: outputs appear whole or not at all, and never replace what they should not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vidcolor.atomic import atomic_output, check_writable_target, publish
from vidcolor.errors import VidcolorError


def test_a_file_that_appears_meanwhile_is_not_replaced(tmp_path):
    """Two runs (or two inputs of one job) writing one name: the later must not win silently."""
    target = tmp_path / "out.png"
    appeared = pytest.raises(VidcolorError, match="appeared while vidcolor was writing")
    with appeared, atomic_output(target) as tmp:
        tmp.write_bytes(b"ours")
        target.write_bytes(b"theirs")  # another process finished first
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_overwrite_replaces_a_file_that_appears_meanwhile(tmp_path):
    target = tmp_path / "out.png"
    with atomic_output(target, overwrite=True) as tmp:
        tmp.write_bytes(b"ours")
        target.write_bytes(b"theirs")
    assert target.read_bytes() == b"ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_publish_without_hard_links_still_refuses_to_replace(tmp_path, monkeypatch):
    """File systems without hard links (FAT, some network mounts) take the rename path."""

    def no_links(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    first, second = tmp_path / "a.part", tmp_path / "b.part"
    first.write_bytes(b"one")
    second.write_bytes(b"two")
    publish(first, tmp_path / "out.png", overwrite=False)
    assert (tmp_path / "out.png").read_bytes() == b"one" and not first.exists()
    with pytest.raises(VidcolorError, match="appeared while"):
        publish(second, tmp_path / "out.png", overwrite=False)
    assert (tmp_path / "out.png").read_bytes() == b"one"


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_fifo_is_never_replaced(tmp_path, overwrite):
    fifo = tmp_path / "out.mp4"
    os.mkfifo(fifo)
    expected = "regular file" if overwrite else "already exists"
    with pytest.raises(VidcolorError, match=expected):
        check_writable_target(fifo, overwrite=overwrite)
    refused = pytest.raises(VidcolorError, match="regular file")
    with refused, atomic_output(fifo, overwrite=True) as tmp:
        tmp.write_bytes(b"data")
    assert fifo.is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_a_device_is_never_replaced():
    with pytest.raises(VidcolorError, match="regular file"):
        check_writable_target(Path("/dev/null"), overwrite=True)


def test_temporary_names_are_hidden_and_keep_the_extension(tmp_path):
    with atomic_output(tmp_path / "film.mkv") as tmp:
        assert tmp.name.startswith(".") and tmp.name.endswith(".part.mkv")
        assert tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "film.mkv").read_bytes() == b"x"
