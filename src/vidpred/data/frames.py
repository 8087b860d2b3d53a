"""Decoding: a video file or a folder of image frames → uint8 RGB frames, centre-cropped square and
resized to SIZE×SIZE (cv2.INTER_AREA), plus the geometry helpers that map ground truth the same way.

* Video files are decoded by PyAV (FFmpeg; frame-threaded decoding) and fall back to OpenCV only if
  PyAV cannot open a file. Frames are converted to RGB at full size, cropped, then area-resized.
* Image-frame folders (png/jpg/jpeg/bmp, sorted naturally: 2.png before 10.png) are read by OpenCV.
* Corrupt, empty or undecodable inputs raise :class:`VidpredError` naming the file.

Coordinates follow the pixel-centre convention: pixel ``i`` spans ``[i-0.5, i+0.5]``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from vidpred.errors import VidpredError

VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp"}
DEFAULT_FPS = 25.0  # assumed: used only when a file/folder states no frame rate
# FFmpeg's own log lines would clutter the one-line errors we raise; OpenCV reads this per capture.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def natural_key(name: str) -> list:
    """Sort key treating digit runs as numbers: frame2 < frame10."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (not hidden), in natural order."""
    return sorted((p for p in Path(folder).iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def crop_box(height: int, width: int) -> tuple[int, int, int]:
    """The centred square ``(y0, x0, side)`` cropped from a height×width frame."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def crop_resize(frame: np.ndarray, size: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Centre-crop ``frame`` (H×W or H×W×C) to a square and resize it to size×size."""
    y0, x0, side = crop_box(frame.shape[0], frame.shape[1])
    sq = frame[y0:y0 + side, x0:x0 + side]
    if side == size:
        return np.ascontiguousarray(sq)
    if interpolation == cv2.INTER_AREA and side < size:
        interpolation = cv2.INTER_LINEAR  # INTER_AREA is meant for shrinking
    return cv2.resize(sq, (size, size), interpolation=interpolation)


def transform_points(points: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
    """Map (x, y) pixel coordinates of a height×width frame into the cropped, resized size×size frame."""
    y0, x0, side = crop_box(height, width)
    scale = size / side
    pts = np.asarray(points, dtype=np.float32).copy()
    pts[..., 0] = (pts[..., 0] - x0 + 0.5) * scale - 0.5
    pts[..., 1] = (pts[..., 1] - y0 + 0.5) * scale - 0.5
    return pts


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """Crop/resize T×H×W integer label masks with nearest-neighbour sampling (labels stay labels)."""
    return np.stack([crop_resize(m, size, cv2.INTER_NEAREST) for m in masks]).astype(masks.dtype, copy=False)


def _check_args(path: Path, size: int, max_frames: int | None, frame_range) -> tuple[int, int | None]:
    if int(size) < 1:
        raise VidpredError(f"decode size must be ≥ 1, got {size}")
    first, last = 0, None  # 0-based first index, 0-based inclusive last index
    if frame_range is not None:
        try:
            start, end = (int(v) for v in frame_range)
        except (TypeError, ValueError):
            raise VidpredError(f"{path}: frame_range must be (start, end), got {frame_range!r}") from None
        if start < 1 or end < start:
            raise VidpredError(f"{path}: frame_range {start}-{end} is invalid (1-based, inclusive, start ≤ end)")
        first, last = start - 1, end - 1
    if max_frames is not None:
        if int(max_frames) < 1:
            raise VidpredError(f"{path}: max_frames must be ≥ 1, got {max_frames}")
        stop = first + int(max_frames) - 1
        last = stop if last is None else min(last, stop)
    return first, last


def decode_video(path: str | Path, size: int, max_frames: int | None = None, frame_range=None,
                 fps: float | None = None) -> tuple[np.ndarray, float]:
    """Decode a video file or an image-frame folder to ``(frames uint8 T×size×size×3 RGB, fps)``.

    ``frame_range=(start, end)`` keeps frames start..end (1-based, inclusive, as in KTH's sequence
    lists); ``max_frames`` caps the count after that. ``fps`` overrides the file's rate (image folders
    have none: default 25).
    """
    frames, rate, _ = decode_with_shape(path, size, max_frames, frame_range, fps)
    return frames, rate


def decode_with_shape(path: str | Path, size: int, max_frames: int | None = None, frame_range=None,
                      fps: float | None = None) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Like :func:`decode_video`, also returning the original (height, width) for ground-truth mapping."""
    path = Path(path)
    first, last = _check_args(path, size, max_frames, frame_range)
    if path.is_dir():
        frames, rate, shape = _decode_images(path, size, first, last)
    elif path.is_file():
        if path.stat().st_size == 0:
            raise VidpredError(f"video file {path} is empty (0 bytes)")
        frames, rate, shape = _decode_file(path, size, first, last)
    else:
        raise VidpredError(f"video {path} does not exist")
    if not frames:
        where = f" in frame range {frame_range[0]}-{frame_range[1]}" if frame_range is not None else ""
        raise VidpredError(f"no frames could be decoded from {path}{where}")
    if fps is not None:
        rate = float(fps)
    if not rate or not np.isfinite(rate) or rate <= 0:
        rate = DEFAULT_FPS
    return np.stack(frames), float(rate), shape


def _decode_images(folder: Path, size: int, first: int, last: int | None):
    files = image_files(folder)
    if not files:
        raise VidpredError(f"frame folder {folder} holds no images ({', '.join(sorted(IMAGE_EXTS))})")
    files = files[first:None if last is None else last + 1]
    frames, shape = [], (0, 0)
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise VidpredError(f"image {f} cannot be read (corrupt or unsupported)")
        shape = img.shape[:2]
        frames.append(crop_resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size))
    return frames, DEFAULT_FPS, shape


def _decode_file(path: Path, size: int, first: int, last: int | None):
    try:
        return _decode_pyav(path, size, first, last)
    except _OpenError as exc:
        try:
            return _decode_opencv(path, size, first, last)
        except _OpenError:
            raise VidpredError(f"video file {path} cannot be opened: {exc}") from None


class _OpenError(Exception):
    """The container could not be opened at all (try another decoder)."""


def _decode_pyav(path: Path, size: int, first: int, last: int | None):
    import av

    av.logging.set_level(av.logging.PANIC)  # errors are reported by us, once, naming the file
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise _OpenError(_av_reason(exc)) from None
    with container:
        if not container.streams.video:
            raise VidpredError(f"file {path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        frames, shape, index = [], (0, 0), -1
        try:
            for frame in container.decode(stream):
                index += 1
                if index < first:
                    continue  # skipped frames are never converted to RGB
                rgb = frame.to_ndarray(format="rgb24")
                shape = rgb.shape[:2]
                frames.append(crop_resize(rgb, size))
                if last is not None and index >= last:
                    break
        except av.FFmpegError as exc:
            raise VidpredError(f"video file {path} is corrupt: decoding failed after {len(frames)} "
                               f"frames ({_av_reason(exc)})") from None
    return frames, float(rate) if rate else 0.0, shape


def _av_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).split(":")[0]


def _decode_opencv(path: Path, size: int, first: int, last: int | None):
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise _OpenError("OpenCV cannot open it either")
        rate = cap.get(cv2.CAP_PROP_FPS) or 0.0
        frames, shape, index = [], (0, 0), -1
        while True:
            ok = cap.grab()
            if not ok:
                break
            index += 1
            if index < first:
                continue
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                raise VidpredError(f"video file {path} is corrupt: frame {index + 1} cannot be decoded")
            shape = bgr.shape[:2]
            frames.append(crop_resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size))
            if last is not None and index >= last:
                break
        return frames, float(rate), shape
    finally:
        cap.release()
