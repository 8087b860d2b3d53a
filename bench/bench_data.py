"""Data-path speed, measured in one run on this machine (ratios, not absolute promises).

1. ``prepare`` frames/s on a 640×480, 300-frame H.264 video at size 64 (decode + crop + resize + store);
2. the ``ffmpeg`` CLI decoding the same file to PNGs (``ffmpeg -i v.mp4 -f image2 out/%05d.png``),
   and the ratio prepare / ffmpeg (goal ≥ 1.0×);
3. ``ClipDataset`` clips/s (T=16, batch 8) through a DataLoader with num_workers 0 and 2.

Run: ``.venv/bin/python bench/bench_data.py [--frames 300] [--repeats 3]``.
The test video is a moving textured scene made by ``vidpred.data.synthetic`` and encoded with PyAV.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def make_video(path: Path, num_frames: int) -> None:
    from vidpred.data.synthetic import render_video, write_video

    # render at 480 px square then pad to 640×480 so the centre crop keeps the moving content
    v = render_video(0, size=480, num_frames=num_frames, num_objects=3, pan=True)
    frames = np.zeros((num_frames, 480, 640, 3), np.uint8)
    frames[:, :, 80:560] = v.frames
    frames[:, :, :80] = frames[:, :, 560:] = 40
    write_video(path, frames, fps=25, codec="h264")


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from vidpred.data.loader import ClipDataset
    from vidpred.data.prepare import prepare

    cv2.setNumThreads(1)  # fair to ffmpeg's own threading; cv2 only resizes small crops here
    rows = []
    with tempfile.TemporaryDirectory(prefix="vidpred-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "videos").mkdir()
        video = tmp / "videos" / "bench.mp4"
        make_video(video, args.frames)
        n = args.frames

        t_prep = best_of(lambda: prepare("folder", tmp / "store", source=str(tmp / "videos"), size=64,
                                         clip_len=16, options={"test_fraction": 0.0},
                                         cache_dir=tmp / "cache"), args.repeats)
        rows.append(("prepare (decode→64², store)", n / t_prep, "frames/s"))

        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg:
            def run_ffmpeg():
                out = tmp / "png"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                subprocess.run([ffmpeg, "-v", "error", "-i", str(video), "-f", "image2", str(out / "%05d.png")],
                               check=True)
            t_ff = best_of(run_ffmpeg, args.repeats)
            rows.append(("ffmpeg CLI → PNG", n / t_ff, "frames/s"))
            rows.append(("ratio prepare / ffmpeg", t_ff / t_prep, "× (goal ≥ 1.0)"))
        else:
            rows.append(("ffmpeg CLI → PNG", float("nan"), "UNAVAILABLE (apt-get install -y ffmpeg)"))

        # loader: a store with more frames so an epoch has a few dozen clips
        import torch

        from vidpred.data.frames import decode_video
        from vidpred.data.store import StoreWriter
        from vidpred.preprocess.moso import preprocess_store

        frames, _ = decode_video(video, 64)
        with StoreWriter(tmp / "lstore", {"dataset": "bench", "size": 64, "clip_len": 16, "options": {}}) as w:
            for i in range(8):
                w.add(f"v{i}", "train", frames, 25.0, "bench")
        ds = ClipDataset(tmp / "lstore", "train", clip_len=16, step=4, flip=True)
        for workers in (0, 2):
            dl = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, num_workers=workers)

            def epoch():
                for _ in dl:
                    pass
            t = best_of(epoch, 2)
            rows.append((f"loader T=16 batch 8 workers={workers}", len(ds) / t, "clips/s"))

        # MOSO preprocessing of the same video's frames (8 copies, clips of 16), store written included
        t_moso = best_of(lambda: preprocess_store(tmp / "lstore", tmp / "moso", clip_len=16), args.repeats)
        rows.append(("MOSO preprocessing (64², T=16)", 8 * n / t_moso, "frames/s"))

    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  unit", file=sys.stdout)
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>10.1f}  {unit}")


if __name__ == "__main__":
    main()
