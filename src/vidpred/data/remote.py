"""Prepared datasets in a shared DVC remote (an S3-compatible store such as MinIO, or a directory).

The data stage asks the remote before it prepares anything: has a dataset with exactly these settings been
prepared before? If so it pulls those bytes (same DVC md5); if not it prepares the dataset and pushes it.

**How a stage knows the md5 before preparing.** The settings that decide the prepared bytes (dataset, source,
size, crop, clip length, options) hash to a *spec key*, :func:`spec_key`. Next to DVC's content-addressed
objects the remote holds one small index file per key, ``<remote>/vidpred/datasets/<key>.dvc``: an ordinary
DVC ``.dvc`` file (``outs[0].md5`` = the directory md5, size, file count) with a ``meta.vidpred`` block (the
settings, when it was written, the md5 it replaced). Pulling = writing that file into a throw-away DVC
repository and ``dvc pull``. The index is written only after its data was pushed completely, so a key that
is present always names data that is all there. Nothing has to be committed to git from inside a pod.

**Scheduled runs** (``refresh``): the dataset is re-prepared from its source and its md5 compared with the
one the index records for the key. New or changed data is pushed and the index moves to the new md5;
unchanged data is reported as such, and ``on_unchanged`` says whether the run trains anyway (``train``) or
skips training (``skip``). :class:`DataState` carries the outcome (``train`` is what a pipeline branches on).

**Where the remote comes from.** The ``dvc_remote`` / ``dvc_endpoint_url`` arguments, else the environment:
``VIDPRED_DVC_REMOTE`` (``s3://bucket/prefix`` or a directory) and ``VIDPRED_DVC_ENDPOINT_URL`` (the S3 API
of MinIO, e.g. ``http://minio:9000``; empty for AWS). Credentials are never written anywhere by vidpred: the
S3 client reads ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (on a cluster from a Secret), or DVC's own
global / system config, or the AWS shared credentials file.

All DVC work runs in a temporary DVC repository (``dvc init --no-scm``) next to the output, removed after.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import yaml

from vidpred.data.versioning import dir_md5, dvc_env
from vidpred.errors import VidpredError

REMOTE_ENV = "VIDPRED_DVC_REMOTE"
ENDPOINT_ENV = "VIDPRED_DVC_ENDPOINT_URL"
INDEX_DIR = "vidpred/datasets"  # under the remote's URL, beside DVC's own files/md5/ (never touched by dvc gc)
ON_UNCHANGED = ("train", "skip")
# bump when prepare() writes different bytes for the same settings (the store's FORMAT is in the key too):
# every spec key changes, so old index entries are no longer found and the data is prepared (and pushed) again
SPEC_KEY_VERSION = 1
_NAME = "store"  # the remote's name inside the throw-away repositories


@dataclass(frozen=True)
class Remote:
    """A DVC remote: ``url`` (``s3://bucket/prefix`` or an absolute directory) and, for an S3-compatible
    store other than AWS, its ``endpoint_url``."""

    url: str
    endpoint_url: str = ""

    @classmethod
    def resolve(cls, url: str = "", endpoint_url: str = "") -> "Remote | None":
        """The remote named by the arguments, else by ``$VIDPRED_DVC_REMOTE`` / ``$VIDPRED_DVC_ENDPOINT_URL``;
        ``None`` when neither names one."""
        url = (url or os.environ.get(REMOTE_ENV, "")).strip()
        endpoint = (endpoint_url or os.environ.get(ENDPOINT_ENV, "")).strip()
        if not url:
            if endpoint_url:
                raise VidpredError(f"dvc endpoint {endpoint_url} given without a remote URL (s3://bucket/prefix)")
            return None
        scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", url)
        if scheme:
            if scheme.group(1).lower() != "s3":
                raise VidpredError(f"dvc remote {url}: only s3:// (S3-compatible, e.g. MinIO) and local "
                                   f"directories are supported")
            if not url[5:].strip("/"):
                raise VidpredError(f"dvc remote {url}: no bucket named (use s3://bucket/prefix)")
            url = url.rstrip("/")
        else:
            if endpoint:
                raise VidpredError(f"dvc remote {url} is a directory: an endpoint ({endpoint}) only applies to s3://")
            url = str(Path(url).expanduser().resolve())
        if endpoint and not re.match(r"^https?://[^/\s]+", endpoint):
            raise VidpredError(f"dvc endpoint {endpoint!r} is not an http(s):// URL")
        return cls(url, endpoint)

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    def dvc_config(self) -> dict[str, str]:
        """The ``[remote "…"]`` section DVC needs (no credentials: those come from the environment)."""
        conf = {"url": self.url}
        if self.endpoint_url:
            conf["endpointurl"] = self.endpoint_url
        return conf

    def describe(self) -> str:
        return f"{self.url} (endpoint {self.endpoint_url})" if self.endpoint_url else self.url


def spec_key(dataset: str, size: int | str, clip_len: int, options: dict | None = None, source: str = "",
             crop: str = "center") -> str:
    """``<dataset>-<16 hex>``: the key of a dataset's preparation settings (same settings, same key)."""
    from vidpred.data.store import FORMAT

    spec = {"dataset": dataset, "source": source or "", "size": str(size), "crop": crop or "center",
            "clip_len": int(clip_len), "options": options or {}, "format": FORMAT, "version": SPEC_KEY_VERSION}
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset) or "dataset"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class DataState:
    """What the data stage did: ``action`` ``pulled`` (from the remote) or ``prepared`` (from the source);
    ``previous_md5`` what the remote recorded for the key before ('' if nothing); ``changed`` the data differs
    from that (new data counts as changed); ``train`` whether the tracks after it should train."""

    md5: str
    action: str
    previous_md5: str = ""
    changed: bool = True
    train: bool = True
    pushed: bool = False
    key: str = ""
    remote: str = ""

    def describe(self) -> str:
        where = f" ({self.remote})" if self.remote else ""
        if self.action == "pulled":
            return f"data md5 {self.md5}: pulled from the DVC remote{where}, prepared before with the same settings"
        if not self.remote:
            return f"data md5 {self.md5}: prepared (no DVC remote configured)"
        if not self.previous_md5:
            return f"data md5 {self.md5}: new data, prepared and pushed to the DVC remote{where}"
        if self.changed:
            return (f"data md5 {self.md5}: changed (was {self.previous_md5}), prepared and pushed to the DVC "
                    f"remote{where}")
        then = "retraining anyway (on_unchanged=train)" if self.train else "skipping training (on_unchanged=skip)"
        return f"data md5 {self.md5}: unchanged since the last preparation{where}; {then}"


