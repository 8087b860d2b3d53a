"""The one clip loader every training stage uses: a torch Dataset over a clip store.

``ClipDataset(store_dir, split, clip_len, stride, step, flip, value_range)`` indexes every
``(video, start)`` pair of one split: a clip takes ``clip_len`` frames ``stride`` apart, so it spans
``(clip_len - 1) * stride + 1`` frames; consecutive starts are ``step`` apart (default: the span, i.e.
non-overlapping clips). Videos shorter than the span give no clips.

Item (a dict):
* ``frames`` — float32 tensor T×3×H×W, uint8 values mapped linearly from [0, 255] to ``value_range``
  (default (0.0, 1.0); e.g. (-1.0, 1.0) for tanh decoders);
* ``video_id`` (str), ``start`` (int, index of the clip's first frame in the video);
* ``centers`` — float32 T×K×2 (x, y pixels of the stored frame; NaN for absent objects), only when
  the store has ``centers`` ground truth; K is the store-wide maximum so items batch together.

``flip=True`` mirrors each clip horizontally with probability 1/2 (torch's RNG, so DataLoader worker
seeding applies) and mirrors the centres with it: x → W - 1 - x (pixel-centre convention).
Frames are read from memory-mapped shards per item; the store is never loaded whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vidpred.data.store import open_store
from vidpred.errors import VidpredError


class ClipDataset(Dataset):
    def __init__(self, store_dir: str | Path, split: str = "train", clip_len: int = 16, stride: int = 1,
                 step: int | None = None, flip: bool = False, value_range: tuple[float, float] = (0.0, 1.0)):
        for name, value in (("clip_len", clip_len), ("stride", stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise VidpredError(f"ClipDataset {name} must be an integer ≥ 1, got {value!r}")
        self.span = (clip_len - 1) * stride + 1
        step = self.span if step is None else step
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise VidpredError(f"ClipDataset step must be an integer ≥ 1, got {step!r}")
        lo, hi = (float(v) for v in value_range)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo == hi:
            raise VidpredError(f"ClipDataset value_range must be two different finite numbers, got {value_range!r}")
        self.store = open_store(store_dir)
        self.split, self.clip_len, self.stride, self.step, self.flip = split, clip_len, stride, step, bool(flip)
        self.value_range = (lo, hi)
        m = self.store.manifest
        videos = m[m["split"] == split]
        if videos.empty:
            known = sorted(m["split"].unique())
            raise VidpredError(f"store {self.store.root} has no '{split}' videos (splits: {', '.join(known)})")
        index = [(vid, s) for vid, n in zip(videos["video_id"], videos["num_frames"])
                 for s in range(0, int(n) - self.span + 1, step)]
        if not index:
            raise VidpredError(f"store {self.store.root}: no '{split}' video has the {self.span} frames "
                               f"a clip of {clip_len} frames at stride {stride} needs")
        self.index = index
        gt_info = self.store.meta.get("ground_truth", {})
        self.num_objects = int(gt_info["centers"]["shape"][0]) if "centers" in gt_info else None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        vid, start = self.index[i]
        sl = slice(start, start + self.span, self.stride)
        clip = self.store.frames(vid)[sl]  # reads only this clip from the mmap
        flip = self.flip and bool(torch.rand(()) < 0.5)
        # numpy, not torch, for the per-item arithmetic: torch's intra-op threads only add overhead
        # on arrays this small (25× slower on a busy 2-core machine)
        lo, hi = self.value_range
        frames = clip.transpose(0, 3, 1, 2).astype(np.float32)
        frames *= (hi - lo) / 255.0
        frames += lo
        if flip:
            frames = frames[..., ::-1]
        item = {"frames": torch.from_numpy(np.ascontiguousarray(frames)), "video_id": vid, "start": start}
        if self.num_objects is not None:
            centers = np.full((self.clip_len, self.num_objects, 2), np.nan, np.float32)
            gt = self.store.ground_truth(vid)
            if "centers" in gt:
                c = gt["centers"][sl]
                centers[:, :c.shape[1]] = c
            if flip:
                centers[..., 0] = clip.shape[2] - 1 - centers[..., 0]  # W - 1 - x
            item["centers"] = torch.from_numpy(centers)
        return item
