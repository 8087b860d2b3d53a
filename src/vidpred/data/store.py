"""The clip store: prepared videos as uint8 frame shards plus a parquet manifest (see docs/CONTRACTS.md).

Layout of a store directory::

    store.json                 format, dataset, size, clip_len, options, totals — deterministic JSON
    manifest.parquet           one row per video (video_id, split, num_frames, height, width, fps, source,
                               shard, offset, pixel_mean, pixel_std, has_gt)
    shards/shard-00000.npy     uint8 N×H×W×3 RGB; a video's frames are contiguous inside one shard
    gt/shard-00000.npz         optional ground truth aligned with the shard (e.g. centers N×K×2 float32,
                               masks N×H×W uint8); videos without a key get NaN (float) or 0 (int) rows
    report.json                {"prepared": n, "rejected": [{"path", "reason"}], "too_short": [...]}
    preview.png                the first frames of the first videos, one row per video (for people)

:class:`StoreWriter` writes a store atomically (nothing appears at ``out_dir`` unless every video was
written); the output is byte-identical for identical input (no timestamps, sorted JSON keys, fixed zip
dates, rows in the order videos were added), because DVC compares md5s across runs.
:func:`open_store` reads one back with memory-mapped frames, so nothing is loaded until it is sliced.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vidpred.errors import VidpredError
from vidpred.fsutil import atomic_dir

FORMAT = "vidpred-clipstore/1"
DEFAULT_SHARD_FRAMES = 2048  # assumed: 2048 frames of 64×64 RGB ≈ 25 MB per shard
PREVIEW_VIDEOS, PREVIEW_FRAMES = 8, 8  # assumed: a glanceable grid
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member date: npz bytes must not depend on the clock

MANIFEST_COLUMNS = {
    "video_id": "str", "split": "str", "num_frames": "int64", "height": "int64", "width": "int64",
    "fps": "float64", "source": "str", "shard": "str", "offset": "int64",
    "pixel_mean": "float64", "pixel_std": "float64", "has_gt": "bool",
}


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=2, default=_json_default) + "\n").encode()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (tuple, set)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but with fixed member dates, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def _fill_value(dtype: np.dtype):
    return np.nan if np.issubdtype(dtype, np.floating) else 0


class StoreWriter:
    """Write a clip store atomically. Use as a context manager::

        with StoreWriter(out, {"dataset": "shapes", "size": 64, "clip_len": 16, "options": {}}) as w:
            w.add("v0", "train", frames, fps=25.0, source="shapes", ground_truth={"centers": c})
            w.reject("broken.mp4", "no frames decoded")

    ``frames`` are uint8 T×H×W×3 RGB, already at the store size; every video must share H×W.
    ``ground_truth`` maps names to arrays whose first axis is aligned with the frames (float arrays
    such as ``centers`` T×K×2, integer arrays such as ``masks`` T×H×W). Leaving the block with an
    exception, or with no video added, leaves nothing at ``out_dir``.
    """

    def __init__(self, out_dir: str | Path, meta: dict, shard_frames: int = DEFAULT_SHARD_FRAMES):
        if shard_frames < 1:
            raise VidpredError(f"store shard_frames must be ≥ 1, got {shard_frames}")
        self.out_dir = Path(out_dir)
        self.meta = dict(meta)
        self.shard_frames = int(shard_frames)
        self._ctx = None
        self._tmp: Path | None = None
        self._rows: list[dict] = []
        self._ids: set[str] = set()
        self._rejected: list[dict] = []
        self._pending: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        self._pending_frames = 0
        self._num_shards = 0
        self._hw: tuple[int, int] | None = None
        self._gt_shapes: dict[str, list[int]] = {}
        self._gt_dtypes: dict[str, str] = {}
        self._preview: list[np.ndarray] = []

    # -- context management -------------------------------------------------------------------------
    def __enter__(self) -> "StoreWriter":
        self._ctx = atomic_dir(self.out_dir)
        self._tmp = self._ctx.__enter__()
        (self._tmp / "shards").mkdir()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        ctx, self._ctx = self._ctx, None
        if exc_type is None:
            try:
                self._finish()
            except BaseException:
                ctx.__exit__(*sys.exc_info())
                raise
        return bool(ctx.__exit__(exc_type, exc, tb))

    # -- writing ------------------------------------------------------------------------------------
    def add(self, video_id: str, split: str, frames: np.ndarray, fps: float, source: str,
            ground_truth: dict[str, np.ndarray] | None = None) -> None:
        """Add one video (frames uint8 T×H×W×3) with optional per-frame ground truth."""
        if self._tmp is None:
            raise RuntimeError("StoreWriter.add() called outside its `with` block")
        video_id = str(video_id)
        if video_id in self._ids:
            raise VidpredError(f"video id '{video_id}' appears twice in the dataset")
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise VidpredError(f"video '{video_id}': frames must be non-empty uint8 T×H×W×3, "
                               f"got {frames.dtype} {tuple(frames.shape)}")
        hw = (int(frames.shape[1]), int(frames.shape[2]))
        if self._hw is None:
            self._hw = hw
        elif hw != self._hw:
            raise VidpredError(f"video '{video_id}': frame size {hw} differs from the store's {self._hw}")
        fps = float(fps)
        if not np.isfinite(fps) or fps <= 0:
            raise VidpredError(f"video '{video_id}': fps must be a positive number, got {fps}")
        gt = {}
        for key, arr in (ground_truth or {}).items():
            arr = np.asarray(arr)
            if arr.ndim == 0 or len(arr) != len(frames):
                raise VidpredError(f"video '{video_id}': ground truth '{key}' has {arr.shape[:1]} rows "
                                   f"for {len(frames)} frames")
            if np.issubdtype(arr.dtype, np.floating):
                arr = arr.astype(np.float32, copy=False)
            prev = self._gt_dtypes.setdefault(key, arr.dtype.str)
            if prev != arr.dtype.str:
                raise VidpredError(f"video '{video_id}': ground truth '{key}' is {arr.dtype}, "
                                   f"other videos have {np.dtype(prev)}")
            shape = self._gt_shapes.setdefault(key, list(arr.shape[1:]))
            if len(shape) != arr.ndim - 1:
                raise VidpredError(f"video '{video_id}': ground truth '{key}' has {arr.ndim - 1} "
                                   f"per-frame dims, other videos have {len(shape)}")
            self._gt_shapes[key] = [max(a, b) for a, b in zip(shape, arr.shape[1:])]
            gt[key] = arr
        self._ids.add(video_id)
        f64 = frames.astype(np.float64)  # exact, order-independent statistics
        self._rows.append({
            "video_id": video_id, "split": str(split), "num_frames": len(frames),
            "height": hw[0], "width": hw[1], "fps": fps, "source": str(source),
            "shard": f"shards/shard-{self._num_shards:05d}.npy", "offset": self._pending_frames,
            "pixel_mean": float(f64.mean()), "pixel_std": float(f64.std()), "has_gt": bool(gt),
        })
        del f64
        if len(self._preview) < PREVIEW_VIDEOS:
            self._preview.append(np.array(frames[:PREVIEW_FRAMES]))
        self._pending.append((frames, gt))
        self._pending_frames += len(frames)
        if self._pending_frames >= self.shard_frames:
            self._flush()

    def reject(self, path: str | Path, reason: str) -> None:
        """Record a video that could not be prepared (listed in report.json)."""
        self._rejected.append({"path": str(path), "reason": str(reason)})

    @property
    def num_videos(self) -> int:
        return len(self._rows)

    @property
    def rows(self) -> list[dict]:
        """Manifest rows added so far (copies)."""
        return [dict(r) for r in self._rows]

    @property
    def rejected(self) -> list[dict]:
        return [dict(r) for r in self._rejected]

    # -- internals ----------------------------------------------------------------------------------
    def _flush(self) -> None:
        if not self._pending:
            return
        name = f"shard-{self._num_shards:05d}"
        frames = np.concatenate([f for f, _ in self._pending]) if len(self._pending) > 1 else self._pending[0][0]
        np.save(self._tmp / "shards" / f"{name}.npy", np.ascontiguousarray(frames), allow_pickle=False)
        keys = sorted({k for _, gt in self._pending for k in gt})
        if keys:
            arrays = {}
            for key in keys:
                dtype = np.dtype(self._gt_dtypes[key])
                inner = [max(gt[key].shape[1 + d] if key in gt else 0 for _, gt in self._pending)
                         for d in range(len(self._gt_shapes[key]))]
                out = np.full((len(frames), *inner), _fill_value(dtype), dtype=dtype)
                row = 0
                for f, gt in self._pending:
                    if key in gt:
                        a = gt[key]
                        out[(slice(row, row + len(f)),) + tuple(slice(0, s) for s in a.shape[1:])] = a
                    row += len(f)
                arrays[key] = out
            (self._tmp / "gt").mkdir(exist_ok=True)
            _save_npz(self._tmp / "gt" / f"{name}.npz", arrays)
        self._pending, self._pending_frames = [], 0
        self._num_shards += 1

    def _finish(self) -> None:
        self._flush()
        if not self._rows:
            first = f" (first: {self._rejected[0]['path']}: {self._rejected[0]['reason']})" if self._rejected else ""
            raise VidpredError(f"no video could be prepared for {self.out_dir}{first}")
        manifest = pd.DataFrame(self._rows, columns=list(MANIFEST_COLUMNS)).astype(MANIFEST_COLUMNS)
        manifest.to_parquet(self._tmp / "manifest.parquet", index=False)
        clip_len = self.meta.get("clip_len")
        too_short = [{"video_id": r["video_id"], "num_frames": r["num_frames"]}
                     for r in self._rows if clip_len and r["num_frames"] < int(clip_len)]
        splits = manifest.groupby("split", sort=True)["video_id"].count().to_dict()
        info = {
            **self.meta,
            "format": FORMAT,
            "num_videos": len(self._rows),
            "num_frames": int(manifest["num_frames"].sum()),
            "num_shards": self._num_shards,
            "frame_shape": [self._hw[0], self._hw[1], 3],
            "splits": {k: int(v) for k, v in splits.items()},
            "ground_truth": {k: {"shape": self._gt_shapes[k], "dtype": np.dtype(self._gt_dtypes[k]).name}
                             for k in sorted(self._gt_shapes)},
        }
        (self._tmp / "store.json").write_bytes(_json_bytes(info))
        report = {"prepared": len(self._rows), "rejected": self._rejected, "too_short": too_short}
        (self._tmp / "report.json").write_bytes(_json_bytes(report))
        self._write_preview()

    def _write_preview(self) -> None:
        import cv2

        h, w = self._hw
        grid = np.zeros((len(self._preview) * (h + 2), PREVIEW_FRAMES * (w + 2), 3), np.uint8)
        for i, frames in enumerate(self._preview):
            for j, f in enumerate(frames):
                grid[i * (h + 2):i * (h + 2) + h, j * (w + 2):j * (w + 2) + w] = f
        scale = max(1, 96 // max(h, 1))  # small stores are enlarged so they can be seen
        if scale > 1:
            grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        if ok:
            (self._tmp / "preview.png").write_bytes(png.tobytes())


class Store:
    """A prepared clip store opened for reading. Frames are memory-mapped; ground truth is loaded per
    shard on first use and cached (it is small next to the frames)."""

    def __init__(self, root: Path, meta: dict, manifest: pd.DataFrame):
        self.root = root
        self.meta = meta
        self.manifest = manifest
        self._rows = {vid: i for i, vid in enumerate(manifest["video_id"])}
        self._shards: dict[str, np.ndarray] = {}
        self._gt: dict[str, dict[str, np.ndarray]] = {}

    def __repr__(self) -> str:
        return f"Store({self.root}, {len(self.manifest)} videos)"

    @property
    def report(self) -> dict:
        path = self.root / "report.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def row(self, video_id: str) -> pd.Series:
        try:
            return self.manifest.iloc[self._rows[video_id]]
        except KeyError:
            raise VidpredError(f"store {self.root} has no video '{video_id}'") from None

    def _shard(self, rel: str) -> np.ndarray:
        arr = self._shards.get(rel)
        if arr is None:
            path = self.root / rel
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise VidpredError(f"store shard {path} cannot be read: {exc}") from None
            self._shards[rel] = arr
        return arr

    def frames(self, video_id: str) -> np.ndarray:
        """uint8 T×H×W×3 RGB, a read-only memory map (slice it; nothing is read until then)."""
        row = self.row(video_id)
        off, n = int(row["offset"]), int(row["num_frames"])
        return self._shard(row["shard"])[off:off + n]

    def ground_truth(self, video_id: str) -> dict[str, np.ndarray]:
        """Per-frame ground-truth arrays of one video (empty dict if it has none)."""
        row = self.row(video_id)
        if not bool(row["has_gt"]):
            return {}
        rel = str(Path("gt") / Path(row["shard"]).with_suffix(".npz").name)
        cached = self._gt.get(rel)
        if cached is None:
            path = self.root / rel
            try:
                with np.load(path, allow_pickle=False) as npz:
                    cached = {k: npz[k] for k in npz.files}
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                raise VidpredError(f"store ground truth {path} cannot be read: {exc}") from None
            self._gt[rel] = cached
        off, n = int(row["offset"]), int(row["num_frames"])
        return {k: v[off:off + n] for k, v in cached.items()}

    def video_ids(self, split: str | None = None) -> list[str]:
        m = self.manifest if split is None else self.manifest[self.manifest["split"] == split]
        return list(m["video_id"])


def is_store(path: str | Path) -> bool:
    return (Path(path) / "store.json").is_file()


def read_store_files(path: str | Path) -> tuple[dict, pd.DataFrame]:
    """``store.json`` and the manifest of a store directory, with the format checked — nothing else
    (the validator uses this too, so that a manifest missing columns becomes a failed gate)."""
    root = Path(path)
    if not root.is_dir():
        raise VidpredError(f"clip store {root} does not exist or is not a directory")
    meta_path, manifest_path = root / "store.json", root / "manifest.parquet"
    if not meta_path.is_file():
        raise VidpredError(f"{root} is not a vidpred clip store (no store.json; run `vidpred data prepare`)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise VidpredError(f"{meta_path} is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise VidpredError(f"{meta_path}: unsupported store format {fmt!r} (expected {FORMAT})")
    if not manifest_path.is_file():
        raise VidpredError(f"clip store {root} has no manifest.parquet")
    try:
        manifest = pd.read_parquet(manifest_path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise VidpredError(f"{manifest_path} cannot be read: {type(exc).__name__}") from None
    return meta, manifest


def open_store(path: str | Path) -> Store:
    """Open a clip store directory; a clear VidpredError if it is not one."""
    root = Path(path)
    meta, manifest = read_store_files(root)
    manifest_path = root / "manifest.parquet"
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise VidpredError(f"{manifest_path} lacks columns: {', '.join(missing)}")
    return Store(root.resolve(), meta, manifest)