def decide(md5: str, previous_md5: str, on_unchanged: str = "train") -> tuple[bool, bool]:
    """``(changed, train)`` for freshly prepared data with ``md5`` when the remote recorded ``previous_md5``
    ('' = nothing recorded): new or different data always trains; unchanged data trains only when
    ``on_unchanged`` is ``train``."""
    if on_unchanged not in ON_UNCHANGED:
        raise VidpredError(f"on_unchanged must be one of {', '.join(ON_UNCHANGED)}, got {on_unchanged!r}")
    changed = md5 != previous_md5
    return changed, changed or on_unchanged == "train"


# ------------------------------------------------------------------------------------------ DVC plumbing

def _one_line(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or type(exc).__name__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())


def _remote_error(remote: Remote, action: str, exc: BaseException) -> VidpredError:
    reason = _one_line(exc)
    hint = ""
    if isinstance(exc, PermissionError) or type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        hint = ("; check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or DVC's config)"
                if remote.is_s3 else "")
    elif isinstance(exc, FileNotFoundError) and remote.is_s3 and "bucket" in reason.lower():
        hint = "; create the bucket first"
    return VidpredError(f"dvc remote {remote.describe()}: {action} failed: {reason}{hint}")


def _remote_errors() -> tuple[type[BaseException], ...]:
    from dvc.exceptions import DvcException

    errors: tuple[type[BaseException], ...] = (OSError, DvcException)
    with contextlib.suppress(ImportError):
        from botocore.exceptions import BotoCoreError

        errors += (BotoCoreError,)
    return errors


