"""Pictures of landmarks: frames with the K landmark means (and 1-σ ellipses) drawn, grids and GIFs."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import torch

from vidpred.fsutil import atomic_file


def palette(k: int) -> list[tuple[int, int, int]]:
    """K distinct RGB colours."""
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(k, 1), 0.9, 1.0)) for i in range(k)]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] → (B, H, W, 3) uint8."""
    return (images.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


def draw_landmarks(image: np.ndarray, mu: torch.Tensor, cov: torch.Tensor | None = None,
                   scale: int = 1) -> np.ndarray:
    """Draw landmarks (K, 2) on one H×W×3 uint8 image (grid coordinates); optionally upscale first."""
    import cv2

    from vidpred.models.landmarks.gaussians import grid_to_pixels

    h, w = image.shape[:2]
    out = np.ascontiguousarray(np.repeat(np.repeat(image, scale, 0), scale, 1))
    pts = grid_to_pixels(mu.detach().cpu().double(), h, w).numpy()
    cols = palette(len(pts))
    for k, (x, y) in enumerate(pts):
        centre = (int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5)))
        if cov is not None:
            c = cov[k].detach().cpu().double().numpy() * (w * scale / 2) ** 2
            vals, vecs = np.linalg.eigh(c)
            axes = tuple(int(max(1, round(float(np.sqrt(max(v, 0)))))) for v in vals)
            angle = float(np.degrees(np.arctan2(vecs[1, 0], vecs[0, 0])))
            cv2.ellipse(out, centre, axes, angle, 0, 360, cols[k], 1, cv2.LINE_AA)
        cv2.circle(out, centre, max(1, scale), cols[k], -1, cv2.LINE_AA)
    return out


def grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tile equal-sized H×W×3 uint8 images into one picture (rows × columns) with white padding."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = img
    return out


def save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    with atomic_file(path) as fh:
        Image.fromarray(image).save(fh, format="PNG")


def save_gif(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    from PIL import Image

    imgs = [Image.fromarray(f) for f in frames]
    with atomic_file(path) as fh:
        imgs[0].save(fh, format="GIF", save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
