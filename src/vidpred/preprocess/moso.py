"""MOSO preprocessing: split clips into motion, scene and object videos (MOSO appendix A, Algorithm 1).

The math (:func:`decompose`, vectorised over whole clips ``N×T×C×H×W`` with values in [0, 1]):

* ``motion_t = 2·x_t − x_prev − x_next`` — a signed second difference, range [-2, 2]. In the default
  ("fixed first frame") variant ``x_prev`` is the clip's first frame for every t (so ``motion_0 = x_0 − x_1``),
  and ``x_next = x_{t+1}``. For the clip's last frame ``x_next`` is the video frame right after the clip
  when the caller passes it (``next_frames``); otherwise the last frame is repeated, so
  ``motion_{T-1} = x_{T-1} − x_0``. (The authors' dataset code reads one frame before and one after each
  clip; we keep the clip's own first frame, as in the notes, and use the following frame when it exists.)
* ``mask = lower ≤ max_c |motion| ≤ upper`` per pixel (both ends inclusive, as in the authors' code);
  paper: 0.1 and 0.9 "separate the majority of object appearances" (appendix A, Fig. 6).
* ``object = mask · x`` and ``scene = x − object``, so ``scene + object == x`` exactly.

The store stage (:func:`preprocess_store`) reads a clip store (``vidpred.data.store``), cuts every video
into non-overlapping clips of ``clip_len`` frames (starts 0, T, 2T, …; a tail shorter than T is dropped)
and writes, atomically, a MOSO store::

    <out>/moso.json         {"format": "vidpred-moso/1", "source_store", "clip_len", "lower", "upper",
                             "variant", "num_clips", "splits": {split: clips}, "height", "width",
                             "arrays": {...}} (no timestamps)
    <out>/manifest.parquet  one row per clip: clip (int64, row in the arrays), video_id, split (str: the
                            video's split in the clip store — train / val / test carried through),
                            start (int64, first frame in the video), has_next (bool: motion of the last
                            frame used the real next frame), mask_fraction (float64)
    <out>/motion.npy        float16 N×T×3×H×W in [-2, 2]
    <out>/scene.npy         uint8   N×T×3×H×W   (frame − object, in 0..255)
    <out>/object.npy        uint8   N×T×3×H×W   (mask · frame)
    <out>/mask.npy          bool    N×T×H×W
    <out>/preview.png       strips of frames / motion / scene / object / mask for a few clips

The frame itself is ``scene + object`` (exact in uint8), so it is not stored twice. :func:`load_moso_store`
opens the result (arrays memory-mapped); :class:`MosoClipDataset` serves it to the MOSO-VQVAE stage.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidpred.errors import VidpredError
from vidpred.fsutil import atomic_dir

FORMAT = "vidpred-moso/1"
VARIANT = "fixed-first-frame"
PREVIEW_CLIPS = 3  # clips shown in preview.png
PREVIEW_FRAMES = 8  # frames per strip in preview.png
PREVIEW_LABEL_WIDTH = 72  # px of row labels left of the strips
ARRAYS = ("motion", "scene", "object", "mask")


def check_thresholds(lower: float, upper: float) -> None:
    """Raise VidpredError unless 0 ≤ lower < upper ≤ 1 (finite numbers)."""
    try:
        lo, up = float(lower), float(upper)
    except (TypeError, ValueError):
        raise VidpredError(f"MOSO thresholds must be numbers, got lower={lower!r}, upper={upper!r}") from None
    if not (np.isfinite(lo) and np.isfinite(up)):
        raise VidpredError(f"MOSO thresholds must be finite, got lower={lo}, upper={up}")
    if not (0.0 <= lo < up <= 1.0):
        raise VidpredError(f"MOSO thresholds need 0 <= lower < upper <= 1, got lower={lo}, upper={up}")


def _as_float_tensor(x: Any, name: str):
    import torch

    if isinstance(x, torch.Tensor):
        t = x
    else:
        arr = np.asarray(x)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if not t.is_floating_point():
        raise VidpredError(f"MOSO {name} must be uint8 or float in [0, 1], got dtype {t.dtype}")
    t = t.float()
    if not torch.isfinite(t).all():
        raise VidpredError(f"MOSO {name} contain NaN or infinite values")
    return t


def decompose(clips: Any, lower: float = 0.1, upper: float = 0.9, next_frames: Any = None) -> dict:
    """Decompose clips into motion / scene / object videos and the object mask.

    ``clips``: N×T×C×H×W, float in [0, 1] or uint8 (divided by 255); numpy or torch.
    ``next_frames``: optional N×C×H×W, the frame following each clip (see the module docstring).
    Returns float32 torch tensors ``motion`` (N×T×C×H×W, [-2, 2]), ``scene`` and ``object``
    (N×T×C×H×W, [0, 1], ``scene + object == clips``) and a bool ``mask`` (N×T×H×W).
    """
    x = _as_float_tensor(clips, "clips")
    motion, mask = motion_and_mask(x, lower, upper, next_frames)
    obj = x * mask[:, :, None]
    return {"motion": motion, "scene": x - obj, "object": obj, "mask": mask}


def motion_and_mask(x: Any, lower: float = 0.1, upper: float = 0.9, next_frames: Any = None):
    """The core of :func:`decompose`: (motion float32 N×T×C×H×W, mask bool N×T×H×W) of float clips ``x``."""
    check_thresholds(lower, upper)
    x = _as_float_tensor(x, "clips")
    if x.ndim != 5:
        raise VidpredError(f"MOSO clips must be N×T×C×H×W, got shape {tuple(x.shape)}")
    if x.shape[1] < 2:
        raise VidpredError(f"MOSO clips need at least 2 frames, got T={x.shape[1]}")
    if next_frames is None:
        last = x[:, -1]
    else:
        last = _as_float_tensor(next_frames, "next_frames")
        if tuple(last.shape) != (x.shape[0], *x.shape[2:]):
            raise VidpredError(f"MOSO next_frames must be N×C×H×W = {(x.shape[0], *x.shape[2:])}, "
                               f"got {tuple(last.shape)}")
    motion = 2.0 * x
    motion -= x[:, :1]  # x_prev: the clip's first frame
    motion[:, :-1] -= x[:, 1:]  # x_next
    motion[:, -1] -= last
    peak = motion.abs().amax(dim=2)
    mask = (peak >= lower) & (peak <= upper)
    return motion, mask


# ----------------------------------------------------------------------------------------------------
# Store stage


@dataclass
class MosoSummary:
    """What :func:`preprocess_store` wrote."""

    out: Path
    num_clips: int
    clips_per_split: dict
    clip_len: int
    lower: float
    upper: float
    mask_fraction: float
    skipped_videos: list = field(default_factory=list)

    def describe(self) -> str:
        splits = ", ".join(f"{k}: {v}" for k, v in sorted(self.clips_per_split.items()))
        lines = [
            f"MOSO store {self.out}: {self.num_clips} clips of {self.clip_len} frames ({splits})",
            f"object band [{self.lower}, {self.upper}]; mean object-mask fraction {self.mask_fraction:.3f}",
            f"preview: {self.out / 'preview.png'}",
        ]
        if self.skipped_videos:
            lines.append(f"skipped {len(self.skipped_videos)} video(s) shorter than one clip: "
                         + ", ".join(self.skipped_videos[:10]) + (" …" if len(self.skipped_videos) > 10 else ""))
        return "\n".join(lines)


def _plan_clips(manifest, clip_len: int) -> tuple[list[tuple[str, str, int]], list[str]]:
    """Non-overlapping clip starts per video, in manifest order: [(video_id, split, start)], skipped ids."""
    plan, skipped = [], []
    for row in manifest.itertuples(index=False):
        n = int(row.num_frames)
        starts = range(0, n - clip_len + 1, clip_len)
        if not starts:
            skipped.append(str(row.video_id))
        plan.extend((str(row.video_id), str(row.split), s) for s in starts)
    return plan, skipped


def preprocess_store(input: str | Path, out: str | Path, clip_len: int | None = None,
                     lower: float = 0.1, upper: float = 0.9, batch_clips: int = 16) -> MosoSummary:
    """Decompose every non-overlapping clip of a clip store; write a MOSO store to ``out`` atomically."""
    import pandas as pd
    import torch
    from tqdm import tqdm

    from vidpred.data.store import open_store

    check_thresholds(lower, upper)
    store = open_store(input)
    clip_len = int(clip_len if clip_len is not None else store.meta.get("clip_len", 0))
    if clip_len < 2:
        raise VidpredError(f"MOSO clip_len must be >= 2, got {clip_len} (store {input})")
    manifest = store.manifest
    plan, skipped = _plan_clips(manifest, clip_len)
    if not plan:
        raise VidpredError(f"store {input} has no video with at least clip_len={clip_len} frames")
    height, width = int(manifest["height"].iloc[0]), int(manifest["width"].iloc[0])
    n = len(plan)
    shape = (n, clip_len, 3, height, width)

    rows = []
    with atomic_dir(out) as tmp:
        arrays = {
            "motion": np.lib.format.open_memmap(tmp / "motion.npy", "w+", np.float16, shape),
            "scene": np.lib.format.open_memmap(tmp / "scene.npy", "w+", np.uint8, shape),
            "object": np.lib.format.open_memmap(tmp / "object.npy", "w+", np.uint8, shape),
            "mask": np.lib.format.open_memmap(tmp / "mask.npy", "w+", np.bool_, (n, clip_len, height, width)),
        }
        bar = tqdm(total=n * clip_len, unit="frame", desc="moso", file=sys.stderr, disable=None)
        i = 0
        while i < n:
            # a batch of clips from one video (the video's frames are one mmap)
            vid = plan[i][0]
            j = i
            while j < n and j - i < batch_clips and plan[j][0] == vid:
                j += 1
            frames = store.frames(vid)  # T×H×W×3 uint8
            starts = [plan[k][2] for k in range(i, j)]
            idx = np.asarray(starts)[:, None] + np.arange(clip_len)[None]
            clips = torch.from_numpy(np.ascontiguousarray(frames[idx])).permute(0, 1, 4, 2, 3)  # N×T×3×H×W
            has_next = [s + clip_len < len(frames) for s in starts]
            nxt_idx = [s + clip_len if h else s + clip_len - 1 for s, h in zip(starts, has_next)]
            nxt = torch.from_numpy(np.ascontiguousarray(frames[nxt_idx])).permute(0, 3, 1, 2)
            motion, mask = motion_and_mask(clips, lower, upper, next_frames=nxt)
            obj_u8 = clips * mask[:, :, None]  # exact in uint8: mask · frame, as decompose() in [0, 1]
            arrays["motion"][i:j] = motion.to(torch.float16).numpy()
            arrays["object"][i:j] = obj_u8.numpy()
            arrays["scene"][i:j] = (clips - obj_u8).numpy()
            arrays["mask"][i:j] = mask.numpy()
            fractions = mask.float().mean(dim=(1, 2, 3)).tolist()
            for k, (s, h, f) in enumerate(zip(starts, has_next, fractions)):
                rows.append({"clip": i + k, "video_id": vid, "split": plan[i + k][1], "start": s,
                             "has_next": bool(h), "mask_fraction": float(f)})
            bar.update((j - i) * clip_len)
            i = j
        bar.close()
        for arr in arrays.values():
            arr.flush()
        del arrays

        table = pd.DataFrame(rows).astype({"clip": "int64", "start": "int64", "has_next": "bool",
                                           "mask_fraction": "float64"})
        table.to_parquet(tmp / "manifest.parquet", index=False)
        meta = {
            "format": FORMAT,
            "source_store": str(Path(input).resolve()),
            "source_meta": {k: store.meta.get(k) for k in ("format", "dataset", "size", "clip_len")},
            "clip_len": clip_len,
            "lower": float(lower),
            "upper": float(upper),
            "variant": VARIANT,
            "num_clips": n,
            "splits": {str(k): int(v) for k, v in table.groupby("split").size().items()},
            "height": height,
            "width": width,
            "arrays": {"motion": "float16 N×T×3×H×W [-2, 2]", "scene": "uint8 N×T×3×H×W",
                       "object": "uint8 N×T×3×H×W", "mask": "bool N×T×H×W"},
            "skipped_videos": skipped,
        }
        (tmp / "moso.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        _write_preview(tmp, table)

    per_split = table.groupby("split").size().to_dict()
    return MosoSummary(out=Path(out), num_clips=n, clips_per_split={str(k): int(v) for k, v in per_split.items()},
                       clip_len=clip_len, lower=float(lower), upper=float(upper),
                       mask_fraction=float(table["mask_fraction"].mean()), skipped_videos=skipped)


def _write_preview(root: Path, table) -> None:
    """preview.png: for a few clips, five labelled rows — frames, motion (0.5 + m/2), scene, object, mask."""
    import torch
    from PIL import Image, ImageDraw
    from torchvision.utils import make_grid

    mo = load_moso_store(root)
    n = len(table)
    picks = sorted(set(np.linspace(0, n - 1, min(PREVIEW_CLIPS, n)).round().astype(int).tolist()))
    rows, labels = [], []
    for c in picks:
        item = mo.clip(c)
        t = min(PREVIEW_FRAMES, item["frames"].shape[0])
        rows += [item["frames"][:t], (0.5 + 0.5 * item["motion"][:t]).clamp(0, 1), item["scene"][:t],
                 item["object"][:t], item["mask"][:t, None].float().expand(-1, 3, -1, -1)]
        clip_name = f"{table['video_id'].iloc[c]}@{int(table['start'].iloc[c])}"
        labels += [clip_name, "motion", "scene", "object", "mask"]
    grid = make_grid(torch.cat(rows), nrow=t, padding=1, pad_value=1.0)
    pixels = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    canvas = Image.new("RGB", (PREVIEW_LABEL_WIDTH + pixels.shape[1], pixels.shape[0]), "white")
    canvas.paste(Image.fromarray(pixels), (PREVIEW_LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(canvas)
    row_h = mo.meta["height"] + 1
    for r, text in enumerate(labels):
        draw.text((2, 1 + r * row_h + max(0, row_h // 2 - 6)), text[:12], fill="black")
    canvas.save(root / "preview.png")


# ----------------------------------------------------------------------------------------------------
# Reading a MOSO store


@dataclass
class MosoStore:
    """An opened MOSO store: ``manifest`` (DataFrame of clips), ``meta`` (moso.json), mmapped ``arrays``."""

    root: Path
    meta: dict
    manifest: Any
    arrays: dict

    def __len__(self) -> int:
        return int(self.meta["num_clips"])

    def clip(self, index: int) -> dict:
        """Clip ``index`` as float32 tensors: frames/scene/object T×3×H×W in [0, 1], motion in [-2, 2], mask T×H×W bool."""
        import torch

        scene = torch.from_numpy(np.array(self.arrays["scene"][index]))
        obj = torch.from_numpy(np.array(self.arrays["object"][index]))
        return {
            "frames": (scene + obj).float() / 255.0,
            "scene": scene.float() / 255.0,
            "object": obj.float() / 255.0,
            "motion": torch.from_numpy(np.array(self.arrays["motion"][index])).float(),
            "mask": torch.from_numpy(np.array(self.arrays["mask"][index])),
        }


def load_moso_store(directory: str | Path) -> MosoStore:
    """Open a MOSO store written by :func:`preprocess_store`; VidpredError if it is missing or broken."""
    import pandas as pd

    root = Path(directory)
    meta_path = root / "moso.json"
    if not meta_path.is_file():
        raise VidpredError(f"{root} is not a MOSO store (no moso.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        raise VidpredError(f"{meta_path} is not valid JSON") from None
    if meta.get("format") != FORMAT:
        raise VidpredError(f"{meta_path}: unknown format {meta.get('format')!r} (expected {FORMAT})")
    try:
        manifest = pd.read_parquet(root / "manifest.parquet")
    except Exception as exc:  # pyarrow raises several types for missing/corrupt files
        raise VidpredError(f"{root / 'manifest.parquet'} cannot be read: {type(exc).__name__}") from None
    n, t, h, w = meta["num_clips"], meta["clip_len"], meta["height"], meta["width"]
    expected = {"motion": (n, t, 3, h, w), "scene": (n, t, 3, h, w), "object": (n, t, 3, h, w), "mask": (n, t, h, w)}
    arrays = {}
    for name in ARRAYS:
        path = root / f"{name}.npy"
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise VidpredError(f"{path} cannot be read: {exc}") from None
        if arr.shape != expected[name]:
            raise VidpredError(f"{path} has shape {arr.shape}, expected {expected[name]}")
        arrays[name] = arr
    if len(manifest) != n:
        raise VidpredError(f"{root / 'manifest.parquet'} has {len(manifest)} rows, moso.json says {n} clips")
    return MosoStore(root=root, meta=meta, manifest=manifest, arrays=arrays)


try:  # a torch Dataset for the MOSO-VQVAE stage
    from torch.utils.data import Dataset as _Dataset
except ImportError:  # pragma: no cover
    _Dataset = object


class MosoClipDataset(_Dataset):
    """Clips of one split of a MOSO store; item = dict of :meth:`MosoStore.clip` plus ``video_id``, ``start``."""

    def __init__(self, directory: str | Path, split: str = "train"):
        self.store = load_moso_store(directory)
        rows = self.store.manifest[self.store.manifest["split"] == split]
        if rows.empty:
            have = ", ".join(sorted(map(str, self.store.manifest["split"].unique()))) or "none"
            raise VidpredError(f"MOSO store {directory} has no clips in split '{split}' (splits: {have})")
        self.rows = rows.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows.iloc[i]
        item = self.store.clip(int(row["clip"]))
        item.update(video_id=str(row["video_id"]), start=int(row["start"]))
        return item
