"""Downloads that survive flaky networks: resume, retry, checksum, progress.

``download(url, dest, sha256=None)`` is the only way vidpred fetches raw data:

* streams with ``requests`` into ``dest.part`` and shows a tqdm bar on stderr;
* resumes a partial ``dest.part`` with an HTTP ``Range`` request; a server that ignores the range
  (answers 200, or 416) makes us start again from byte 0;
* retries connection errors, timeouts, cut-off bodies and 5xx answers with exponential backoff
  (``backoff * 2**attempt`` seconds); 4xx answers fail at once;
* checks the sha256: the one given, else the one pinned for this URL in ``checksums.json`` in the
  cache root; an unknown hash is computed and pinned there (most datasets publish none), so a
  later download of the same URL must match it;
* renames ``dest.part`` to ``dest`` only when complete and verified. A mismatch deletes the part
  file and raises :class:`VidpredError` naming the URL and both hashes.

``file://`` URLs and plain local paths are copied (and verified) the same way.
The cache root is ``$VIDPRED_CACHE`` or ``~/.cache/vidpred`` (:func:`cache_root`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests
from tqdm import tqdm

from vidpred.errors import VidpredError
from vidpred.fsutil import atomic_file

CHUNK = 1 << 20  # 1 MiB per read of local files
NET_CHUNK = 1 << 16  # 64 KiB per network read: a cut connection loses at most this much


class _Retryable(Exception):
    """A failure worth another attempt (network hiccup, 5xx, short body)."""


def cache_root() -> Path:
    """Where downloads, extractions and ``checksums.json`` live: ``$VIDPRED_CACHE`` or ``~/.cache/vidpred``."""
    return Path(os.environ.get("VIDPRED_CACHE") or Path.home() / ".cache" / "vidpred")


def checksum_file() -> Path:
    """The pinned-checksum file: JSON mapping URL → sha256, in the cache root."""
    return cache_root() / "checksums.json"


def pinned_checksums(path: Path | None = None) -> dict[str, str]:
    path = Path(path) if path else checksum_file()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise VidpredError(f"checksum file {path} is not valid JSON; fix or delete it") from None
    if not isinstance(data, dict):
        raise VidpredError(f"checksum file {path} must hold a JSON object of url → sha256")
    return data


def pin_checksum(url: str, sha256: str, path: Path | None = None) -> None:
    """Record ``sha256`` for ``url`` in the checksum file (atomic rewrite)."""
    path = Path(path) if path else checksum_file()
    pins = pinned_checksums(path)
    pins[url] = sha256
    with atomic_file(path, "w") as fh:
        json.dump(dict(sorted(pins.items())), fh, indent=2)
        fh.write("\n")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _local_path(url: str) -> Path | None:
    """The filesystem path of a ``file://`` URL or a plain path; None for http(s)."""
    parsed = urlparse(str(url))
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme and len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive
        raise VidpredError(f"cannot download '{url}': unsupported URL scheme '{parsed.scheme}'")
    return Path(url)


def is_url(text: str | None) -> bool:
    """True for http(s):// and file:// URLs (things :func:`download` fetches), False for plain paths."""
    return bool(text) and urlparse(str(text)).scheme in ("http", "https", "file")


def download(url: str, dest: str | Path, sha256: str | None = None, *, retries: int = 4,
             backoff: float = 1.0, timeout: float = 30, progress: bool = True,
             checksums: str | Path | None = None) -> Path:
    """Fetch ``url`` to ``dest`` (resume, retry, verify); return ``dest``.

    ``sha256``: the expected hash; when None, the pin in ``checksums`` (default :func:`checksum_file`)
    is used, and recorded there after the first successful download. An existing ``dest`` that
    matches is reused without network access; one that does not match is fetched again.
    """
    dest = Path(dest)
    url = str(url)
    pins_path = Path(checksums) if checksums else checksum_file()
    expected = (sha256 or pinned_checksums(pins_path).get(url) or "").lower() or None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise VidpredError(f"sha256 for {url} must be 64 hex digits, got '{expected}'")

    if dest.exists():
        actual = file_sha256(dest)
        if expected is None or actual == expected:
            if expected is None:
                pin_checksum(url, actual, pins_path)
            return dest
        dest.unlink()  # stale or corrupt copy: fetch again

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    local = _local_path(url)
    if local is not None:
        actual = _copy_local(local, part, progress)
    else:
        actual = _fetch_http(url, part, retries=retries, backoff=backoff, timeout=timeout, progress=progress)

    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        hint = "" if sha256 else f" (pinned in {pins_path}; remove that entry if the file legitimately changed)"
        raise VidpredError(f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}{hint}")
    os.replace(part, dest)
    if expected is None:
        pin_checksum(url, actual, pins_path)
    return dest


