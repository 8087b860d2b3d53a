"""extract(): good archives extract fully; hostile or damaged ones are refused with nothing left behind.

All archives are built by the tests from small in-memory files.
"""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from vidpred.data.archives import extract
from vidpred.errors import VidpredError

FILES = {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)) * 40, "sub/deeper/c.txt": b"gamma"}


def _zip(path, files):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _tar(path, files, mode="w:gz", links=()):
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tf.addfile(info)
    return path


def _assert_nothing_left(tmp_path, keep):
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


@pytest.mark.parametrize("maker,name", [
    (_zip, "good.zip"),
    (lambda p, f: _tar(p, f, "w:gz"), "good.tar.gz"),
    (lambda p, f: _tar(p, f, "w:bz2"), "good.tar.bz2"),
    (lambda p, f: _tar(p, f, "w:xz"), "good.tar.xz"),
    (lambda p, f: _tar(p, f, "w"), "good.tar"),
])
def test_good_archive_extracts_fully(tmp_path, maker, name):
    archive = maker(tmp_path / name, FILES)
    out = extract(archive, tmp_path / "out", progress=False)
    got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == FILES
    _assert_nothing_left(tmp_path, [name, "out"])


def test_internal_symlink_is_allowed(tmp_path):
    archive = _tar(tmp_path / "l.tar", FILES, "w", links=[("sub/link.txt", "../a.txt", tarfile.SYMTYPE)])
    out = extract(archive, tmp_path / "out", progress=False)
    assert (out / "sub" / "link.txt").read_bytes() == FILES["a.txt"]


def test_reextract_replaces_target(tmp_path):
    out = extract(_zip(tmp_path / "one.zip", {"x.txt": b"1"}), tmp_path / "out", progress=False)
    extract(_zip(tmp_path / "two.zip", {"y.txt": b"2"}), out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["y.txt"]


@pytest.mark.parametrize("member", ["../evil.txt", "sub/../../evil.txt"])
def test_zip_slip_refused(tmp_path, member):
    archive = _zip(tmp_path / "slip.zip", {"ok.txt": b"fine", member: b"pwned"})
    with pytest.raises(VidpredError, match=r"slip\.zip.*'\.\./evil\.txt'|slip\.zip.*'sub/\.\./\.\./evil\.txt'"):
        extract(archive, tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path, ["slip.zip"])


def test_tar_dotdot_refused(tmp_path):
    archive = _tar(tmp_path / "slip.tar.gz", {"../evil.txt": b"x"})
    with pytest.raises(VidpredError, match=r"slip\.tar\.gz: member '\.\./evil\.txt' contains '\.\.'"):
        extract(archive, tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path, ["slip.tar.gz"])


@pytest.mark.parametrize("maker,name", [(_zip, "abs.zip"), (lambda p, f: _tar(p, f, "w"), "abs.tar")])
def test_absolute_path_refused(tmp_path, maker, name):
    archive = maker(tmp_path / name, {"ok.txt": b"1", "/tmp/evil.txt": b"x"})
    with pytest.raises(VidpredError, match=rf"{name}: member '/tmp/evil.txt' has an absolute path"):
        extract(archive, tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path, [name])


@pytest.mark.parametrize("target,kind", [
    ("../../outside", tarfile.SYMTYPE),
    ("/etc/passwd", tarfile.SYMTYPE),
    ("../outside.txt", tarfile.LNKTYPE),
])
def test_escaping_link_refused(tmp_path, target, kind):
    archive = _tar(tmp_path / "link.tar", FILES, "w", links=[("sub/evil", target, kind)])
    with pytest.raises(VidpredError, match=r"link\.tar: link 'sub/evil' points"):
        extract(archive, tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path, ["link.tar"])


def test_truncated_zip(tmp_path):
    data = _zip(tmp_path / "full.zip", FILES).read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(VidpredError, match=r"cut\.zip is corrupt or truncated"):
        extract(tmp_path / "cut.zip", tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path, ["full.zip", "cut.zip"])


def test_zip_with_bad_crc(tmp_path):
    path = tmp_path / "crc.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.txt", b"A" * 1000)
    raw = bytearray(path.read_bytes())
    idx = raw.index(b"A" * 1000)
    raw[idx + 500] = ord("B")  # flip one stored byte: the CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(VidpredError, match=r"crc\.zip is corrupt or truncated \(BadZipFile: Bad CRC-32"):
        extract(path, tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path, ["crc.zip"])


def test_truncated_tar_gz(tmp_path):
    import os

    big = {f"f{i}.bin": os.urandom(20_000) for i in range(5)}  # incompressible, so the cut lands in data
    data = _tar(tmp_path / "full.tar.gz", big, "w:gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(VidpredError, match=r"cut\.tar\.gz is corrupt or truncated"):
        extract(tmp_path / "cut.tar.gz", tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path, ["full.tar.gz", "cut.tar.gz"])


def test_not_an_archive(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(VidpredError, match="not a zip or tar archive"):
        extract(tmp_path / "notes.txt", tmp_path / "out", progress=False)
    with pytest.raises(VidpredError, match="does not exist"):
        extract(tmp_path / "missing.zip", tmp_path / "out", progress=False)
