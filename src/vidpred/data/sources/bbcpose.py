"""BBC Pose: 20 sign-language videos with annotated upper-body keypoints (local copy only).

The data is behind a registration form (https://www.robots.ox.ac.uk/~vgg/data/pose/), so there is no
download: ``--source DIR`` is required and must hold, for each video number ``n`` (1–20), either

* a folder ``DIR/<n>/`` of frame images (``.jpg``/``.png``, ordered by the number in the file name), or
* a video file ``DIR/<n>.mp4`` (or ``.avi``, ``.mkv``, ``.mov``, ``.webm``, ``.mpg``).

Keypoints (optional): ``DIR/keypoints/<n>.npy``, float array T×K×2 — pixel (x, y) in the original
frame for each of the video's T frames and K joints, ``NaN`` on frames without annotation (convert the
official ``.mat`` annotations to this once). When present it is passed on as
``ground_truth["centers"]`` and the record has ``meta["has_keypoints"] = True``. For frame folders T
must equal the number of images (checked).

Geometry: ``vidpred data prepare --crop bbox`` crops each video around its keypoints — the tight box of
all of the video's annotated keypoints, dilated by ``BBOX_MARGIN`` = 150 px on each side (landmarks
paper, appendix B), then resized (rules in :mod:`vidpred.data.frames`); the keypoints are transformed
with the crop and stored as ``centers``. Videos without a keypoints file are rejected in that mode.

Splits: videos 1–10 ``train``, 11–15 ``val``, the rest ``test`` (IMPLEMENTATION-NOTES); override
with options ``train_videos`` / ``val_videos`` (e.g. ``"1-10"``); unlisted videos are ``test``.
``video_id`` = ``bbcpose-<n, 2 digits>``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np

from vidpred.data.sources.base import RawVideo
from vidpred.data.sources.kth import split_table
from vidpred.errors import VidpredError

REGISTER_URL = "https://www.robots.ox.ac.uk/~vgg/data/pose/"
VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}
LAYOUT = "DIR/<n>/ frame folders or DIR/<n>.mp4 files, n = video number 1-20, optional DIR/keypoints/<n>.npy"


def _frame_key(p: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.stem))


def frame_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=_frame_key)


def find_videos(root: Path) -> dict[int, Path]:
    """Video number → frame folder or video file under ``root``."""
    found: dict[int, Path] = {}
    for p in sorted(Path(root).iterdir()):
        if not p.stem.isdigit():
            continue
        n = int(p.stem)
        if (p.is_dir() and frame_files(p)) or (p.is_file() and p.suffix.lower() in VIDEO_EXTS):
            if n in found:
                raise VidpredError(f"BBC Pose: video {n} appears twice under {root} ({found[n].name}, {p.name})")
            found[n] = p
    return found


BBOX_MARGIN = 150.0  # paper: landmarks appendix B — keypoint bounding box dilated by 150 px each way


class BBCPoseSource:
    name = "bbcpose"
    description = "BBC Pose sign-language videos (local copy; registration required); keypoints as ground truth"
    bbox_keypoints = "centers"  # ground-truth key `--crop bbox` crops around (original-frame pixels)
    bbox_margin = BBOX_MARGIN

    def fetch(self, source: str | None, workdir: Path, options: dict) -> Path:
        if not source:
            raise VidpredError(f"BBC Pose cannot be downloaded automatically: register at {REGISTER_URL}, "
                               f"then pass --source DIR with {LAYOUT}")
        src = Path(source).expanduser()
        if not src.is_dir() or not find_videos(src):
            raise VidpredError(f"BBC Pose --source {src} holds no videos; expected {LAYOUT}")
        return src

    def iter_videos(self, root: Path, options: dict) -> Iterator[RawVideo]:
        root = Path(root)
        splits = split_table(options, {"train": "1-10", "val": "11-15"}, "videos")
        videos = find_videos(root)
        if not videos:
            raise VidpredError(f"no BBC Pose videos under {root}; expected {LAYOUT}")
        for n, path in sorted(videos.items()):
            ground_truth = {}
            kp_file = root / "keypoints" / f"{n}.npy"
            if kp_file.is_file():
                ground_truth["centers"] = _load_keypoints(kp_file, path)
            yield RawVideo(video_id=f"bbcpose-{n:02d}", split=splits.get(n, "test"), source="bbcpose", path=path,
                           ground_truth=ground_truth, meta={"video": n, "has_keypoints": bool(ground_truth)})


def _load_keypoints(kp_file: Path, video: Path) -> np.ndarray:
    try:
        kp = np.load(kp_file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise VidpredError(f"BBC Pose keypoints {kp_file} are not a readable .npy ({type(exc).__name__})") from None
    if kp.ndim != 3 or kp.shape[-1] != 2 or not np.issubdtype(kp.dtype, np.number):
        raise VidpredError(f"BBC Pose keypoints {kp_file} have shape {kp.shape}; expected T×K×2 numbers")
    if video.is_dir():
        n_frames = len(frame_files(video))
        if kp.shape[0] != n_frames:
            raise VidpredError(f"BBC Pose keypoints {kp_file} cover {kp.shape[0]} frames but {video} has {n_frames}")
    return kp.astype(np.float32)


SOURCE = BBCPoseSource()