def _bar(total: int | None, initial: int, name: str, progress: bool) -> tqdm:
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, file=sys.stderr, disable=not progress, leave=False)


def _copy_local(src: Path, part: Path, progress: bool) -> str:
    if not src.is_file():
        raise VidpredError(f"cannot download '{src}': no such file")
    digest = hashlib.sha256()
    try:
        with open(src, "rb") as fin, open(part, "wb") as fout, \
                _bar(src.stat().st_size, 0, src.name, progress) as bar:
            for block in iter(lambda: fin.read(CHUNK), b""):
                fout.write(block)
                digest.update(block)
                bar.update(len(block))
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def _fetch_http(url: str, part: Path, *, retries: int, backoff: float, timeout: float, progress: bool) -> str:
    """Download into ``part`` (resuming what is there); return the sha256 of the complete file."""
    last_error = "unknown error"
    with requests.Session() as session:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(backoff * 2 ** (attempt - 1))
            try:
                return _fetch_once(session, url, part, timeout, progress)
            except _Retryable as exc:
                last_error = str(exc)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
    raise VidpredError(f"download of {url} failed after {retries + 1} attempts: {last_error}")


def _fetch_once(session: requests.Session, url: str, part: Path, timeout: float, progress: bool) -> str:
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with session.get(url, headers=headers, stream=True, timeout=timeout) as resp:
        if resp.status_code == 416 or (have and resp.status_code == 200):
            # The server cannot or will not resume: start again from byte 0.
            part.unlink(missing_ok=True)
            if resp.status_code == 416:
                raise _Retryable(f"HTTP 416 resuming at byte {have}; restarting")
            have = 0
        elif resp.status_code == 206:
            start = _content_range_start(resp.headers.get("Content-Range", ""))
            if start != have:
                part.unlink(missing_ok=True)
                raise _Retryable(f"server resumed at byte {start}, expected {have}; restarting")
        elif resp.status_code >= 500:
            raise _Retryable(f"HTTP {resp.status_code}")
        elif resp.status_code != 200:
            raise VidpredError(f"download of {url} failed: HTTP {resp.status_code} {resp.reason}")

        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        digest = hashlib.sha256()
        if have:
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(CHUNK), b""):
                    digest.update(block)
        got = have
        with open(part, "ab" if have else "wb") as fh, _bar(total, have, Path(urlparse(url).path).name, progress) as bar:
            for block in resp.iter_content(NET_CHUNK):
                fh.write(block)
                digest.update(block)
                got += len(block)
                bar.update(len(block))
        if total is not None and got != total:
            raise _Retryable(f"connection closed after {got} of {total} bytes")
    return digest.hexdigest()


def _content_range_start(value: str) -> int | None:
    # "bytes 100-199/200"
    with contextlib.suppress(ValueError, IndexError):
        return int(value.split()[1].split("-")[0])
    return None


def fetch_file(url: str, workdir: Path, name: str | None = None, sha256: str | None = None, **kwargs) -> Path:
    """Download ``url`` into ``workdir`` under ``name`` (default: the URL's last path component)."""
    name = name or Path(unquote(urlparse(str(url)).path)).name
    if not name:
        raise VidpredError(f"cannot name the download of '{url}': the URL has no file name")
    return download(url, Path(workdir) / name, sha256, **kwargs)


__all__ = ["download", "fetch_file", "is_url", "cache_root", "checksum_file", "pinned_checksums", "pin_checksum",
           "file_sha256"]
