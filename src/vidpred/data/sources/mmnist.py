"""Moving MNIST (Srivastava et al.) test file: uint8 array of shape 20 × 10000 × 64 × 64 (time first).

Fetch
    ``--source`` omitted: ``http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy``
    is downloaded into ``workdir``. ``--source`` may be another URL, a local ``.npy`` file, or a
    directory holding ``mnist_test_seq.npy`` (used in place).

Records
    Sequence ``n`` (the array's second axis) becomes ``video_id = mmnist-<n, 5 digits>`` with
    ``frames`` T×64×64×3: the grey value repeated into R, G and B.

Splits (options; our choice — the file is the only published Moving MNIST set, so we carve it)
    ``test_count`` (default 1000): the LAST this many sequences are ``test``;
    ``val_count`` (default 0): the ones just before them are ``val``; the rest are ``train``.
    ``max_videos`` (default: all) caps the count per split (the first ones of each split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from vidpred.data.download import fetch_file, is_url
from vidpred.data.sources.base import RawVideo
from vidpred.errors import VidpredError

URL = "http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy"
FILE = "mnist_test_seq.npy"


def _count(options: dict, key: str, default: int | None) -> int | None:
    value = options.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VidpredError(f"option {key} must be a non-negative integer, got {value!r}")
    return value


def _find_npy(root: Path) -> Path:
    root = Path(root)
    if root.is_file():
        return root
    if (root / FILE).is_file():
        return root / FILE
    found = sorted(root.glob("*.npy"))
    if len(found) == 1:
        return found[0]
    raise VidpredError(f"no {FILE} under {root}")


class MovingMNISTSource:
    name = "mmnist"
    description = "Moving MNIST test sequences (20 frames, 64x64, grey as RGB); last 1000 test by default"

    def fetch(self, source: str | None, workdir: Path, options: dict) -> Path:
        if source is None or is_url(source):
            return fetch_file(source or URL, Path(workdir))
        src = Path(source).expanduser()
        if not src.exists():
            raise VidpredError(f"Moving MNIST --source {src} does not exist")
        return _find_npy(src)

    def iter_videos(self, root: Path, options: dict) -> Iterator[RawVideo]:
        path = _find_npy(root)
        try:
            data = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise VidpredError(f"Moving MNIST file {path} is not a readable .npy ({' '.join(str(exc).split())[:160]})") from None
        if data.ndim != 4 or data.dtype != np.uint8:
            raise VidpredError(f"Moving MNIST file {path} has shape {data.shape} {data.dtype}; "
                               "expected uint8 T×N×H×W (20×10000×64×64)")
        n = data.shape[1]
        n_test = _count(options, "test_count", 1000)
        n_val = _count(options, "val_count", 0)
        max_videos = _count(options, "max_videos", None)
        if n_test + n_val > n:
            raise VidpredError(f"options test_count={n_test} + val_count={n_val} exceed the {n} sequences in {path}")
        bounds = {"train": (0, n - n_test - n_val), "val": (n - n_test - n_val, n - n_test), "test": (n - n_test, n)}
        for split, (lo, hi) in bounds.items():
            if max_videos is not None:
                hi = min(hi, lo + max_videos)
            for idx in range(lo, hi):
                grey = np.asarray(data[:, idx])  # T×H×W
                frames = np.repeat(grey[..., None], 3, axis=-1)
                yield RawVideo(video_id=f"mmnist-{idx:05d}", split=split, source="mmnist", frames=frames,
                               meta={"index": idx})


SOURCE = MovingMNISTSource()
