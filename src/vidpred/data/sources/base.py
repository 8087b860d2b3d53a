"""The contract every dataset source follows.

A source turns "where the data is" (a URL default, a local path from ``--source``, or nothing for
synthetic sets) into a stream of :class:`RawVideo` records. The store writer (``vidpred.data.store``)
decodes, crops, resizes and shards them; sources never write the store themselves.

* ``fetch(source, workdir, options)`` — make the raw data available locally and return its root:
  download (``vidpred.data.download``) and extract safely (``vidpred.data.archives``) into
  ``workdir``, or check and return a user-supplied local path. Synthetic sources return ``workdir``.
* ``iter_videos(root, options)`` — yield ``RawVideo`` records in a deterministic order.

``options`` is the plain dict of source options from the config/CLI (e.g. ``train_persons``,
``num_videos``, ``seed``); each source documents the keys it reads and their defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np


@dataclass
class RawVideo:
    """One video as a source yields it.

    Exactly one of ``path`` (a video file, or a directory of image frames, decoded later by
    ``vidpred.data.frames``) or ``frames`` (uint8 array T×H×W×3, RGB) is set.
    ``ground_truth`` holds per-frame arrays aligned with the frames, e.g. ``centers`` (T×N×2, pixel
    x, y in the *original* frame), ``masks`` (T×H×W uint8 object ids); the store rescales them.
    """

    video_id: str
    split: str  # "train" | "val" | "test"
    source: str
    path: Path | None = None
    frames: np.ndarray | None = None
    fps: float | None = None
    ground_truth: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    name: str
    description: str

    def fetch(self, source: str | None, workdir: Path, options: dict) -> Path: ...

    def iter_videos(self, root: Path, options: dict) -> Iterator[RawVideo]: ...
