"""Using trained MOSO models: save/load, tokenise clips, decode, and write results people look at.

* :func:`save_model` / :func:`load_vqvae` / :func:`load_transformer` — ``moso_vqvae.pt`` /
  ``moso_transformer.pt`` files ({"kind", "config", "state_dict", …}); a missing or corrupt file is a
  one-line VidpredError.
* :func:`encode_frames` — clips of frames (B×T×3×H×W in [0, 1]) → token maps, using the MOSO preprocessing
  (:func:`vidpred.preprocess.moso.decompose`) for the motion input and, depending on how far the VQVAE was
  trained, the preprocessed scene/object videos or the raw frames for the content encoders.
* :func:`codebook_version` — sha256 (first 16 hex) of the codebook, stored with every token set.
* :func:`write_video_outputs` — frames as PNGs, an animated GIF and a PNG grid (rows = named videos).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from vidpred.errors import VidpredError
from vidpred.fsutil import atomic_dir
from vidpred.models.files import load_model_file, save_model_file

VQVAE_KIND = "vidpred-moso-vqvae/1"
TRANSFORMER_KIND = "vidpred-moso-transformer/2"  # /2: context tokens added position-aligned


def save_model(net: torch.nn.Module, path: Path, kind: str, **extra) -> Path:
    return save_model_file(path, kind, net.config_dict(), net.state_dict(), **extra)


def load_vqvae(path):
    """(MosoVQVAE in eval mode, file metadata dict)."""
    from vidpred.models.moso.vqvae import MosoVQVAE, VQVAEConfig

    blob = load_model_file(path, VQVAE_KIND, "MOSO-VQVAE model", "train it with `vidpred train moso-vqvae`")
    net = MosoVQVAE(VQVAEConfig.from_dict(blob["config"]))
    net.load_state_dict(blob["state_dict"])
    return net.eval(), {k: v for k, v in blob.items() if k not in ("state_dict",)}


def load_transformer(path):
    """(MosoTransformer in eval mode, file metadata dict)."""
    from vidpred.models.moso.transformer import MosoTransformer, TransformerConfig

    blob = load_model_file(path, TRANSFORMER_KIND, "MOSO-Transformer model", "train it with `vidpred train moso-transformer`")
    net = MosoTransformer(TransformerConfig.from_dict(blob["config"]))
    net.load_state_dict(blob["state_dict"])
    return net.eval(), {k: v for k, v in blob.items() if k not in ("state_dict",)}


def codebook_version(vqvae) -> str:
    return hashlib.sha256(vqvae.codebook.embed.detach().cpu().numpy().tobytes()).hexdigest()[:16]


def model_inputs(vqvae, parts: dict, raw_content: bool) -> tuple:
    """Encoder inputs from a decomposed clip batch (``frames``, ``motion``, ``scene``, ``object``)."""
    if vqvae.cfg.decomposition == "none":
        return (parts["frames"],)
    if raw_content:
        return parts["motion"], parts["frames"], parts["frames"]
    return parts["motion"], parts["scene"], parts["object"]


@torch.no_grad()
def encode_frames(vqvae, frames: torch.Tensor, raw_content: bool, lower: float = 0.1, upper: float = 0.9) -> dict:
    """Token maps of clips ``B×T×3×H×W`` in [0, 1] (decomposed here with the MOSO preprocessing)."""
    from vidpred.preprocess.moso import decompose

    parts = decompose(frames, lower, upper)
    parts["frames"] = frames.float()
    return vqvae.encode(*model_inputs(vqvae, parts, raw_content))["tokens"]


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """T×3×H×W float in [0, 1] → T×H×W×3 uint8."""
    return (frames.detach().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def write_video_outputs(out_dir, videos: dict[str, torch.Tensor], fps: float = 4.0) -> Path:
    """Write ``videos`` (name → T×3×H×W in [0, 1]) to ``out_dir`` atomically: ``<name>/frame-000.png``,
    ``<name>.gif`` and ``grid.png`` (one row per video, same frame count padded with black)."""
    from PIL import Image

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        rows = []
        longest = max(v.shape[0] for v in videos.values())
        for name, v in videos.items():
            arr = to_uint8(v)
            (tmp / name).mkdir(parents=True)
            imgs = [Image.fromarray(a) for a in arr]
            for i, img in enumerate(imgs):
                img.save(tmp / name / f"frame-{i:03d}.png")
            imgs[0].save(tmp / f"{name}.gif", save_all=True, append_images=imgs[1:], duration=int(1000 / fps),
                         loop=0)
            pad = np.zeros((longest - len(arr), *arr.shape[1:]), np.uint8)
            rows.append(np.concatenate(list(np.concatenate([arr, pad])), axis=1))
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp / "grid.png")
    return out_dir


@torch.no_grad()
def predict_video(vqvae, transformer, context: torch.Tensor, total: int, raw_content: bool, lower: float = 0.1,
                  upper: float = 0.9, steps: int = 16, temperature: float = 4.5,
                  generator: torch.Generator | None = None, token_temperature: float = 1.0) -> torch.Tensor:
    """Predict ``total`` frames (context included) from context frames ``B×K×3×H×W`` in [0, 1].

    Each round builds the pseudo clip of the last K frames, tokenises it, samples the next clip's tokens
    (:func:`vidpred.models.moso.sampling.predict_tokens`) and decodes the new frames; the predicted frames
    become the next round's context (paper §4: "tokens of the last video clip are used as previous tokens")."""
    from vidpred.models.moso.sampling import given_frames, predict_tokens, pseudo_clip

    t, k = vqvae.cfg.frames, context.shape[1]
    if not 1 <= k < t:
        raise VidpredError(f"context must have 1..{t - 1} frames for clips of {t}, got {k}")
    given = given_frames(k, vqvae.cfg.pool)
    video = context.float()
    while video.shape[1] < total:
        cond = encode_frames(vqvae, pseudo_clip(video[:, -k:], t), raw_content, lower, upper)
        tokens = predict_tokens(transformer, cond, given, steps, temperature, generator, token_temperature)
        video = torch.cat([video, vqvae.decode_tokens(tokens)[:, k:].clamp(0, 1)], dim=1)
    return video[:, :total]
