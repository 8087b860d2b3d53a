"""The CorrWise toy scene (paper §3.3, Fig. 2): a car sprite on a fixed background, at a random position.

This module is the one place the scene is drawn: :func:`background`, :func:`car_sprite` and
:func:`render` are used by the dataset source below (name ``toycar``) and by the experiment
``vidpred.experiments.toycar``. Everything is procedural (numpy), so no download is involved.

Scene: background = sky gradient, hills, a road with lane marks and some seeded texture. The car (body,
cabin, windows, wheels, lights) sits with its bottom at height ``y_frac`` (0.7 of the free vertical
range, notes) and its centre at ``x_frac`` of the free horizontal range; the distribution of the paper is
``x_frac ~ U(0.5 − offset, 0.5 + offset)``.

Source options (``vidpred data prepare --dataset toycar -o key=value``):
``num_videos`` (8), ``num_val`` (0), ``frames`` (16), ``size`` (64: frames are size×2·size before the
store resizes), ``offset`` (0.15), ``seed`` (0). Each video is a car driving across its range at a random
speed, so predicting it has the positional uncertainty the paper studies; ``centers`` ground truth is the
car's centre (x, y pixels). Splits: of the ``num_videos`` videos every fourth (``i % 4 == 3``) is test, the
rest train; ``num_val`` extra videos (ids ``toycar-val-0000`` …, after the others) are val, drawn from
their own random stream (seed ``[seed, 1]``, backgrounds ``[seed, 1, i]``), so they never change the
train/test videos and ``num_val=0`` gives the same store as before val existed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from vidpred.data.sources.base import RawVideo
from vidpred.errors import VidpredError


def background(height: int, width: int, seed: int | list[int] = 0) -> np.ndarray:
    """A road scene, float32 H×W×3 in [0, 1]; ``seed`` varies colours, hills and texture."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    sky_top = np.array([0.35, 0.55, 0.9], np.float32) + rng.uniform(-0.1, 0.1, 3).astype(np.float32)
    sky_bottom = np.array([0.75, 0.85, 0.95], np.float32)
    img = np.broadcast_to(sky_top + (sky_bottom - sky_top) * y / 0.6, (height, width, 3)).copy()
    # hills: a sum of sines defines the horizon line
    phase = rng.uniform(0, 2 * np.pi, 3)
    horizon = 0.45 + 0.06 * np.sin(2 * np.pi * (1.3 * x[0, :, 0] + phase[0])) \
        + 0.03 * np.sin(2 * np.pi * (3.7 * x[0, :, 0] + phase[1]))
    hill = y[:, :, 0] > horizon[None, :]
    green = np.array([0.25, 0.55, 0.25], np.float32) + rng.uniform(-0.08, 0.08, 3).astype(np.float32)
    img[hill] = green * (0.8 + 0.4 * rng.random((int(hill.sum()), 1), dtype=np.float32))
    # road
    road = y[:, 0, 0] > 0.62
    img[road] = np.array([0.35, 0.35, 0.38], np.float32) * (0.9 + 0.2 * rng.random((int(road.sum()), width, 1),
                                                                                   dtype=np.float32))
    mark_row = slice(int(0.9 * height), int(0.9 * height) + max(1, height // 32))
    dash = (np.arange(width) // max(2, width // 12) + rng.integers(2)) % 2 == 0
    img[mark_row, dash] = 0.95
    return np.clip(img, 0, 1)


def car_sprite(height: int, width: int, color=(0.85, 0.1, 0.1)) -> tuple[np.ndarray, np.ndarray]:
    """A side view of a car: (RGB float32 h×w×3, alpha float32 h×w) with anti-aliased edges."""
    ss = 4  # supersampling for anti-aliasing
    hh, ww = height * ss, width * ss
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32)
    yy, xx = (yy + 0.5) / hh, (xx + 0.5) / ww
    rgb = np.zeros((hh, ww, 3), np.float32)
    alpha = np.zeros((hh, ww), np.float32)
    body = (yy > 0.4) & (yy < 0.8) & (xx > 0.02) & (xx < 0.98)
    cabin = (yy > 0.08) & (yy <= 0.42) & (xx > 0.22 + 0.12 * (0.42 - yy) / 0.34) & (xx < 0.78 - 0.12 * (0.42 - yy) / 0.34)
    rgb[body | cabin] = color
    alpha[body | cabin] = 1
    window = cabin & (yy > 0.15) & (np.abs(xx - 0.5) > 0.02)
    rgb[window] = (0.6, 0.8, 0.95)
    rgb[body & (xx > 0.93) & (yy < 0.55)] = (1.0, 0.95, 0.5)  # head light
    rgb[body & (xx < 0.06) & (yy < 0.55)] = (0.9, 0.2, 0.0)  # tail light
    for cx in (0.25, 0.75):
        r = np.hypot((xx - cx) * ww / hh, yy - 0.8)
        wheel = r < 0.2
        rgb[wheel] = 0.08
        rgb[r < 0.09] = 0.7  # hub cap
        alpha[wheel] = 1
    rgb = rgb.reshape(height, ss, width, ss, 3).mean((1, 3))
    alpha = alpha.reshape(height, ss, width, ss).mean((1, 3))
    return rgb, alpha


def render(bg: np.ndarray, sprite: tuple[np.ndarray, np.ndarray], x_frac: float, y_frac: float = 0.7) -> np.ndarray:
    """Paste the sprite onto ``bg`` (float H×W×3 in [0, 1]) with sub-pixel horizontal placement.

    ``x_frac``/``y_frac`` place the sprite's top-left corner at that fraction of the free range
    (``W − w``, ``H − h``), so 0.5 centres it horizontally."""
    rgb, alpha = sprite
    h, w = alpha.shape
    height, width = bg.shape[:2]
    x0 = x_frac * (width - w)
    y0 = int(round(y_frac * (height - h)))
    ix = int(np.floor(x0))
    frac = np.float32(x0 - ix)
    # sub-pixel shift: linear interpolation between the sprite at ix and ix + 1
    pad_rgb = np.zeros((h, w + 1, 3), np.float32)
    pad_a = np.zeros((h, w + 1), np.float32)
    pad_rgb[:, :w] += (1 - frac) * rgb * alpha[..., None]
    pad_rgb[:, 1:] += frac * rgb * alpha[..., None]
    pad_a[:, :w] += (1 - frac) * alpha
    pad_a[:, 1:] += frac * alpha
    out = bg.copy()
    lo, hi = max(ix, 0), min(ix + w + 1, width)
    s = slice(lo - ix, hi - ix)
    region = out[y0:y0 + h, lo:hi]
    out[y0:y0 + h, lo:hi] = region * (1 - pad_a[:, s, None]) + pad_rgb[:, s]
    return out


def sprite_size(height: int, width: int, rel_width: float = 1 / 6) -> tuple[int, int]:
    """Sprite height and width for a scene: ``rel_width`` of the scene's width wide (default 1/6) and
    ``height/5 · 6·rel_width`` tall (the same aspect at every size). The paper gives no car size: assumed."""
    if not 0 < rel_width < 1:
        raise VidpredError(f"car width must be a fraction of the scene width in (0, 1), got {rel_width}")
    return max(4, round(height / 5 * 6 * rel_width)), max(8, round(width * rel_width))


def car_center(height: int, width: int, x_frac: float, y_frac: float = 0.7,
               rel_width: float = 1 / 6) -> tuple[float, float]:
    """The car's centre (x, y pixels) in a scene rendered by :func:`render` at ``x_frac``/``y_frac``."""
    h, w = sprite_size(height, width, rel_width)
    return x_frac * (width - w) + w / 2, round(y_frac * (height - h)) + h / 2


class ToyCarSource:
    name = "toycar"
    description = "CorrWise toy scene: a procedural car driving across a fixed road background (synthetic)"

    def fetch(self, source: str | None, workdir: Path, options: dict) -> Path:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir

    def iter_videos(self, root: Path, options: dict) -> Iterator[RawVideo]:
        n = int(options.get("num_videos", 8))
        n_val = int(options.get("num_val", 0))
        if n < 0 or n_val < 0:
            raise VidpredError(f"toycar options num_videos and num_val must be ≥ 0, got {n} and {n_val}")
        frames = int(options.get("frames", 16))
        size = int(options.get("size", 64))
        offset = float(options.get("offset", 0.15))
        seed = int(options.get("seed", 0))
        height, width = size, 2 * size
        sprite = car_sprite(*sprite_size(height, width))

        def video(rng, bg_seed) -> tuple[np.ndarray, np.ndarray]:
            bg = background(height, width, seed=bg_seed)
            start = rng.uniform(0.5 - offset, 0.5 + offset)
            speed = rng.uniform(-2 * offset, 2 * offset) / max(frames - 1, 1)
            xs = np.clip(start + speed * np.arange(frames), 0.0, 1.0)
            clip = np.stack([render(bg, sprite, float(x)) for x in xs])
            centers = np.array([[car_center(height, width, float(x))] for x in xs], np.float32)
            return (clip * 255).round().astype(np.uint8), centers

        rng = np.random.default_rng(seed)
        for i in range(n):
            clip, centers = video(rng, seed * 1000 + i)
            yield RawVideo(video_id=f"toycar-{i:04d}", split="test" if i % 4 == 3 else "train", source="toycar",
                           frames=clip, fps=10.0, ground_truth={"centers": centers})
        val_rng = np.random.default_rng([seed, 1])
        for i in range(n_val):
            clip, centers = video(val_rng, [seed, 1, i])
            yield RawVideo(video_id=f"toycar-val-{i:04d}", split="val", source="toycar",
                           frames=clip, fps=10.0, ground_truth={"centers": centers})


SOURCE = ToyCarSource()