class _Scratch:
    """A throw-away DVC repository whose default remote is ``remote``."""

    def __init__(self, repo, root: Path, remote: Remote):
        self.repo, self.root, self.remote = repo, root, remote

    def _index_path(self, key: str) -> tuple:
        target = self.repo.cloud.get_remote(_NAME)
        return target.fs, target.fs.join(target.path, *INDEX_DIR.split("/"), f"{key}.dvc")

    def read_index(self, key: str) -> dict | None:
        """The index entry for ``key`` (the parsed ``.dvc`` file) or ``None``."""
        try:
            fs, path = self._index_path(key)
            if not fs.exists(path):
                return None
            text = fs.cat_file(path).decode()
        except _remote_errors() as exc:
            raise _remote_error(self.remote, f"reading index {INDEX_DIR}/{key}.dvc", exc) from None
        try:
            entry = yaml.safe_load(text)
            md5 = str(entry["outs"][0]["md5"])
        except (yaml.YAMLError, KeyError, IndexError, TypeError):
            raise VidpredError(f"dvc remote {self.remote.describe()}: index {INDEX_DIR}/{key}.dvc is corrupted "
                               f"(no outs[0].md5); delete it to prepare the data again") from None
        if not re.fullmatch(r"[0-9a-f]{32}\.dir", md5):
            raise VidpredError(f"dvc remote {self.remote.describe()}: index {INDEX_DIR}/{key}.dvc is corrupted "
                               f"(md5 {md5!r} is not a directory md5); delete it to prepare the data again")
        return entry

    def write_index(self, key: str, entry: dict) -> None:
        try:
            fs, path = self._index_path(key)
            if not self.remote.is_s3:  # (on S3 a prefix needs no creating; s3fs would create a missing bucket)
                fs.makedirs(fs.parent(path), exist_ok=True)
            fs.pipe_file(path, yaml.safe_dump(entry, sort_keys=False).encode())
        except _remote_errors() as exc:
            raise _remote_error(self.remote, f"writing index {INDEX_DIR}/{key}.dvc", exc) from None

    def pull(self, entry: dict, out: Path) -> str:
        """``dvc pull`` the directory ``entry`` records, check its md5, move it to ``out`` (all or nothing)."""
        from vidpred.fsutil import atomic_dir

        md5 = str(entry["outs"][0]["md5"])
        outs = {k: v for k, v in entry["outs"][0].items() if k in ("md5", "size", "nfiles", "hash")}
        (self.root / "data.dvc").write_text(yaml.safe_dump({"outs": [{**outs, "path": "data"}]}, sort_keys=False))
        with atomic_dir(out) as tmp:
            try:
                self.repo.pull(targets=[str(self.root / "data")], remote=_NAME)
            except _remote_errors() as exc:
                raise _remote_error(self.remote, f"pulling data {md5} (the remote misses or cannot serve "
                                                 f"some of its files)", exc) from None
            got = dir_md5(self.root / "data")
            if got != md5:
                raise VidpredError(f"dvc remote {self.remote.describe()}: pulled data hashes to {got}, the "
                                   f"index records {md5}: the remote copy is corrupted")
            tmp.rmdir()
            (self.root / "data").rename(tmp)
        return md5

    def push(self, path: Path) -> dict:
        """``dvc add`` a copy of the directory ``path`` here, ``dvc push`` it; return its ``outs[0]``.
        (Not ``add --to-remote``: on S3 that leaves ``files/md5/.*.tmp`` objects behind.)"""
        try:
            self.repo.add(str(path), out=str(self.root / "data"))
            self.repo.push(targets=[str(self.root / "data")], remote=_NAME)
        except _remote_errors() as exc:
            raise _remote_error(self.remote, f"pushing {path}", exc) from None
        return yaml.safe_load((self.root / "data.dvc").read_text())["outs"][0]


