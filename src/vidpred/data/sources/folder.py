"""Source "folder": any local directory of videos or of image-frame folders (``--source DIR``).

Videos are files with extension mp4, avi, mkv, mov or webm (any case), found recursively; a directory
that directly holds image files (png/jpg/jpeg/bmp) is one video made of those frames (DIR itself too,
then named after DIR). Hidden entries
are skipped. Videos come in sorted order of their path relative to DIR, which is also their id.

Splits: each video has a stable number ``h`` in [0, 1), a hash of its relative path (:func:`hash_fraction`),
so a video's split never depends on which other files exist. Without split subfolders a video is test
when ``h < test_fraction``, val when ``test_fraction ≤ h < test_fraction + val_fraction``, else train
(the test videos are the same as before val existed). If DIR has subfolders named ``train``, ``val`` or
``test``, they give the split (files outside them are ignored); when there is no ``val/`` subfolder, the
videos of ``train/`` with ``h < val_fraction`` become val (``-o val_fraction=0`` keeps ``train/`` whole).
Options: ``test_fraction`` (0.2), ``val_fraction`` (0.1, assumed; left at the default it shrinks to what
``test_fraction`` leaves, so ``test_fraction=1`` still means all test), ``fps`` (frame rate of image-frame
folders, default 25).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

from vidpred.data.frames import DEFAULT_FPS, IMAGE_EXTS, natural_key
from vidpred.data.sources.base import RawVideo
from vidpred.errors import VidpredError

VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".mov", ".webm"}
SPLIT_DIRS = ("train", "val", "test")
DEFAULT_TEST_FRACTION = 0.2  # assumed: a common 80/20 split
DEFAULT_VAL_FRACTION = 0.1  # assumed: a common 70/10/20 train/val/test split; 0 gives the old two-way split


def hash_fraction(rel: str) -> float:
    """A stable number in [0, 1) for a relative path (same on every machine and Python run)."""
    return int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big") / 2.0 ** 64


def find_videos(root: Path) -> list[Path]:
    """Video files and image-frame folders under ``root``, sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        here = Path(dirpath)
        visible = [f for f in filenames if not f.startswith(".")]
        if any(Path(f).suffix.lower() in IMAGE_EXTS for f in visible):
            found.append(here)
        found.extend(here / f for f in visible if Path(f).suffix.lower() in VIDEO_EXTS)
    return sorted(found, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def _fraction(options: dict, key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise VidpredError(f"folder option {key} must be a number in [0, 1], got {value!r}")
    return float(value)


class FolderSource:
    name = "folder"
    description = "A local directory of videos (mp4/avi/mkv/mov/webm) or image-frame folders."

    def fetch(self, source: str | None, workdir: Path, options: dict) -> Path:
        if not source:
            raise VidpredError("dataset 'folder' needs --source DIR (a directory of videos)")
        root = Path(source).expanduser()
        if not root.is_dir():
            raise VidpredError(f"--source {source} is not a directory")
        return root.resolve()

    def iter_videos(self, root: Path, options: dict) -> Iterator[RawVideo]:
        root = Path(root)
        frac = _fraction(options, "test_fraction", DEFAULT_TEST_FRACTION)
        val_frac = _fraction(options, "val_fraction", DEFAULT_VAL_FRACTION)
        fps = options.get("fps")
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
            raise VidpredError(f"folder option fps must be a positive number, got {fps!r}")
        split_dirs = [d for d in SPLIT_DIRS if (root / d).is_dir()]
        if not split_dirs and frac + val_frac > 1:  # (with split subfolders test_fraction is unused)
            if "val_fraction" in options:
                raise VidpredError(f"folder options test_fraction + val_fraction must be ≤ 1, "
                                   f"got {frac} + {val_frac}")
            val_frac = 1 - frac  # the default val share takes what test leaves (test_fraction=1: all test)
        videos = find_videos(root)
        if not videos:
            raise VidpredError(f"--source {root} holds no videos ({', '.join(sorted(VIDEO_EXTS))}) "
                               f"or image-frame folders")
        for path in videos:
            rel = path.relative_to(root).as_posix()
            if rel == ".":  # DIR itself is a folder of frames
                rel = root.name
            h = hash_fraction(rel)
            if split_dirs:
                split = rel.split("/", 1)[0]
                if split not in split_dirs or "/" not in rel:
                    continue
                if split == "train" and "val" not in split_dirs and h < val_frac:
                    split = "val"
            else:
                split = "test" if h < frac else "val" if h < frac + val_frac else "train"
            is_frames = path.is_dir()
            yield RawVideo(video_id=rel, split=split, source="folder", path=path,
                           fps=float(fps or DEFAULT_FPS) if is_frames else (float(fps) if fps else None),
                           meta={"relative_path": rel})


SOURCE = FolderSource()
