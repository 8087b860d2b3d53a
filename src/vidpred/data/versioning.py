"""Data versioning with DVC: the md5 DVC records for a directory, ``dvc add``, ``dvc push`` / ``dvc pull``.

The prepared default dataset lives in ``data/`` (git-ignored); ``data.dvc`` at the repository root points at
it by its directory md5 (``<hex>.dir``) and the default remote in ``.dvc/config`` holds the bytes. The same
md5 is the ``vidpred.data_md5`` tag of every MLflow run that used the data.

* :func:`dir_md5` computes the md5 with DVC's own hashing (``dvc_data``), so it equals what ``dvc add``
  writes into a ``.dvc`` file, without needing a DVC repository or touching a cache.
* :func:`track`, :func:`push`, :func:`pull` drive DVC's Python API (``dvc.repo.Repo``) in-process.
* :func:`init_repo` runs ``dvc init`` and records a default remote: a local directory, or an S3-compatible
  store (``s3://bucket/prefix`` + endpoint, e.g. MinIO; needs the ``dvc-s3`` plugin, a dependency).
* Shared prepared datasets keyed by their settings (pull instead of prepare, scheduled refresh):
  ``vidpred.data.remote``.
* :func:`prepare_default` / :func:`version_default`: the default dataset (the smoke profile's
  ``default_dataset``) prepared, tracked as ``data.dvc`` and pushed.

Every DVC call runs with ``DVC_NO_ANALYTICS=1`` and a ``DVC_SITE_CACHE_DIR`` (DVC's default is under
``/var/tmp/dvc``; ours is ``$VIDPRED_CACHE/dvc-site`` unless the variable is already set).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import yaml

from vidpred.errors import VidpredError

DEFAULT_REMOTE = "local"


def _default_site_cache() -> Path:
    base = os.environ.get("VIDPRED_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "vidpred") / "dvc-site"


def dvc_env() -> dict[str, str]:
    """Set (in ``os.environ``) and return the variables every DVC call needs."""
    os.environ["DVC_NO_ANALYTICS"] = "1"
    if not os.environ.get("DVC_SITE_CACHE_DIR"):
        os.environ["DVC_SITE_CACHE_DIR"] = str(_default_site_cache())
    Path(os.environ["DVC_SITE_CACHE_DIR"]).mkdir(parents=True, exist_ok=True)
    return {k: os.environ[k] for k in ("DVC_NO_ANALYTICS", "DVC_SITE_CACHE_DIR")}


def dir_md5(path: str | Path) -> str:
    """DVC's md5 of a directory, e.g. ``'3f…9a.dir'`` — the value ``dvc add`` records in the ``.dvc`` file."""
    path = Path(path)
    if not path.is_dir():
        raise VidpredError(f"cannot hash {path}: not a directory")
    dvc_env()
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory(prefix="vidpred-md5-") as tmp:
        # dry_run: hashes only; the throw-away object db is never written to
        _, _, obj = build(HashFileDB(fs, tmp), str(path.resolve()), fs, "md5", dry_run=True)
    return obj.hash_info.value


def recorded_md5(dvc_file: str | Path) -> str:
    """The md5 a ``.dvc`` file records for its (single) output."""
    dvc_file = Path(dvc_file)
    try:
        data = yaml.safe_load(dvc_file.read_text())
        return str(data["outs"][0]["md5"])
    except FileNotFoundError:
        raise VidpredError(f"{dvc_file} does not exist: run `dvc add` on the data first") from None
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        raise VidpredError(f"{dvc_file} is not a valid .dvc file (no outs[0].md5)") from None


@contextlib.contextmanager
def _repo(repo_root: str | Path) -> Iterator:
    dvc_env()
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    errors: tuple[type[BaseException], ...] = (DvcException, OSError)  # OSError: a remote's access errors
    with contextlib.suppress(ImportError):
        from botocore.exceptions import BotoCoreError  # e.g. no S3 credentials at all

        errors += (BotoCoreError,)
    root = Path(repo_root).resolve()
    try:
        with Repo(str(root)) as repo:
            yield repo
    except errors as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        cause = exc.__cause__
        if isinstance(exc, OSError) and cause is not None and str(cause) not in msg:
            msg = f"{msg} ({' '.join(str(cause).split())})"
        raise VidpredError(f"dvc in {root}: {msg}") from None


