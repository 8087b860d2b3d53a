"""Registry of the pretrained weights vidpred uses, and the one place that finds or fetches them.

Every pretrained network (LPIPS' AlexNet trunk, the VGG19 perceptual loss, RAFT optical flow, the I3D
network behind FVD) is named here with its file name, download URL and hash. Files live in torch.hub's
cache, ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``), so torchvision and
lpips find the very same files.

``weight_path(name)`` returns the cached file, downloading it first when it is absent (through
:func:`vidpred.data.download.download`: resume, retry, progress) unless ``VIDPRED_OFFLINE=1``. When the file
cannot be had, it raises ONE :class:`VidpredError` that says which file to put in which directory and
where to get it.

Hashes: torchvision embeds the first 8 hex digits of each file's sha256 in its name (``-7be5be79.pth``);
torch.hub checks exactly that prefix, and so do we (the full sha256 is not published by torchvision, so
it is not recorded here). I3D's torchscript file publishes no hash: its sha256 is pinned on first
download in the download module's ``checksums.json``.

Stand-ins: tests (and people without internet) may put a file with the right name but other contents in
place, e.g. a randomly initialised state dict. Such a file fails the hash check and is refused, unless
stand-ins are allowed (``allow_stand_in=True`` or env ``VIDPRED_ALLOW_STANDIN_WEIGHTS=1``); then
:func:`weight_status` reports ``"stand-in"`` so results computed with it can be flagged as not real.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from vidpred.errors import VidpredError


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained file: where it comes from and how to recognise it."""

    name: str
    filename: str
    url: str
    sha256: str | None  # full hash, when published
    hash_prefix: str | None  # leading hex digits of the sha256 (torchvision's file-name convention)
    description: str


_TV = "https://download.pytorch.org/models/"

REGISTRY: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in [
        WeightSpec("alexnet", "alexnet-owt-7be5be79.pth", _TV + "alexnet-owt-7be5be79.pth", None, "7be5be79",
                   "torchvision AlexNet ImageNet (IMAGENET1K_V1); LPIPS v0.1 'alex' trunk"),
        WeightSpec("vgg16", "vgg16-397923af.pth", _TV + "vgg16-397923af.pth", None, "397923af",
                   "torchvision VGG16 ImageNet (IMAGENET1K_V1); LPIPS 'vgg' trunk"),
        WeightSpec("vgg19", "vgg19-dcbb9e9d.pth", _TV + "vgg19-dcbb9e9d.pth", None, "dcbb9e9d",
                   "torchvision VGG19 ImageNet (IMAGENET1K_V1); perceptual losses"),
        # Chairs+Things checkpoints: the training data of the RAFT model the corrwise paper uses.
        WeightSpec("raft_large", "raft_large_C_T_V2-1bb1363a.pth", _TV + "raft_large_C_T_V2-1bb1363a.pth", None,
                   "1bb1363a", "torchvision RAFT large, FlyingChairs+FlyingThings (Raft_Large_Weights.C_T_V2)"),
        WeightSpec("raft_small", "raft_small_C_T_V2-01064c6d.pth", _TV + "raft_small_C_T_V2-01064c6d.pth", None,
                   "01064c6d", "torchvision RAFT small, FlyingChairs+FlyingThings (Raft_Small_Weights.C_T_V2)"),
        WeightSpec("i3d", "i3d_torchscript.pt", "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
                   None, None, "I3D Kinetics-400 torchscript used by StyleGAN-V's FVD (fvd2048_16f)"),
    ]
}


def cache_dir() -> Path:
    """torch.hub's checkpoint directory: ``$TORCH_HOME/hub/checkpoints`` (torch's own default rules)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch")
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def spec(name: str) -> WeightSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise VidpredError(f"unknown pretrained weights '{name}' (known: {', '.join(sorted(REGISTRY))})") from None


def _offline() -> bool:
    return os.environ.get("VIDPRED_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


def _stand_ins_allowed(allow: bool | None) -> bool:
    if allow is not None:
        return allow
    return os.environ.get("VIDPRED_ALLOW_STANDIN_WEIGHTS", "").strip().lower() in {"1", "true", "yes"}


@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    st = path.stat()  # (size, mtime) in the key: a replaced file is hashed again
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def _matches(s: WeightSpec, path: Path) -> bool:
    if s.sha256 is None and s.hash_prefix is None:
        return True  # nothing published to compare with (pinned by the download module instead)
    actual = _sha256(path)
    if s.sha256 is not None:
        return actual == s.sha256
    return actual.startswith(s.hash_prefix)


def _where(s: WeightSpec, directory: Path) -> str:
    return f"put {s.filename} into {directory} (get it from {s.url})"


def _pinned_sha256(url: str) -> str | None:
    """The sha256 pinned for ``url`` in the download module's ``checksums.json`` (None when absent/unreadable)."""
    try:
        from vidpred.data.download import pinned_checksums

        pinned = pinned_checksums().get(url)
    except (ImportError, VidpredError):
        return None
    return pinned.lower() if isinstance(pinned, str) else None


