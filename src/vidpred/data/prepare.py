"""`vidpred data prepare`: a dataset source → a clip store (decode, crop, resize, shard, manifest).

Steps: look the source up in the registry, let it fetch the raw data into the cache directory
(``cache_dir``, else ``$VIDPRED_CACHE``, else ``~/.cache/vidpred``), then for every video it yields:
decode ``path`` items (``vidpred.data.frames``) or take ``frames`` items, crop/resize them to the
store geometry, map ground truth the same way (points transformed, masks nearest-neighbour) and add it
to a :class:`~vidpred.data.store.StoreWriter`, which writes the store atomically.

Geometry: ``size`` is ``N`` (square) or ``"HxW"``; ``crop`` is ``center`` (default), ``aspect``,
``full`` or ``bbox`` — the rules are in :mod:`vidpred.data.frames`. ``store.json`` records
``frame_shape`` [H, W, 3]; ``size`` stays N for square stores and is [H, W] otherwise; ``crop`` (and
``bbox_margin``) are recorded only when not ``center``, so square centre-cropped stores are
byte-identical to those written before non-square geometry existed (their DVC md5 is unchanged).
``bbox`` needs a source that declares ``bbox_keypoints`` (the ground-truth key holding per-frame
keypoints, original pixels) and ``bbox_margin`` (pixels; option ``bbox_margin`` overrides it); each
video is cropped around its keypoints' dilated bounding box, and a video without keypoints is rejected.
Sources with ``uses_prepare_size`` render square at max(H, W) and are then cropped like any other.

A video that cannot be decoded is rejected with one line on stderr and listed in report.json; the rest
are still prepared. If none can be, a VidpredError is raised and nothing is written. Videos shorter
than ``clip_len`` are kept but listed in report.json under ``too_short`` (validation flags them).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from vidpred.data.frames import CROP_MODES, Geometry, decode_with_shape, parse_size
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


def _check_args(dataset, out: Path, size, crop, clip_len, options) -> tuple[int, int]:
    if not isinstance(dataset, str) or not dataset:
        raise VidpredError("--dataset must name a source")
    hw = parse_size(size)
    if min(hw) < MIN_SIZE:
        raise VidpredError(f"--size must be an integer ≥ {MIN_SIZE} per side (N or HxW), got {size!r}")
    if crop not in CROP_MODES:
        raise VidpredError(f"--crop must be one of {', '.join(CROP_MODES)}, got {crop!r}")
    if isinstance(clip_len, bool) or not isinstance(clip_len, int) or clip_len < 1:
        raise VidpredError(f"--clip-len must be an integer ≥ 1, got {clip_len!r}")
    if not isinstance(options, dict):
        raise VidpredError(f"source options must be a mapping, got {type(options).__name__}")
    if out.exists() and not out.is_dir():
        raise VidpredError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not is_store(out):
        raise VidpredError(f"--out {out} is a non-empty directory that is not a clip store; refusing to replace it")
    return hw


def _display_path(raw: RawVideo, root: Path) -> str:
    if raw.path is None:
        return raw.video_id
    try:
        return Path(raw.path).relative_to(root).as_posix()
    except ValueError:
        return str(raw.path)


def video_geometry(raw: RawVideo, size, crop: str = "center", bbox_keypoints: str | None = None,
                   bbox_margin: float = 0.0) -> Geometry:
    """The Geometry of one video: target H×W and crop; for ``bbox``, the video's own keypoints."""
    h, w = parse_size(size)
    if crop != "bbox":
        return Geometry(h, w, crop)
    kp = (raw.ground_truth or {}).get(bbox_keypoints) if bbox_keypoints else None
    if kp is None:
        raise VidpredError(f"video '{raw.video_id}': crop 'bbox' needs keypoints ('{bbox_keypoints}') "
                           f"and this video has none")
    try:
        return Geometry(h, w, "bbox", keypoints=np.asarray(kp, np.float64), margin=bbox_margin)
    except VidpredError as exc:
        raise VidpredError(f"video '{raw.video_id}': {exc}") from None


