"""Synthetic "shapes" videos: textured sprites bouncing over a textured background, with ground truth.

Each video is fully determined by a seed (numpy ``default_rng``). Sprites are discs, squares and
triangles with a noise or stripe texture that moves with them, in distinct hues; they move with
constant velocity and bounce off the frame edges. With ``pan=True`` the (periodic) background slides
at a constant camera velocity. Everything is rendered directly at the requested size, vectorised over
all frames at once. Ground truth per frame: ``centers`` (K×2, x, y pixels, pixel-centre convention)
and ``masks`` (H×W uint8, 0 background, k for object k; later objects are drawn on top).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vidpred.errors import VidpredError

SHAPES = ("disc", "square", "triangle")


@dataclass
class SyntheticVideo:
    frames: np.ndarray   # uint8 T×S×S×3 RGB
    centers: np.ndarray  # float32 T×K×2 (x, y)
    masks: np.ndarray    # uint8 T×S×S


def _hsv_to_rgb(h: np.ndarray, s: float, v: float) -> np.ndarray:
    """Hues in [0, 1) → float RGB in [0, 1] (vectorised over ``h``)."""
    hsv = np.stack([h * 179.0, np.full_like(h, s * 255), np.full_like(h, v * 255)], -1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0].astype(np.float32) / 255


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Periodic value noise in [0, 1]: a cells×cells random grid upsampled smoothly to size×size."""
    grid = rng.random((cells, cells), dtype=np.float32)
    tiled = np.tile(grid, (3, 3))  # tile so the interpolation wraps around
    big = cv2.resize(tiled, (3 * size, 3 * size), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[size:2 * size, size:2 * size], 0, 1)


