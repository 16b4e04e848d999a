"""Batch inputs: files, folders, globs, manifests and archives as items, and their safety."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from vidcolor.batch.inputs import MAX_MEMBER_BYTES, expand_inputs
from vidcolor.errors import VidcolorError


@pytest.fixture
def tree(tmp_path: Path, make_image) -> Path:
    make_image("rgb_png", name="scans/a.png")
    make_image("grey_jpeg", name="scans/box 1/b.jpg")
    make_image("grey_jpeg", name="scans/.hidden/c.jpg")
    (tmp_path / "scans" / "notes.txt").write_text("not media")
    make_image("rgb_png", name="loose.png")
    return tmp_path


def outputs(expansion) -> list[str]:
    return [str(item.output) for item in expansion.items]


def test_files_folders_and_globs(tree):
    out = tree / "out"
    found = expand_inputs([str(tree / "scans"), str(tree / "loose.png")], out)
    assert outputs(found) == ["a.png", "box 1/b.jpg", "loose.png"] and found.failures == []
    item = found.items[2]
    assert item.size == (tree / "loose.png").stat().st_size and item.member is None
    globbed = expand_inputs([str(tree / "scans" / "**" / "*.jpg")], out)
    assert outputs(globbed) == ["b.jpg"]
    none = expand_inputs([str(tree / "*.mov"), str(tree / "missing.png")], out)
    assert none.items == [] and len(none.failures) == 2
    assert "matches no file" in none.failures[0] and "not found" in none.failures[1]
    assert [source for source, _ in none.failed()] == [
        str(tree / "*.mov"),
        str(tree / "missing.png"),
    ]


def test_manifests_text_and_csv_resolve_from_their_folder(tree):
    (tree / "list.txt").write_text("# reels\nloose.png\n\nscans/a.png\nmissing.jpg\n")
    (tree / "list.csv").write_text("path,notes\nscans/box 1/b.jpg,first box\n")
    (tree / "nested.txt").write_text("list.txt\n")
    found = expand_inputs([str(tree / "list.txt"), str(tree / "list.csv")], tree / "out")
    assert outputs(found) == ["loose.png", "a.png", "b.jpg"]
    assert len(found.failures) == 1 and "missing.jpg: not found" in found.failures[0]
    assert found.failed()[0][0] == str(tree / "list.txt")  # the report names the INPUT
    nested = expand_inputs([str(tree / "nested.txt")], tree / "out")
    assert nested.items == [] and "a manifest inside manifest" in nested.failures[0]


def _png_bytes(make_image, name: str) -> bytes:
    return make_image("rgb_png", name=name).read_bytes()


def test_archives_become_folders_and_members_are_read_back(tree, make_image):
    data = _png_bytes(make_image, "member.png")
    with zipfile.ZipFile(tree / "album.zip", "w") as z:
        z.writestr("p/one.png", data)
        z.writestr("readme.txt", b"text")
        z.writestr("__MACOSX/p/._one.png", b"resource fork")  # hidden, as in folders
        z.writestr("p/.thumbs/one.png", data)
    with tarfile.open(tree / "more.tar.gz", "w:gz") as t:
        info = tarfile.TarInfo("two.png")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
        info.name = "._two.png"
        t.addfile(info, io.BytesIO(data))
    found = expand_inputs([str(tree / "album.zip"), str(tree / "more.tar.gz")], tree / "out")
    assert outputs(found) == ["album/p/one.png", "more/two.png"] and found.failures == []
    assert found.items[0].label.endswith("album.zip:p/one.png")
    assert found.items[0].read_member() == data and found.items[1].read_member() == data


def test_archive_traversal_links_and_bombs_are_refused(tree, make_image):
    data = _png_bytes(make_image, "member.png")
    with zipfile.ZipFile(tree / "evil.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("../escape.png", data)
        z.writestr("/etc/abs.png", data)
        z.writestr("ok.png", data)
        z.writestr("bomb.png", b"\0" * (8 << 20))  # 8 MB of zeros: about 8 kB compressed
    with tarfile.open(tree / "links.tar", "w") as t:
        link = tarfile.TarInfo("link.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        t.addfile(link)
    with tarfile.open(tree / "huge.tar", "w") as t:
        huge = tarfile.TarInfo("huge.png")
        huge.size = MAX_MEMBER_BYTES + 1
        t.addfile(huge)  # declared, never stored: refused from its header alone
    found = expand_inputs([str(tree / "evil.zip")], tree / "out")
    assert outputs(found) == ["evil/ok.png"]
    reasons = " ".join(found.failures)
    assert "climbs out" in reasons and "absolute name" in reasons and "bomb" in reasons
    with pytest.raises(VidcolorError, match="no usable member"):
        found.items[0].__class__(
            found.items[0].source, PurePosixPath("x"), 0, 0, "../escape.png"
        ).read_member()
    links = expand_inputs([str(tree / "links.tar"), str(tree / "huge.tar")], tree / "out")
    assert links.items == [] and "link or device" in links.failures[0]
    assert "declares" in links.failures[1] or "damaged archive" in links.failures[1]
    assert not (tree / "escape.png").exists() and not (tree.parent / "escape.png").exists()


def test_links_out_of_a_folder_and_the_output_inside_it_are_skipped(tree, make_image):
    outside = make_image("rgb_png", name="elsewhere/secret.png")
    os.symlink(outside, tree / "scans" / "secret.png")
    os.symlink(tree / "scans" / "a.png", tree / "scans" / "again.png")  # inside: kept
    out = tree / "scans" / "colour"
    make_image("rgb_png", name="scans/colour/old-output.png")
    found = expand_inputs([str(tree / "scans")], out)
    assert outputs(found) == ["a.png", "again.png", "box 1/b.jpg"]
    assert len(found.failures) == 1 and "a link out of" in found.failures[0]


def test_one_file_twice_is_one_item_and_a_clash_is_one_failure(tree, make_image):
    make_image("rgb_png", name="other/loose.png")
    loose = str(tree / "loose.png")
    found = expand_inputs([loose, loose, str(tree / "other" / "loose.png")], tree / "o")
    assert [str(item.source) for item in found.items] == [loose]
    assert len(found.failures) == 1 and "already written from" in found.failures[0]
    assert found.failed()[0][0] == str(tree / "other" / "loose.png")


def test_damaged_archive_and_unknown_files_are_failures_not_crashes(tree):
    (tree / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    (tree / "data.bin").write_bytes(b"\0" * 10)
    found = expand_inputs([str(tree / "broken.zip"), str(tree / "data.bin")], tree / "out")
    assert found.items == [] and len(found.failures) == 2
    assert "not a readable archive" in found.failures[0]
    assert "not an image, film, folder, manifest or archive" in found.failures[1]


def test_manifest_with_a_byte_order_mark(tree):
    manifest = tree / "list.csv"
    manifest.write_text("path\nloose.png\n", encoding="utf-8-sig")
    found = expand_inputs([str(manifest)], tree / "o")
    assert [item.source.name for item in found.items] == ["loose.png"] and not found.failures
