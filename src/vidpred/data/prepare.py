"""`vidpred data prepare`: a dataset source → a clip store (decode, crop, resize, shard, manifest).

Steps: look the source up in the registry, let it fetch the raw data into the cache directory
(``cache_dir``, else ``$VIDPRED_CACHE``, else ``~/.cache/vidpred``), then for every video it yields:
decode ``path`` items (``vidpred.data.frames``) or take ``frames`` items, centre-crop/resize to
SIZE×SIZE, map ground truth the same way (centres scaled, masks nearest-neighbour) and add it to a
:class:`~vidpred.data.store.StoreWriter`, which writes the store atomically.

A video that cannot be decoded is rejected with one line on stderr and listed in report.json; the rest
are still prepared. If none can be, a VidpredError is raised and nothing is written. Videos shorter
than ``clip_len`` are kept but listed in report.json under ``too_short`` (validation flags them).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vidpred.data.frames import crop_resize, decode_with_shape, resize_masks, transform_points
from vidpred.data.sources import get_source
from vidpred.data.sources.base import RawVideo
from vidpred.data.store import StoreWriter, is_store
from vidpred.errors import VidpredError

MIN_SIZE = 16


@dataclass
class PrepareSummary:
    store: Path
    dataset: str
    videos: dict[str, int]  # split → count
    frames: int
    rejected: list[dict] = field(default_factory=list)
    too_short: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        splits = ", ".join(f"{n} {s}" for s, n in sorted(self.videos.items())) or "none"
        lines = [f"prepared {sum(self.videos.values())} videos of '{self.dataset}' ({splits}), "
                 f"{self.frames} frames → {self.store}"]
        if self.rejected:
            lines.append(f"rejected {len(self.rejected)} file(s): "
                         + "; ".join(f"{r['path']} ({r['reason']})" for r in self.rejected[:3])
                         + (" ..." if len(self.rejected) > 3 else "") + "  (see report.json)")
        if self.too_short:
            lines.append(f"{len(self.too_short)} video(s) shorter than clip_len (see report.json)")
        return "\n".join(lines)


def default_cache_dir() -> Path:
    env = os.environ.get("VIDPRED_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vidpred"


def _check_args(dataset, out: Path, size, clip_len, options) -> None:
    if not isinstance(dataset, str) or not dataset:
        raise VidpredError("--dataset must name a source")
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
        raise VidpredError(f"--size must be an integer ≥ {MIN_SIZE}, got {size!r}")
    if isinstance(clip_len, bool) or not isinstance(clip_len, int) or clip_len < 1:
        raise VidpredError(f"--clip-len must be an integer ≥ 1, got {clip_len!r}")
    if not isinstance(options, dict):
        raise VidpredError(f"source options must be a mapping, got {type(options).__name__}")
    if out.exists() and not out.is_dir():
        raise VidpredError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not is_store(out):
        raise VidpredError(f"--out {out} is a non-empty directory that is not a clip store; refusing to replace it")


def _display_path(raw: RawVideo, root: Path) -> str:
    if raw.path is None:
        return raw.video_id
    try:
        return Path(raw.path).relative_to(root).as_posix()
    except ValueError:
        return str(raw.path)


def load_video(raw: RawVideo, size: int) -> tuple[np.ndarray, float, dict[str, np.ndarray]]:
    """One RawVideo → (frames uint8 T×size×size×3, fps, ground truth mapped into the stored frame)."""
    if (raw.path is None) == (raw.frames is None):
        raise VidpredError(f"video '{raw.video_id}': a source must set exactly one of path / frames")
    if raw.path is not None:
        frames, fps, (h, w) = decode_with_shape(raw.path, size, frame_range=raw.meta.get("frame_range"),
                                                fps=raw.fps)
    else:
        src = np.asarray(raw.frames)
        if src.dtype != np.uint8 or src.ndim != 4 or src.shape[-1] != 3 or not len(src):
            raise VidpredError(f"video '{raw.video_id}': frames must be non-empty uint8 T×H×W×3, "
                               f"got {src.dtype} {tuple(src.shape)}")
        h, w = src.shape[1:3]
        frames = src if (h, w) == (size, size) else np.stack([crop_resize(f, size) for f in src])
        fps = float(raw.fps) if raw.fps else 25.0
    gt = {}
    for key, arr in (raw.ground_truth or {}).items():
        arr = np.asarray(arr)
        if len(arr) < len(frames):
            raise VidpredError(f"video '{raw.video_id}': ground truth '{key}' covers {len(arr)} of "
                               f"{len(frames)} frames")
        arr = arr[:len(frames)]
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all() and key != "centers":
            raise VidpredError(f"video '{raw.video_id}': ground truth '{key}' holds NaN/inf")
        if key == "masks":
            arr = arr if arr.shape[1:3] == (size, size) and (h, w) == (size, size) else resize_masks(arr, size)
        elif key == "centers" or (arr.ndim >= 2 and arr.shape[-1] == 2 and np.issubdtype(arr.dtype, np.floating)):
            arr = transform_points(arr, h, w, size)  # any (x, y) point array, e.g. keypoints
        gt[key] = arr
    return frames, fps, gt


def prepare(dataset: str, out: str | Path, source: str | None = None, size: int = 64, clip_len: int = 16,
            options: dict | None = None, cache_dir: str | Path | None = None) -> PrepareSummary:
    """Prepare ``dataset`` into a clip store at ``out`` (see the module docstring)."""
    out = Path(out)
    options = dict(options or {})
    _check_args(dataset, out, size, clip_len, options)
    src = get_source(dataset)
    workdir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    workdir = workdir / dataset
    workdir.mkdir(parents=True, exist_ok=True)
    root = Path(src.fetch(source, workdir, options))
    # generated sources render at the prepare size unless their own `size` option says otherwise
    source_options = {"size": size, **options} if getattr(src, "uses_prepare_size", False) else options
    meta = {"dataset": dataset, "size": size, "clip_len": clip_len, "options": options}
    if source and not (str(source).startswith(("http://", "https://"))):
        meta["source"] = Path(source).name  # a name only: absolute paths would break determinism
    elif source:
        meta["source"] = str(source)

    with StoreWriter(out, meta) as writer:
        bar = tqdm(src.iter_videos(root, source_options), desc=f"prepare {dataset}", unit="video",
                   file=sys.stderr, dynamic_ncols=True, disable=None)
        for raw in bar:
            try:
                frames, fps, gt = load_video(raw, size)
            except VidpredError as exc:
                where = _display_path(raw, root)
                tqdm.write(f"rejected {where}: {exc}", file=sys.stderr)
                writer.reject(where, str(exc))
                continue
            writer.add(raw.video_id, raw.split, frames, fps, raw.source or dataset, ground_truth=gt or None)
            bar.set_postfix_str(f"{writer.num_videos} ok", refresh=False)
        bar.close()
        rows, rejected = writer.rows, writer.rejected
    splits: dict[str, int] = {}
    for r in rows:
        splits[r["split"]] = splits.get(r["split"], 0) + 1
    too_short = [{"video_id": r["video_id"], "num_frames": r["num_frames"]} for r in rows
                 if r["num_frames"] < clip_len]
    return PrepareSummary(store=out.resolve(), dataset=dataset, videos=splits,
                          frames=sum(r["num_frames"] for r in rows), rejected=rejected, too_short=too_short)