def _bounce(p0: np.ndarray, v: np.ndarray, t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Positions of points moving at constant velocity and reflecting off [lo, hi] (closed form)."""
    span = np.maximum(hi - lo, 1e-6)
    u = np.mod(p0 - lo + v * t, 2 * span)
    return lo + np.where(u <= span, u, 2 * span - u)


def render_video(seed, size: int = 64, num_frames: int = 32, num_objects: int = 2,
                 pan: bool = False) -> SyntheticVideo:
    """Render one video; the same ``seed`` (int or sequence of ints) gives identical arrays."""
    if size < 8 or num_frames < 1 or num_objects < 0:
        raise VidpredError(f"shapes: need size ≥ 8, num_frames ≥ 1, num_objects ≥ 0 "
                           f"(got {size}, {num_frames}, {num_objects})")
    rng = np.random.default_rng(seed)
    S, T, K = size, num_frames, num_objects
    t = np.arange(T, dtype=np.float32)

    # background: a muted colour modulated by periodic noise (wraps, so panning never runs out)
    bg_rgb = _hsv_to_rgb(rng.random(1, dtype=np.float32), 0.35, 0.55)[0]
    bg_tex = 0.6 + 0.4 * _smooth_noise(rng, S, max(4, S // 8))
    bg_fine = 0.9 + 0.1 * rng.random((S, S), dtype=np.float32)
    background = bg_rgb * (bg_tex * bg_fine)[..., None]  # S×S×3 in [0, 1]
    if pan:
        cam_v = rng.uniform(0.5, 1.5, 2).astype(np.float32) * S / 64 * rng.choice([-1, 1], 2)
        shift = np.round(cam_v[None] * t[:, None]).astype(np.int64)  # T×2 (dx, dy)
        ys = (np.arange(S)[None, :] + shift[:, 1:2]) % S  # T×S
        xs = (np.arange(S)[None, :] + shift[:, 0:1]) % S
        video = background[ys[:, :, None], xs[:, None, :]]  # T×S×S×3
    else:
        video = np.broadcast_to(background, (T, S, S, 3)).copy()

    masks = np.zeros((T, S, S), np.uint8)
    centers = np.zeros((T, K, 2), np.float32)
    hues = (rng.random() + np.arange(K) / max(K, 1)) % 1.0
    colours = _hsv_to_rgb(hues.astype(np.float32), 0.85, 1.0) if K else np.zeros((0, 3), np.float32)
    grid = np.arange(S, dtype=np.float32)
    for k in range(K):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        r = float(rng.uniform(0.10, 0.18) * S)  # half-size of the sprite
        lo, hi = np.float32(r), np.float32(S - 1 - r)
        p0 = rng.uniform(lo, hi, 2).astype(np.float32)
        speed = rng.uniform(1.0, 2.5) * S / 64
        angle = rng.uniform(0, 2 * np.pi)
        v = np.array([np.cos(angle), np.sin(angle)], np.float32) * speed
        pos = _bounce(p0[None], v[None], t[:, None], lo, hi)  # T×2 (x, y)
        centers[:, k] = pos
        dx = grid[None, None, :] - pos[:, 0, None, None]  # T×1×S
        dy = grid[None, :, None] - pos[:, 1, None, None]  # T×S×1
        if shape == "disc":
            inside = dx ** 2 + dy ** 2 <= r ** 2
        elif shape == "square":
            inside = (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
        else:  # upright triangle, centroid ≈ the centre
            inside = (dy <= r * 0.6) & (dy >= -r + 1.6 * np.abs(dx))
        # texture in object coordinates, so it moves with the sprite
        if rng.random() < 0.5:
            theta, freq = rng.uniform(0, np.pi), rng.uniform(0.6, 1.2) * 2 * np.pi / max(r, 1)
            tex = 0.75 + 0.25 * np.sin((dx * np.cos(theta) + dy * np.sin(theta)) * freq)
        else:
            noise = _smooth_noise(rng, S, max(3, S // 10))
            ix = np.mod(np.round(dx + S / 2), S).astype(np.int64)
            iy = np.mod(np.round(dy + S / 2), S).astype(np.int64)
            tex = 0.6 + 0.4 * noise[iy, ix]
        inside = np.broadcast_to(inside, (T, S, S))
        tex = np.broadcast_to(tex, (T, S, S))
        video[inside] = colours[k] * tex[inside][:, None]
        masks[inside] = k + 1
    frames = np.clip(np.round(video * 255), 0, 255).astype(np.uint8)
    return SyntheticVideo(frames, centers, masks)


def moving_square(num_frames: int, height: int, width: int, side: int = 16, step: int = 4,
                  colour=(255, 255, 255)) -> np.ndarray:
    """A bright square moving right by ``step`` px a frame over black: simple known content (tests, bench)."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    y0 = (height - side) // 2
    for t in range(num_frames):
        x0 = (t * step) % max(width - side, 1)
        frames[t, y0:y0 + side, x0:x0 + side] = colour
    return frames


def write_video(path, frames: np.ndarray, fps: float = 25.0, codec: str = "h264") -> None:
    """Encode uint8 T×H×W×3 RGB frames to a video file (for tests, the bench and the README demo).

    ``codec`` ``h264`` or ``mpeg4`` uses PyAV (FFmpeg); ``mp4v``, ``MJPG``, ``XVID`` or ``FFV1`` uses
    OpenCV's VideoWriter (a FourCC).
    """
    from fractions import Fraction
    from pathlib import Path

    path = Path(path)
    frames = np.asarray(frames, np.uint8)
    t, h, w = frames.shape[:3]
    if codec in ("h264", "mpeg4"):
        import av

        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264" if codec == "h264" else "mpeg4",
                                          rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            if codec == "h264":
                stream.options = {"crf": "18", "preset": "veryfast"}
            else:
                stream.bit_rate = 4_000_000
            for f in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            container.mux(stream.encode())
        return
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(fps), (w, h))
    if not writer.isOpened():
        raise VidpredError(f"OpenCV cannot write {path} with codec {codec}")
    try:
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
