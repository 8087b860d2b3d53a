"""Decoding: a video file or a folder of image frames → uint8 RGB frames cropped and resized to the
store geometry (cv2.INTER_AREA when shrinking), plus the geometry helpers that map ground truth the same way.

Geometry (:class:`Geometry`, target H×W and a crop mode; :func:`parse_size` reads ``N`` or ``HxW``).
Every mode is "crop box A of the source (zero padding outside it), resize to R, crop box B of that":

* ``center`` — the largest centred box of the source with the target aspect W/H (for a square target:
  the centred square of side min(h, w), ``y0 = (h - side) // 2``), resized to H×W. Square targets give
  byte-identical output to the square-only code this replaced.
* ``aspect`` — resize the whole frame by ``s = max(H / h, W / w)`` (the side that constrains the target
  fits exactly, aspect kept) to ``round(h·s) × round(w·s)``, then centre-crop H×W
  (``y0 = (rh - H) // 2``, ``x0 = (rw - W) // 2``). For KITTI raw (1242×375) at 256×512 this is
  1242×375 → 848×256 → centre 512×256, the CorrWise paper's rule; at 64×128 (CPU) 212×64 → 128×64.
  Same field of view as ``center`` up to rounding, but resized before cropping, as the paper does.
* ``full`` — the whole frame resized to H×W (aspect not kept).
* ``bbox`` — a box around per-video keypoints (``Geometry.keypoints``, original pixel coordinates):
  the tight box of every finite keypoint of the *whole video* (one fixed crop per video, so the
  crop does not jitter or cancel the motion to be predicted), dilated by ``margin`` pixels on each
  side (BBC Pose: 150, the landmarks paper's appendix B), then grown symmetrically to the target aspect,
  shifted to lie inside the frame where it fits (centred with black padding where it does not),
  and resized to H×W.

Ground truth follows the same box/resize (:func:`transform_points`, :func:`resize_masks`).

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


CROP_MODES = ("center", "aspect", "full", "bbox")


def parse_size(value) -> tuple[int, int]:
    """``64``/``"64"`` → (64, 64); ``"64x128"`` → (H=64, W=128); a (H, W) pair passes through; anything else is
    one VidpredError naming ``--size`` (the shared parser :func:`vidpred.models.geometry.image_hw`)."""
    from vidpred.models.geometry import image_hw

    return image_hw(value, "--size")


class Geometry:
    """Target ``height``×``width`` and crop mode (see the module docstring). For ``bbox``,
    ``keypoints`` (…×2 array of x, y in the original frame, NaN allowed) and ``margin`` (pixels)."""

    def __init__(self, height: int, width: int, crop: str = "center", keypoints=None, margin: float = 0.0):
        if crop not in CROP_MODES:
            raise VidpredError(f"--crop must be one of {', '.join(CROP_MODES)}, got {crop!r}")
        self.height, self.width, self.crop, self.margin = int(height), int(width), crop, float(margin)
        self.extent = None
        if crop == "bbox":
            pts = np.asarray(keypoints if keypoints is not None else np.zeros((0, 2)), np.float64).reshape(-1, 2)
            pts = pts[np.isfinite(pts).all(axis=1)]
            if not len(pts):
                raise VidpredError("crop 'bbox' needs keypoints and this video has none annotated")
            self.extent = (*pts.min(axis=0), *pts.max(axis=0))  # x_min, y_min, x_max, y_max

    @classmethod
    def square(cls, size: int) -> "Geometry":
        return cls(size, size)

    def __repr__(self) -> str:
        return f"Geometry({self.height}x{self.width}, {self.crop})"

    def plan(self, h: int, w: int) -> "Plan":
        """Where a h×w source frame goes: box A (y0, x0, ch, cw), resize (rh, rw), box B (y0, x0)."""
        H, W = self.height, self.width
        if self.crop == "center":
            if H == W:
                y0, x0, side = crop_box(h, w)
                return Plan((y0, x0, side, side), (H, W), (0, 0), (H, W))
            if w * H > h * W:  # source wider than the target: keep the full height
                ch, cw = h, min(w, max(1, round(h * W / H)))
            else:
                ch, cw = min(h, max(1, round(w * H / W))), w
            return Plan(((h - ch) // 2, (w - cw) // 2, ch, cw), (H, W), (0, 0), (H, W))
        if self.crop == "aspect":
            s = max(H / h, W / w)
            rh, rw = max(H, round(h * s)), max(W, round(w * s))
            return Plan((0, 0, h, w), (rh, rw), ((rh - H) // 2, (rw - W) // 2), (H, W))
        if self.crop == "full":
            return Plan((0, 0, h, w), (H, W), (0, 0), (H, W))
        # bbox: pixel i spans [i-0.5, i+0.5]; the box covers whole pixels around the dilated extent
        x_min, y_min, x_max, y_max = self.extent
        m = self.margin
        left, top = int(np.floor(x_min - m + 0.5)), int(np.floor(y_min - m + 0.5))
        right, bottom = int(np.ceil(x_max + m - 0.5)), int(np.ceil(y_max + m - 0.5))
        cw, ch = right - left + 1, bottom - top + 1
        if cw * H < ch * W:  # too narrow for the target aspect: widen
            grow = int(np.ceil(ch * W / H)) - cw
            left, cw = left - grow // 2, cw + grow
        elif cw * H > ch * W:
            grow = int(np.ceil(cw * H / W)) - ch
            top, ch = top - grow // 2, ch + grow
        left = _fit_offset(left, cw, w)
        top = _fit_offset(top, ch, h)
        return Plan((top, left, ch, cw), (H, W), (0, 0), (H, W))


def _fit_offset(start: int, length: int, limit: int) -> int:
    """Shift a [start, start+length) interval inside [0, limit); centre it when it is longer."""
    if length >= limit:
        return -((length - limit) // 2)
    return min(max(start, 0), limit - length)


class Plan:
    """Crop box ``a`` = (y0, x0, h, w) of the source (zero padding outside the frame), resize to
    ``resize`` = (h, w), then crop ``b`` = (y0, x0) of size ``out`` = (H, W)."""

    def __init__(self, a, resize, b, out):
        self.a, self.resize, self.b, self.out = tuple(a), tuple(resize), tuple(b), tuple(out)

    def apply(self, frame: np.ndarray, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
        y0, x0, ch, cw = self.a
        h, w = frame.shape[:2]
        if y0 >= 0 and x0 >= 0 and y0 + ch <= h and x0 + cw <= w:
            box = frame[y0:y0 + ch, x0:x0 + cw]
        else:  # the box leaves the frame: pad with zeros
            box = np.zeros((ch, cw) + frame.shape[2:], frame.dtype)
            sy, sx = max(0, y0), max(0, x0)
            ey, ex = min(h, y0 + ch), min(w, x0 + cw)
            if ey > sy and ex > sx:
                box[sy - y0:ey - y0, sx - x0:ex - x0] = frame[sy:ey, sx:ex]
        rh, rw = self.resize
        if (ch, cw) != (rh, rw):
            if interpolation == cv2.INTER_AREA and (rh > ch or rw > cw):
                interpolation = cv2.INTER_LINEAR  # INTER_AREA is meant for shrinking
            box = cv2.resize(np.ascontiguousarray(box), (rw, rh), interpolation=interpolation)
        by, bx = self.b
        H, W = self.out
        return np.ascontiguousarray(box[by:by + H, bx:bx + W])

    def points(self, points: np.ndarray) -> np.ndarray:
        """Map (x, y) pixel coordinates of the source into the output frame (pixel-centre convention)."""
        y0, x0, ch, cw = self.a
        rh, rw = self.resize
        by, bx = self.b
        pts = np.asarray(points, dtype=np.float32).copy()
        pts[..., 0] = (pts[..., 0] - x0 + 0.5) * (rw / cw) - 0.5 - bx
        pts[..., 1] = (pts[..., 1] - y0 + 0.5) * (rh / ch) - 0.5 - by
        return pts


def as_geometry(size) -> Geometry:
    """An int / ``"HxW"`` / (H, W) → centre-crop Geometry; a Geometry passes through."""
    if isinstance(size, Geometry):
        return size
    return Geometry(*parse_size(size))


def crop_box(height: int, width: int) -> tuple[int, int, int]:
    """The centred square ``(y0, x0, side)`` cropped from a height×width frame."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def crop_resize(frame: np.ndarray, size, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Crop/resize ``frame`` (H×W or H×W×C) to ``size`` (an int: centre square; ``"HxW"``/(H, W);
    or a :class:`Geometry`)."""
    return as_geometry(size).plan(frame.shape[0], frame.shape[1]).apply(frame, interpolation)


def transform_points(points: np.ndarray, height: int, width: int, size) -> np.ndarray:
    """Map (x, y) pixel coordinates of a height×width frame into the frame :func:`crop_resize` makes."""
    return as_geometry(size).plan(height, width).points(points)


def resize_masks(masks: np.ndarray, size) -> np.ndarray:
    """Crop/resize T×H×W integer label masks with nearest-neighbour sampling (labels stay labels)."""
    geo = as_geometry(size)
    return np.stack([geo.plan(*m.shape[:2]).apply(m, cv2.INTER_NEAREST) for m in masks]).astype(masks.dtype, copy=False)


class _Fitter:
    """Per-frame crop/resize with the plan cached per source shape."""

    def __init__(self, size):
        self.geo = as_geometry(size)
        self._plans: dict = {}

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        shape = frame.shape[:2]
        plan = self._plans.get(shape)
        if plan is None:
            plan = self._plans[shape] = self.geo.plan(*shape)
        return plan.apply(frame)


def _check_args(path: Path, size, max_frames: int | None, frame_range) -> tuple[int, int | None]:
    if not isinstance(size, Geometry):
        try:
            parse_size(size)
        except VidpredError:
            raise VidpredError(f"decode size must be ≥ 1 (N or HxW), got {size}") from None
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


def decode_video(path: str | Path, size, max_frames: int | None = None, frame_range=None,
                 fps: float | None = None) -> tuple[np.ndarray, float]:
    """Decode a video file or an image-frame folder to ``(frames uint8 T×H×W×3 RGB, fps)``; ``size`` is
    an int (centre square), ``"HxW"``/(H, W) (centre crop to that aspect) or a :class:`Geometry`.

    ``frame_range=(start, end)`` keeps frames start..end (1-based, inclusive, as in KTH's sequence
    lists); ``max_frames`` caps the count after that. ``fps`` overrides the file's rate (image folders
    have none: default 25).
    """
    frames, rate, _ = decode_with_shape(path, size, max_frames, frame_range, fps)
    return frames, rate


def decode_with_shape(path: str | Path, size, max_frames: int | None = None, frame_range=None,
                      fps: float | None = None) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Like :func:`decode_video`, also returning the original (height, width) for ground-truth mapping."""
    path = Path(path)
    first, last = _check_args(path, size, max_frames, frame_range)
    size = _Fitter(size)
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


def _decode_images(folder: Path, size: "_Fitter", first: int, last: int | None):
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
        frames.append(size(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))
    return frames, DEFAULT_FPS, shape


def _decode_file(path: Path, size: "_Fitter", first: int, last: int | None):
    try:
        return _decode_pyav(path, size, first, last)
    except _OpenError as exc:
        try:
            return _decode_opencv(path, size, first, last)
        except _OpenError:
            raise VidpredError(f"video file {path} cannot be opened: {exc}") from None


class _OpenError(Exception):
    """The container could not be opened at all (try another decoder)."""


def _decode_pyav(path: Path, size: "_Fitter", first: int, last: int | None):
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
                frames.append(size(rgb))
                if last is not None and index >= last:
                    break
        except av.FFmpegError as exc:
            raise VidpredError(f"video file {path} is corrupt: decoding failed after {len(frames)} "
                               f"frames ({_av_reason(exc)})") from None
    return frames, float(rate) if rate else 0.0, shape


def _av_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).split(":")[0]


def _decode_opencv(path: Path, size: "_Fitter", first: int, last: int | None):
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
            frames.append(size(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            if last is not None and index >= last:
                break
        return frames, float(rate), shape
    finally:
        cap.release()