def weight_status(name: str) -> str:
    """``"verified"`` (hash matches), ``"unverified"`` (no published hash), ``"stand-in"`` or ``"missing"``.

    A file without a published hash (I3D) is ``"verified"`` when its sha256 equals the one pinned for its
    URL in the download module's ``checksums.json`` (recorded when :func:`weight_path` downloaded it), and
    ``"unverified"`` otherwise (no pin, or a file that is not the downloaded one, e.g. a test's stand-in).
    """
    s = spec(name)
    path = cache_dir() / s.filename
    if not path.is_file():
        return "missing"
    if s.sha256 is None and s.hash_prefix is None:
        pinned = _pinned_sha256(s.url)
        return "verified" if pinned is not None and _sha256(path) == pinned else "unverified"
    return "verified" if _matches(s, path) else "stand-in"


def weight_path(name: str, download: bool | None = None, allow_stand_in: bool | None = None) -> Path:
    """Path of the cached weight file ``name``; fetch it first if absent (unless offline).

    ``download``: None → download unless env ``VIDPRED_OFFLINE=1``; False → never.
    ``allow_stand_in``: None → env ``VIDPRED_ALLOW_STANDIN_WEIGHTS``; accept a file whose hash does not match.
    """
    s = spec(name)
    directory = cache_dir()
    path = directory / s.filename
    if path.is_file():
        if _matches(s, path):
            return path
        if _stand_ins_allowed(allow_stand_in):
            warnings.warn(f"{path} does not match the published hash: using it as a STAND-IN (results are not real)",
                          stacklevel=2)
            return path
        expected = s.sha256 or f"{s.hash_prefix}…"
        raise VidpredError(
            f"pretrained weights '{name}': {path} has sha256 {_sha256(path)[:16]}…, expected {expected}; "
            f"delete it and {_where(s, directory)}"
        )
    if download is None:
        download = not _offline()
    if not download:
        raise VidpredError(f"pretrained weights '{name}' are missing and downloads are off (VIDPRED_OFFLINE): "
                           f"{_where(s, directory)}")
    try:
        _fetch(s, path)
    except VidpredError as exc:
        raise VidpredError(f"pretrained weights '{name}' could not be downloaded ({exc}): "
                           f"{_where(s, directory)}") from None
    except Exception as exc:  # network stack errors of any kind
        raise VidpredError(f"pretrained weights '{name}' could not be downloaded ({type(exc).__name__}: {exc}): "
                           f"{_where(s, directory)}") from None
    if not _matches(s, path):
        path.unlink(missing_ok=True)
        raise VidpredError(f"pretrained weights '{name}': the file downloaded from {s.url} does not match "
                           f"sha256 prefix {s.hash_prefix}; {_where(s, directory)}")
    return path


def _fetch(s: WeightSpec, dest: Path) -> None:
    """Download via the project's downloader when present, else a plain streamed requests GET."""
    try:
        from vidpred.data.download import download as project_download
    except ImportError:
        project_download = None
    if project_download is not None:
        project_download(s.url, dest, s.sha256)
        return
    import requests
    from tqdm import tqdm

    from vidpred.fsutil import atomic_file

    with requests.get(s.url, stream=True, timeout=30) as resp:
        resp.raise_for_status()
        total = int(resp.headers.get("content-length") or 0) or None
        with atomic_file(dest) as fh, tqdm(total=total, unit="B", unit_scale=True, desc=s.filename) as bar:
            for chunk in resp.iter_content(1 << 20):
                fh.write(chunk)
                bar.update(len(chunk))


def load_state_dict(name: str, download: bool | None = None, allow_stand_in: bool | None = None) -> dict:
    """The state dict stored in weight file ``name`` (on the CPU). For torchscript files use :func:`load_torchscript`."""
    import torch

    path = weight_path(name, download=download, allow_stand_in=allow_stand_in)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise VidpredError(f"pretrained weights '{name}': {path} is not a readable torch state dict "
                           f"({type(exc).__name__}); {_where(spec(name), path.parent)}") from None
    if not isinstance(state, dict):
        raise VidpredError(f"pretrained weights '{name}': {path} holds a {type(state).__name__}, not a state dict")
    return state


def load_torchscript(name: str, download: bool | None = None, allow_stand_in: bool | None = None):
    """A torchscript module stored in weight file ``name`` (e.g. ``i3d``), on the CPU, in eval mode."""
    import torch

    path = weight_path(name, download=download, allow_stand_in=allow_stand_in)
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise VidpredError(f"pretrained weights '{name}': {path} is not a readable torchscript file "
                           f"({type(exc).__name__}); {_where(spec(name), path.parent)}") from None
    return module.eval()


__all__ = ["REGISTRY", "WeightSpec", "cache_dir", "spec", "weight_path", "weight_status", "load_state_dict",
           "load_torchscript"]
