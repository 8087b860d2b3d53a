"""Prediction and interpolation with trained landmark models, and writing their pictures.

* :func:`predict` — encode the context frames to states, roll the LSTM out, decode every predicted state
  with the appearance of the last context frame (paper sec. 3: "use the appearance information from
  the 2nd for the entire sequence");
* :func:`interpolate` — linear in (μ, Cholesky) between two frames' states (eq. 7), appearance of the
  first frame;
* :func:`write_sequence` — numbered PNG frames, a GIF, and a grid with landmarks drawn (atomically).

Frames go in and come out as uint8 numpy arrays; in between everything runs on the device of the network
that uses it (the autoencoder's for encoding and decoding, the LSTM's for the rollout), and the returned
states are on the autoencoder's device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidpred.fsutil import atomic_dir
from vidpred.models.devices import module_device
from vidpred.models.landmarks import gaussians as G
from vidpred.models.landmarks import viz


def _to_tensor(frames: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.from_numpy(np.asarray(frames, dtype=np.float32) / 255).permute(0, 3, 1, 2).to(device)


@dataclass
class Sequence:
    frames: np.ndarray   # (T, H, W, 3) uint8 — decoded frames
    states: torch.Tensor  # (T, K, 5)
    first_generated: int  # index of the first frame that was generated (context frames are decoded too)


@torch.no_grad()
def encode_states(net, frames: np.ndarray, batch: int = 64) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) → states (T, K, 5)."""
    out, device = [], module_device(net)
    for i in range(0, len(frames), batch):
        mu, cov = net.encode_pose(_to_tensor(frames[i:i + batch], device))
        out.append(G.gaussians_to_state(mu, cov))
    return torch.cat(out)


@torch.no_grad()
def decode_states(net, states: torch.Tensor, appearance_frame: np.ndarray, batch: int = 64) -> np.ndarray:
    """Decode states (T, K, 5) with the appearance of one uint8 frame (H, W, 3) → uint8 (T, H, W, 3)."""
    device = module_device(net)
    app = net.encode_appearance(_to_tensor(appearance_frame[None], device))
    out = []
    for i in range(0, len(states), batch):
        mu, cov = G.state_to_gaussians(states[i:i + batch].to(device))
        out.append(viz.to_uint8(net.decode(mu, cov, app.expand(len(mu), -1, -1))))
    return np.concatenate(out)


@torch.no_grad()
def predict(net, lstm, context: np.ndarray, steps: int) -> Sequence:
    """Context frames (T0, H, W, 3) → decoded context + ``steps`` predicted frames."""
    ctx_states = encode_states(net, context)
    future = lstm.rollout(ctx_states[None].to(module_device(lstm)), steps)[0].to(ctx_states.device)
    states = torch.cat([ctx_states, future])
    return Sequence(decode_states(net, states, context[-1]), states, len(context))


@torch.no_grad()
def interpolate(net, first: np.ndarray, last: np.ndarray, num: int) -> Sequence:
    """``num`` frames from ``first`` to ``last`` (both included), linear in (μ, Cholesky) space."""
    s = encode_states(net, np.stack([first, last]))
    states = G.interpolate_states(s[0], s[1], torch.linspace(0, 1, num, device=s.device))
    return Sequence(decode_states(net, states, first), states, 1)


def landmark_strip(seq: Sequence, every: int = 1, truth: np.ndarray | None = None, scale: int = 2) -> np.ndarray:
    """A grid: (optional) ground-truth row, decoded row, decoded row with landmarks drawn; every n-th frame."""
    idx = list(range(0, len(seq.frames), max(1, every)))
    up = lambda a: np.repeat(np.repeat(a, scale, 0), scale, 1)  # noqa: E731
    rows = []
    if truth is not None:
        rows.append([up(truth[i]) if i < len(truth) else np.zeros_like(up(seq.frames[0])) for i in idx])
    rows.append([up(seq.frames[i]) for i in idx])
    rows.append([viz.draw_landmarks(seq.frames[i], *G.state_to_gaussians(seq.states[i]), scale=scale) for i in idx])
    return viz.grid(rows)


def write_sequence(out_dir: Path, seq: Sequence, truth: np.ndarray | None = None, fps: float = 10.0,
                   grid_every: int = 1) -> dict[str, Path]:
    """Write ``frames/00000.png…``, ``sequence.gif`` (with landmarks) and ``grid.png`` into ``out_dir``."""
    from PIL import Image

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        (tmp / "frames").mkdir()
        for i, f in enumerate(seq.frames):
            Image.fromarray(f).save(tmp / "frames" / f"{i:05d}.png")
        drawn = [viz.draw_landmarks(f, *G.state_to_gaussians(s), scale=2) for f, s in zip(seq.frames, seq.states)]
        viz.save_gif(tmp / "sequence.gif", drawn, fps)
        viz.save_png(tmp / "grid.png", landmark_strip(seq, grid_every, truth))
    return {"frames": out_dir / "frames", "gif": out_dir / "sequence.gif", "grid": out_dir / "grid.png"}
