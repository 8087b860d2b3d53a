"""Safe, atomic extraction of zip and tar archives (plain, .gz, .bz2, .xz).

``extract(archive, target)`` checks every member before writing anything and refuses

* absolute member paths (``/etc/passwd``, ``C:\\x``),
* ``..`` components (zip-slip),
* symlinks or hardlinks whose target lies outside the destination,
* device files and FIFOs,

with a :class:`VidpredError` naming the archive and the member. Truncated or corrupt archives
(``zipfile.BadZipFile``, ``tarfile.ReadError``, ``EOFError``, CRC/zlib errors) become one
VidpredError line naming the archive. Extraction goes into a temporary sibling directory that is
renamed to ``target`` only when complete (``vidpred.fsutil.atomic_dir``), so a failure leaves
nothing behind. Tar extraction additionally runs Python's ``"data"`` filter as a second guard.
"""

from __future__ import annotations

import gzip
import lzma
import posixpath
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from vidpred.errors import VidpredError
from vidpred.fsutil import atomic_dir

_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError,
            gzip.BadGzipFile)


def archive_kind(path: Path) -> str:
    """``"zip"`` or ``"tar"``, from the file's content (magic bytes), not its name."""
    path = Path(path)
    if not path.is_file():
        raise VidpredError(f"archive {path} does not exist")
    if zipfile.is_zipfile(path):
        return "zip"
    name = path.name.lower()
    if name.endswith(".zip"):  # a zip whose central directory is missing: truncated
        raise VidpredError(f"archive {path} is corrupt or truncated (no zip central directory)")
    try:
        with tarfile.open(path, "r:*"):
            return "tar"
    except _CORRUPT as exc:
        if any(name.endswith(s) for s in (".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz")):
            raise VidpredError(f"archive {path} is corrupt or truncated ({_reason(exc)})") from None
        raise VidpredError(f"{path} is not a zip or tar archive") from None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_name(archive: Path, name: str) -> str:
    """The member's normalised relative POSIX path, or VidpredError if it could escape."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise VidpredError(f"archive {archive}: member '{name}' has an absolute path; refusing to extract")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise VidpredError(f"archive {archive}: member '{name}' contains '..'; refusing to extract")
    return "/".join(parts)


def _check_link(archive: Path, member: tarfile.TarInfo, rel: str) -> None:
    target = member.linkname.replace("\\", "/")
    if target.startswith("/"):
        raise VidpredError(f"archive {archive}: link '{member.name}' points to absolute path '{member.linkname}'; "
                           "refusing to extract")
    # symlinks resolve relative to their own folder, hardlinks relative to the archive root
    base = posixpath.dirname(rel) if member.issym() else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise VidpredError(f"archive {archive}: link '{member.name}' points outside the destination "
                           f"('{member.linkname}'); refusing to extract")


def _check_tar(archive: Path, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = tar.getmembers()  # reads the whole archive: a truncated one fails here
    for m in members:
        rel = _check_name(archive, m.name)
        if m.issym() or m.islnk():
            _check_link(archive, m, rel)
        elif not (m.isfile() or m.isdir()):
            raise VidpredError(f"archive {archive}: member '{m.name}' is a device or FIFO; refusing to extract")
    return members


def extract(archive: str | Path, target: str | Path, *, progress: bool = True) -> Path:
    """Extract ``archive`` (zip or tar, any compression) into ``target`` atomically; return ``target``.

    An existing ``target`` is replaced only after the new extraction succeeded.
    """
    archive = Path(archive)
    target = Path(target)
    kind = archive_kind(archive)
    try:
        with atomic_dir(target) as tmp:
            if kind == "zip":
                _extract_zip(archive, tmp, progress)
            else:
                _extract_tar(archive, tmp, progress)
    except VidpredError:
        raise
    except _CORRUPT as exc:
        raise VidpredError(f"archive {archive} is corrupt or truncated ({_reason(exc)})") from None
    except OSError as exc:
        if exc.errno is not None:  # a real I/O problem (disk full, permissions): not the archive's fault
            raise
        raise VidpredError(f"archive {archive} is corrupt or truncated ({_reason(exc)})") from None  # e.g. bz2 data
    return target


def _bar(items, archive: Path, progress: bool):
    return tqdm(items, desc=f"extract {archive.name}", unit="file", file=sys.stderr, disable=not progress,
                leave=False)


def _extract_zip(archive: Path, out: Path, progress: bool) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_name(archive, info.filename)
        for info in _bar(infos, archive, progress):
            zf.extract(info, out)  # reading the member checks its CRC


def _extract_tar(archive: Path, out: Path, progress: bool) -> None:
    with tarfile.open(archive, "r:*") as tar:
        members = _check_tar(archive, tar)
        for m in _bar(members, archive, progress):
            try:
                tar.extract(m, out, filter="data")
            except tarfile.FilterError as exc:
                raise VidpredError(f"archive {archive}: member '{m.name}' refused ({exc})") from None