@contextlib.contextmanager
def scratch(remote: Remote, near: str | Path | None = None) -> Iterator[_Scratch]:
    """A throw-away DVC repository (in ``near``, default the temp dir) with ``remote`` as default remote."""
    dvc_env()
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    base = Path(near) if near is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=".vidpred-dvc-", dir=base))
    try:
        try:
            init_log = logging.getLogger("dvc.repo.init")  # "Initialized DVC repository."
            level = init_log.level
            init_log.setLevel(logging.WARNING)
            try:
                Repo.init(str(root), no_scm=True).close()
            finally:
                init_log.setLevel(level)
            with Repo(str(root)) as repo, repo.config.edit() as conf:
                conf["remote"][_NAME] = remote.dvc_config()
                conf["core"]["remote"] = _NAME
        except DvcException as exc:
            raise VidpredError(f"dvc remote {remote.describe()}: {_one_line(exc)}") from None
        with Repo(str(root)) as repo:
            state_dir = repo.site_cache_dir  # DVC's per-repository state (hashes, links, index): ours only
            try:
                yield _Scratch(repo, root, remote)
            finally:
                repo.close()
                shutil.rmtree(state_dir, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------------------ the data stage

def lookup(remote: Remote, key: str) -> str:
    """The md5 the remote's index records for ``key`` ('' when none)."""
    with scratch(remote) as s:
        entry = s.read_index(key)
    return str(entry["outs"][0]["md5"]) if entry else ""


def pull(remote: Remote, key: str, out: str | Path) -> str:
    """Pull the dataset recorded for ``key`` to ``out`` (replacing it); return its md5. Error if none."""
    out = Path(out).resolve()
    with scratch(remote, out.parent) as s:
        entry = s.read_index(key)
        if entry is None:
            raise VidpredError(f"dvc remote {remote.describe()}: no dataset recorded for {key}")
        return s.pull(entry, out)


def push(remote: Remote, key: str, path: str | Path, spec: dict | None = None) -> str:
    """Push the prepared directory ``path`` and record it as ``key``'s data; return its md5."""
    path = Path(path).resolve()
    if not path.is_dir():
        raise VidpredError(f"cannot push {path}: not a directory")
    with scratch(remote, path.parent) as s:
        previous = s.read_index(key)
        return _push(s, key, path, spec, str(previous["outs"][0]["md5"]) if previous else "")


def _push(s: _Scratch, key: str, path: Path, spec: dict | None, previous_md5: str) -> str:
    outs = s.push(path)
    meta = {"spec": spec or {}, "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "previous_md5": previous_md5}
    s.write_index(key, {"outs": [{**outs, "path": "data"}], "meta": {"vidpred": meta}})  # last: data is complete
    return str(outs["md5"])


def any_true(flags) -> bool:
    """Any of ``flags`` true, each a bool or its text ('true'/'false', as a pipeline passes task outputs in a list)."""
    def one(f) -> bool:
        if isinstance(f, bool):
            return f
        text = str(f).strip().lower()
        if text not in ("true", "false"):
            raise VidpredError(f"expected true or false, got {f!r}")
        return text == "true"

    return any([one(f) for f in flags])


def obtain(prepare_fn: Callable[[Path], object], out: str | Path, key: str, remote: Remote | None,
           refresh: bool = False, on_unchanged: str = "train", spec: dict | None = None) -> DataState:
    """The data stage's decision: pull ``key``'s data into ``out`` when the remote has it (unless ``refresh``),
    otherwise run ``prepare_fn(out)`` and push what it wrote when it is new or changed.

    Without a remote the data is simply prepared; ``refresh`` needs a remote (there is nothing to compare
    with otherwise)."""
    out = Path(out).resolve()
    if on_unchanged not in ON_UNCHANGED:
        raise VidpredError(f"on_unchanged must be one of {', '.join(ON_UNCHANGED)}, got {on_unchanged!r}")
    if remote is None:
        if refresh:
            raise VidpredError(f"refresh compares the new data's md5 with the one in a DVC remote, and none is "
                               f"configured (set {REMOTE_ENV} or dvc_remote)")
        prepare_fn(out)
        return DataState(dir_md5(out), "prepared", key=key)
    with scratch(remote, out.parent) as s:
        entry = s.read_index(key)
        previous = str(entry["outs"][0]["md5"]) if entry else ""
        if entry is not None and not refresh:
            md5 = s.pull(entry, out)
            return DataState(md5, "pulled", previous, changed=False, train=True, key=key, remote=remote.describe())
        prepare_fn(out)
        md5 = dir_md5(out)
        changed, train = decide(md5, previous, on_unchanged)
        if changed:
            try:
                _push(s, key, out, spec, previous)
            except BaseException:  # the stage fails: leave no store behind that the remote does not have
                shutil.rmtree(out, ignore_errors=True)
                raise
        return DataState(md5, "prepared", previous, changed, train, pushed=changed, key=key,
                         remote=remote.describe())


__all__ = ["Remote", "DataState", "spec_key", "decide", "any_true", "lookup", "pull", "push", "obtain", "scratch",
           "REMOTE_ENV", "ENDPOINT_ENV", "INDEX_DIR", "ON_UNCHANGED", "SPEC_KEY_VERSION"]