def init_repo(repo_root: str | Path, remote_dir: str | Path | None = None, remote_name: str = DEFAULT_REMOTE,
              no_scm: bool = False, endpoint_url: str = "") -> Path:
    """``dvc init`` in ``repo_root`` (a git checkout unless ``no_scm``) and, if given, record ``remote_dir``
    as the default remote: a directory (stored relative to ``.dvc/`` when it is inside the repository) or an
    ``s3://bucket/prefix`` URL with, for MinIO and other S3-compatible stores, ``endpoint_url``. Credentials
    are never written: the S3 client reads ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or use
    ``dvc remote modify --local``, which keeps them in the git-ignored ``.dvc/config.local``)."""
    dvc_env()
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    root = Path(repo_root).resolve()
    try:
        if not (root / ".dvc").is_dir():
            Repo.init(str(root), no_scm=no_scm)
        if remote_dir is not None:
            if "://" in str(remote_dir):
                from vidpred.data.remote import Remote

                section = Remote.resolve(str(remote_dir), endpoint_url).dvc_config()
            else:
                remote = Path(remote_dir).resolve()
                # DVC reads a relative url as relative to the cwd and stores it relative to .dvc/config, so a
                # remote inside the repository stays relative (the checkout can move); others stay absolute
                section = {"url": os.path.relpath(remote, Path.cwd()) if remote.is_relative_to(root) else str(remote)}
            with Repo(str(root)) as repo, repo.config.edit() as conf:
                conf["remote"][remote_name] = section
                conf["core"]["remote"] = remote_name
    except DvcException as exc:
        raise VidpredError(f"dvc init in {root}: {' '.join(str(exc).split())}") from None
    return root / ".dvc"


def track(path: str | Path, repo_root: str | Path) -> str:
    """``dvc add path``: cache the data, write ``<path>.dvc``; return the recorded md5."""
    path = Path(path).resolve()
    if not path.exists():
        raise VidpredError(f"cannot track {path}: it does not exist")
    with _repo(repo_root) as repo:
        repo.add(str(path))
    return recorded_md5(path.with_name(path.name + ".dvc"))


def _targets(targets: Iterable[str | Path] | None) -> list[str] | None:
    return [str(Path(t).resolve()) for t in targets] if targets else None


def push(repo_root: str | Path, targets: Iterable[str | Path] | None = None, remote: str | None = None) -> int:
    """``dvc push`` to the default (or named) remote; return the number of files transferred."""
    with _repo(repo_root) as repo:
        return int(repo.push(targets=_targets(targets), remote=remote) or 0)


def pull(repo_root: str | Path, targets: Iterable[str | Path] | None = None, remote: str | None = None) -> dict:
    """``dvc pull`` from the default (or named) remote into the workspace; return DVC's stats."""
    with _repo(repo_root) as repo:
        return dict(repo.pull(targets=_targets(targets), remote=remote) or {})


def prepare_default(out: str | Path, profile: str = "smoke", overrides: Iterable[str] = ()) -> str:
    """Prepare the default dataset — ``datasets.<default_dataset>`` of ``configs/<profile>/pipeline.yaml``,
    exactly as the pipeline's data stage does — at ``out``; return its md5. Same settings, same bytes, same md5."""
    from vidpred.data.prepare import prepare
    from vidpred.profile import load_profile

    spec = load_profile(profile, list(overrides))
    if spec.default_dataset is None:
        raise VidpredError(f"profile {profile} names no default_dataset")
    ds = spec.all_datasets[spec.default_dataset]
    prepare(dataset=ds.dataset, out=out, source=ds.source, size=ds.size, clip_len=ds.clip_len,
            options=dict(ds.options), crop=ds.crop)
    return dir_md5(out)


def version_default(repo_root: str | Path, profile: str = "smoke") -> str:
    """(Re)prepare ``<repo_root>/data`` from the profile, ``dvc add`` it (→ ``data.dvc``), ``dvc push``."""
    root = Path(repo_root).resolve()
    prepare_default(root / "data", profile)
    md5 = track(root / "data", root)
    push(root, [root / "data"])
    return md5


__all__ = ["dvc_env", "dir_md5", "recorded_md5", "init_repo", "track", "push", "pull", "prepare_default",
           "version_default"]