def load_video(raw: RawVideo, size, crop: str = "center", bbox_keypoints: str | None = None,
               bbox_margin: float = 0.0) -> tuple[np.ndarray, float, dict[str, np.ndarray]]:
    """One RawVideo → (frames uint8 T×H×W×3, fps, ground truth mapped into the stored frame).

    ``size`` is N or "HxW"/(H, W); ``crop`` a mode of :mod:`vidpred.data.frames`."""
    if (raw.path is None) == (raw.frames is None):
        raise VidpredError(f"video '{raw.video_id}': a source must set exactly one of path / frames")
    geo = video_geometry(raw, size, crop, bbox_keypoints, bbox_margin)
    target = (geo.height, geo.width)
    if raw.path is not None:
        frames, fps, (h, w) = decode_with_shape(raw.path, geo, frame_range=raw.meta.get("frame_range"),
                                                fps=raw.fps)
    else:
        src = np.asarray(raw.frames)
        if src.dtype != np.uint8 or src.ndim != 4 or src.shape[-1] != 3 or not len(src):
            raise VidpredError(f"video '{raw.video_id}': frames must be non-empty uint8 T×H×W×3, "
                               f"got {src.dtype} {tuple(src.shape)}")
        h, w = src.shape[1:3]
        plan = geo.plan(h, w)
        frames = src if (h, w) == target and crop != "bbox" else np.stack([plan.apply(f) for f in src])
        fps = float(raw.fps) if raw.fps else 25.0
    plan = geo.plan(h, w)
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
            if not (arr.shape[1:3] == target and (h, w) == target and crop != "bbox"):
                mplan = plan if arr.shape[1:3] == (h, w) else geo.plan(*arr.shape[1:3])
                arr = np.stack([mplan.apply(m, cv2.INTER_NEAREST) for m in arr]).astype(arr.dtype, copy=False)
        elif key == "centers" or (arr.ndim >= 2 and arr.shape[-1] == 2 and np.issubdtype(arr.dtype, np.floating)):
            arr = plan.points(arr)  # any (x, y) point array, e.g. keypoints
        gt[key] = arr
    return frames, fps, gt


def prepare(dataset: str, out: str | Path, source: str | None = None, size: int | str = 64, clip_len: int = 16,
            options: dict | None = None, cache_dir: str | Path | None = None,
            crop: str = "center") -> PrepareSummary:
    """Prepare ``dataset`` into a clip store at ``out`` (see the module docstring)."""
    out = Path(out)
    options = dict(options or {})
    height, width = _check_args(dataset, out, size, crop, clip_len, options)
    src = get_source(dataset)
    bbox_keypoints, bbox_margin = None, 0.0
    if crop == "bbox":
        bbox_keypoints = getattr(src, "bbox_keypoints", None)
        if not bbox_keypoints:
            raise VidpredError(f"--crop bbox needs per-frame keypoints, and source '{dataset}' provides none "
                               f"(use --crop center, aspect or full)")
        bbox_margin = options.pop("bbox_margin", getattr(src, "bbox_margin", 0.0))
        if isinstance(bbox_margin, bool) or not isinstance(bbox_margin, (int, float)) or not bbox_margin >= 0:
            raise VidpredError(f"option bbox_margin must be a number ≥ 0 (pixels), got {bbox_margin!r}")
    workdir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    workdir = workdir / dataset
    workdir.mkdir(parents=True, exist_ok=True)
    root = Path(src.fetch(source, workdir, options))
    # generated sources render at the prepare size unless their own `size` option says otherwise
    # (square at max(H, W) for a non-square store; prepare then crops it like any other frames)
    source_options = ({"size": max(height, width), **options} if getattr(src, "uses_prepare_size", False)
                      else options)
    meta = {"dataset": dataset, "size": height if height == width else [height, width], "clip_len": clip_len,
            "options": options}
    if crop != "center":  # absent for the default, so square centre-cropped stores keep their md5
        meta["crop"] = crop
    if crop == "bbox":
        meta["bbox_margin"] = bbox_margin
    if source and not (str(source).startswith(("http://", "https://"))):
        meta["source"] = Path(source).name  # a name only: absolute paths would break determinism
    elif source:
        meta["source"] = str(source)

    with StoreWriter(out, meta) as writer:
        bar = tqdm(src.iter_videos(root, source_options), desc=f"prepare {dataset}", unit="video",
                   file=sys.stderr, dynamic_ncols=True, disable=None)
        for raw in bar:
            try:
                frames, fps, gt = load_video(raw, (height, width), crop, bbox_keypoints, bbox_margin)
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
