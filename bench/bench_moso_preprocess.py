"""Benchmark: MOSO preprocessing throughput on a synthetic clip store.

Builds a store of synthetic "shapes" videos (64 px by default), then times, in the same run,
(a) just reading every clip's frames from the store (the floor any preprocessing pays) and
(b) the decomposition alone on those clips in memory (``motion_and_mask`` + uint8 object/scene), and
(c) ``preprocess_store`` (read + decompose + write motion/scene/object/mask + manifest + preview).
Prints frames/s of both and their ratio. Usage::

    python bench/bench_moso_preprocess.py [--videos 64] [--frames 48] [--size 64] [--clip-len 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vidpred.data.store import StoreWriter, open_store
from vidpred.data.synthetic import render_video
from vidpred.preprocess.moso import motion_and_mask, preprocess_store


def build_store(path: Path, videos: int, frames: int, size: int, clip_len: int) -> None:
    with StoreWriter(path, {"dataset": "shapes", "size": size, "clip_len": clip_len, "options": {}}) as w:
        for i in range(videos):
            w.add(f"v{i:04d}", "train", render_video(i, size=size, num_frames=frames).frames, fps=25.0, source="shapes")


def read_all(path: Path, clip_len: int) -> int:
    """Read every non-overlapping clip as preprocess_store does (uint8, contiguous); return frames read."""
    store = open_store(path)
    n, checksum = 0, 0
    for vid, total in zip(store.manifest["video_id"], store.manifest["num_frames"]):
        frames = store.frames(vid)
        for s in range(0, int(total) - clip_len + 1, clip_len):
            clip = np.ascontiguousarray(frames[s:s + clip_len])
            checksum += int(clip[0, 0, 0, 0])
            n += clip_len
    return n


def decompose_all(path: Path, clip_len: int) -> int:
    """Decompose every clip in memory (no writes); return frames processed."""
    store = open_store(path)
    n = 0
    for vid, total in zip(store.manifest["video_id"], store.manifest["num_frames"]):
        frames = store.frames(vid)
        starts = list(range(0, int(total) - clip_len + 1, clip_len))
        idx = np.asarray(starts)[:, None] + np.arange(clip_len)[None]
        clips = torch.from_numpy(np.ascontiguousarray(frames[idx])).permute(0, 1, 4, 2, 3)
        motion, mask = motion_and_mask(clips)
        obj = clips * mask[:, :, None]
        scene = clips - obj
        motion.to(torch.float16), scene.sum()
        n += len(starts) * clip_len
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=64)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--clip-len", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench-moso-") as tmp:
        tmp = Path(tmp)
        build_store(tmp / "store", args.videos, args.frames, args.size, args.clip_len)
        read_all(tmp / "store", args.clip_len)  # warm the page cache so both timings read from memory
        t0 = time.perf_counter()
        n_read = read_all(tmp / "store", args.clip_len)
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_dec = decompose_all(tmp / "store", args.clip_len)
        t_dec = time.perf_counter() - t0
        preprocess_store(tmp / "store", tmp / "warm", clip_len=args.clip_len)  # warm-up (imports, first allocs)
        t0 = time.perf_counter()
        summary = preprocess_store(tmp / "store", tmp / "moso", clip_len=args.clip_len)
        t_moso = time.perf_counter() - t0
        n_moso = summary.num_clips * summary.clip_len
    assert n_moso == n_read
    print(f"store: {args.videos} videos × {args.frames} frames at {args.size} px, clip_len {args.clip_len}, "
          f"{args.threads} torch threads")
    print(f"read only         : {n_read / t_read:12.0f} frames/s  ({t_read:.3f} s for {n_read} frames)")
    print(f"decompose (memory): {n_dec / t_dec:12.0f} frames/s  ({t_dec:.3f} s)")
    print(f"MOSO preprocessing: {n_moso / t_moso:12.0f} frames/s  ({t_moso:.3f} s for {n_moso} frames)")
    print(f"ratio preprocessing time / read time: {t_moso / t_read:.1f}×; "
          f"decompose time / read time: {t_dec / t_read:.1f}×")


if __name__ == "__main__":
    main()
