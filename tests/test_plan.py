"""vidcolor.plan: command-line inputs to (input, output) pairs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vidcolor.errors import VidcolorError
from vidcolor.plan import plan_jobs


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not empty")
    return path


def test_single_file_maps_to_the_output_itself(tmp_path):
    film = touch(tmp_path / "film.mp4")
    plan = plan_jobs([film], tmp_path / "color.mp4")
    assert plan.jobs == [(film, tmp_path / "color.mp4")] and not plan.many


def test_folder_is_mirrored_skipping_hidden_and_non_media(tmp_path):
    scans = tmp_path / "scans"
    touch(scans / "a.jpg")
    touch(scans / "sub" / "b.PNG")
    touch(scans / "notes.txt")
    touch(scans / ".hidden.png")
    touch(scans / ".cache" / "c.png")
    plan = plan_jobs([scans], tmp_path / "out")
    assert [(s.relative_to(scans), t.relative_to(tmp_path)) for s, t in plan.jobs] == [
        (Path("a.jpg"), Path("out/a.jpg")),
        (Path("sub/b.PNG"), Path("out/sub/b.PNG")),
    ]
    assert plan.failures == [] and plan.many


def test_an_output_folder_inside_the_input_is_not_colourised_again(tmp_path):
    scans = tmp_path / "scans"
    touch(scans / "a.jpg")
    touch(scans / "colour" / "a.jpg")  # what the first run made
    plan = plan_jobs([scans], scans / "colour")
    assert [s.name for s, _ in plan.jobs] == ["a.jpg"]
    assert plan.jobs[0][0] == scans / "a.jpg"


def test_two_inputs_with_one_output_name_are_refused(tmp_path):
    one, two = touch(tmp_path / "d1" / "x.png"), touch(tmp_path / "d2" / "x.png")
    with pytest.raises(VidcolorError, match="two inputs would write it"):
        plan_jobs([one, two], tmp_path / "out")


def test_an_unreadable_subfolder_is_a_counted_failure(tmp_path, monkeypatch):
    scans = tmp_path / "scans"
    touch(scans / "a.jpg")
    touch(scans / "locked" / "b.jpg")
    real_scandir = os.scandir

    def scandir(path: object = "."):  # root reads everything: refuse like a chmod 000 folder
        if Path(os.fsdecode(path)).name == "locked":
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    plan = plan_jobs([scans], tmp_path / "out")
    assert [s.name for s, _ in plan.jobs] == ["a.jpg"]
    assert plan.failures == [f"{scans / 'locked'}: cannot read folder (Permission denied)"]


def test_missing_input_among_several_is_a_counted_failure(tmp_path):
    good = touch(tmp_path / "a.jpg")
    plan = plan_jobs([good, tmp_path / "missing.jpg"], tmp_path / "out")
    assert [s for s, _ in plan.jobs] == [good]
    assert plan.failures == [f"{tmp_path / 'missing.jpg'}: no such file or folder"]


def test_missing_single_input_is_an_error(tmp_path):
    with pytest.raises(VidcolorError, match="no such file"):
        plan_jobs([tmp_path / "missing.mp4"], tmp_path / "out.mp4")


def test_a_film_whose_container_cannot_hold_the_codec_becomes_mkv(tmp_path):
    films = tmp_path / "films"
    touch(films / "a.webm")
    touch(films / "b.mov")
    plan = plan_jobs([films], tmp_path / "out", codec="h264")
    assert [t.name for _, t in plan.jobs] == ["a.mkv", "b.mov"]
    assert [t.name for _, t in plan_jobs([films], tmp_path / "o", codec="vp9").jobs] == [
        "a.webm",
        "b.mov",
    ]
