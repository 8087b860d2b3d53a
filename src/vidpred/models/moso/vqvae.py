"""MOSO-VQVAE (MOSO §3.1): motion, scene and object encoders, one shared EMA codebook, the
time-independent decoder; plus the non-decomposed ablation (paper Tab. 6/9) and the video discriminator.

Inputs are clips ``B×T×3×H×W``: ``motion`` (the signed frame difference from
:func:`vidpred.preprocess.moso.decompose`, in [-2, 2]) for the motion encoder, and for the scene and object
encoders either the preprocessed scene / object videos (warm-up) or the raw frames (after warm-up; the
training stage decides, as in the paper §4 "Implementation").

Tokens: ``scene`` B×hs×ws, ``object`` B×ho×wo, ``motion`` B×T×hm×wm — all indices into one codebook.
``decode_tokens`` turns any token set back into frames (used by tokens, prediction and manipulation).

``decomposition="none"`` is the ablation: a frame-wise encoder of the motion encoder's structure on raw
frames whose ``groups`` token maps per frame (channels split into groups, each quantised with the same
codebook) give the same token budget as MOSO; the decoder has no merge module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vidpred.config import dataclass_from_dict
from vidpred.errors import VidpredError
from vidpred.metrics.image import ssim as ssim_index
from vidpred.models import compile_model
from vidpred.models.geometry import check_divisible, image_hw, normalize_image_size
from vidpred.models.moso.decoder import Decoder
from vidpred.models.moso.encoders import ContentEncoder, MotionEncoder
from vidpred.models.moso.quantizer import EMACodebook


@dataclass
class VQVAEConfig:
    """Settings of :class:`MosoVQVAE`.

    ``image_size`` is the frame geometry: ``N`` for square N×N frames (every older config and model file) or
    ``[H, W]`` for non-square ones (``"HxW"`` is read too). H and W must each be a multiple of
    ``scene_factor``, ``object_factor`` and ``motion_factor`` (powers of 2: the encoders' downsampling);
    the token maps are then (H/f)×(W/f). Square sizes are stored as ``N``.
    """

    image_size: int | list[int] = 64
    frames: int = 8  # clip length T
    pool: int = 2  # frames per working pool of the motion encoder's attention
    channels: int = 64
    embed_dim: int = 64
    num_codes: int = 512
    scene_factor: int = 4
    object_factor: int = 4
    motion_factor: int = 8
    res_layers: int = 2
    res_hidden: int = 32
    head_dim: int = 64
    attn_dropout: float = 0.1
    decay: float = 0.99
    beta: float = 0.25
    eps: float = 1e-5
    dead_after: int = 0
    decomposition: str = "mso"  # "mso" or "none" (ablation)
    groups: int = 1  # token maps per frame in the "none" ablation
    compile: bool = False  # torch.compile the encoders and the decoder (a run-time option: not stored in model files)

    @classmethod
    def from_dict(cls, d: dict) -> "VQVAEConfig":
        cfg = dataclass_from_dict(cls, d, "model (MOSO-VQVAE)")
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.decomposition not in ("mso", "none"):
            raise VidpredError(f"model.decomposition must be 'mso' or 'none', got {self.decomposition!r}")
        if self.frames % self.pool:
            raise VidpredError(f"model.pool={self.pool} must divide model.frames={self.frames}")
        self.image_size = normalize_image_size(self.image_size)
        names = ("scene_factor", "object_factor", "motion_factor") if self.decomposition == "mso" else ("motion_factor",)
        for name in names:
            f = getattr(self, name)
            if not isinstance(f, int) or f < 1 or f & (f - 1):
                raise VidpredError(f"model.{name}={f} must be a power of 2 (dividing H and W of image_size)")
        check_divisible(self.image_size, {f"model.{n}": getattr(self, n) for n in names})
        if self.num_codes < 2 or self.embed_dim < 1:
            raise VidpredError("model.num_codes must be ≥ 2 and model.embed_dim ≥ 1")

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of the frames."""
        return image_hw(self.image_size)

    def token_shape(self, name: str) -> tuple[int, int]:
        """(h, w) of one token map: ``scene``, ``object`` or ``motion`` (per frame)."""
        f = getattr(self, f"{name}_factor")
        h, w = self.hw
        return h // f, w // f

    def token_counts(self) -> dict[str, int]:
        def n(name):
            h, w = self.token_shape(name)
            return h * w

        if self.decomposition == "none":
            return {"motion": self.frames * self.groups * n("motion")}
        return {"scene": n("scene"), "object": n("object"), "motion": self.frames * n("motion")}


class MosoVQVAE(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        c, d = cfg.channels, cfg.embed_dim
        common = dict(res_layers=cfg.res_layers, res_hidden=cfg.res_hidden)
        self.codebook = EMACodebook(cfg.num_codes, d, cfg.decay, cfg.beta, cfg.eps, cfg.dead_after)
        if cfg.decomposition == "mso":
            self.scene_enc = ContentEncoder(cfg.frames, c, d, cfg.scene_factor, **common)
            self.object_enc = ContentEncoder(cfg.frames, c, d, cfg.object_factor, **common)
            self.motion_enc = MotionEncoder(c, d, cfg.motion_factor, cfg.pool, head_dim=cfg.head_dim,
                                            attn_dropout=cfg.attn_dropout, **common)
            base = min(cfg.scene_factor, cfg.object_factor)
            self.decoder = Decoder(d, c, base, merge=True, **common)
        else:
            self.motion_enc = MotionEncoder(c, d * cfg.groups, cfg.motion_factor, cfg.pool,
                                            head_dim=cfg.head_dim, attn_dropout=cfg.attn_dropout, **common)
            self.decoder = Decoder(d * cfg.groups, c, cfg.motion_factor, merge=False, **common)
        for name in ("scene_enc", "object_enc", "motion_enc", "decoder"):  # not the codebook (its EMA update)
            if hasattr(self, name):
                compile_model(getattr(self, name), cfg.compile)

    # -- encoding -----------------------------------------------------------------------------------
    def encode(self, motion: torch.Tensor, scene: torch.Tensor | None = None,
               obj: torch.Tensor | None = None) -> dict:
        """Quantise a clip. ``motion`` B×T×3×H×W (difference video; raw frames for the "none" ablation);
        ``scene``/``obj`` the scene/object encoders' inputs (preprocessed videos or raw frames).
        Returns ``q`` (dict of straight-through features), ``tokens`` (dict of index maps),
        ``commitment`` (scalar) and ``perplexity`` (of the whole batch's codes)."""
        b, t = motion.shape[:2]
        zm = self.motion_enc(motion)  # B×T×D'×h×w
        if self.cfg.decomposition == "none":
            g, d = self.cfg.groups, self.cfg.embed_dim
            z = {"motion": zm.reshape(b * t * g, d, *zm.shape[-2:])}
        else:
            if scene is None or obj is None:
                raise ValueError("MOSO encode needs scene and object inputs")
            z = {"scene": self.scene_enc(scene), "object": self.object_enc(obj), "motion": zm.flatten(0, 1)}
        # one codebook, one update: quantise all features together so the EMA sees every input once
        flat = torch.cat([v.movedim(1, -1).reshape(-1, self.cfg.embed_dim) for v in z.values()])
        out = self.codebook(flat[:, :, None])
        q_flat, idx_flat = out.quantized[:, :, 0], out.indices[:, 0]
        q, tokens, start = {}, {}, 0
        for name, v in z.items():
            n = v.numel() // self.cfg.embed_dim
            shape = v.movedim(1, -1).shape
            q[name] = q_flat[start:start + n].view(shape).movedim(-1, 1)
            tokens[name] = idx_flat[start:start + n].view(shape[:-1])
            start += n
        q["motion"] = q["motion"].reshape(b, t, -1, *zm.shape[-2:])
        tokens["motion"] = tokens["motion"].reshape(b, t, *tokens["motion"].shape[-2:]) \
            if self.cfg.decomposition == "mso" else tokens["motion"].reshape(b, t, -1, *zm.shape[-2:])
        return {"q": q, "tokens": tokens, "commitment": out.commitment, "perplexity": out.perplexity}

    # -- decoding -----------------------------------------------------------------------------------
    def decode(self, q: dict) -> torch.Tensor:
        size = self.cfg.hw
        return self.decoder(q.get("scene"), q.get("object"), q["motion"], size)

    def features(self, tokens: dict) -> dict:
        """Codebook features for a token set (same layout as :meth:`encode`'s ``q``)."""
        q = {k: self.codebook.lookup(v) for k, v in tokens.items() if k != "motion"}
        m = tokens["motion"]
        if self.cfg.decomposition == "none":  # B×T×g×h×w → B×T×g·D×h×w
            fm = self.codebook.lookup(m.flatten(0, 1))  # B·T×D×g×h×w
            q["motion"] = fm.transpose(1, 2).reshape(m.shape[0], m.shape[1], -1, *m.shape[-2:])
        else:
            q["motion"] = self.codebook.lookup(m.flatten(0, 1)).view(m.shape[0], m.shape[1], -1, *m.shape[-2:])
        return q

    def decode_tokens(self, tokens: dict) -> torch.Tensor:
        """Frames B×T×3×H×W from token maps (any combination of clips' scene / object / motion tokens)."""
        return self.decode(self.features(tokens))

    def forward(self, motion, scene=None, obj=None) -> dict:
        enc = self.encode(motion, scene, obj)
        enc["recon"] = self.decode(enc["q"])
        return enc

    def config_dict(self) -> dict:
        """The architecture (what a model file stores; ``compile`` is how this process runs it)."""
        return {k: v for k, v in asdict(self.cfg).items() if k != "compile"}


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, l1: float = 0.0, l2: float = 1.0,
                        ssim: float = 0.0) -> torch.Tensor:
    """Weighted L1 + L2 (means over pixels) + ``ssim``·(1 − SSIM) between reconstructed and input frames
    (SSIM as in :func:`vidpred.metrics.image.ssim`, frames B×T×3×H×W in [0, 1]). A float32 scalar (or float64)
    on the frames' device, also when ``recon`` is bfloat16 from an autocast forward."""
    loss = recon.new_zeros((), dtype=torch.promote_types(recon.dtype, torch.float32))
    if l1:
        loss = loss + l1 * F.l1_loss(recon, target)
    if l2:
        loss = loss + l2 * F.mse_loss(recon, target)
    if ssim:
        loss = loss + ssim * (1 - ssim_index(recon, target, dtype=torch.float32).mean())
    return loss


class VideoDiscriminator(nn.Module):
    """A 3D-conv PatchGAN over clips ``B×T×3×H×W`` → patch logits (MOSO appendix C.4, Tab. 10)."""

    def __init__(self, channels: int = 32, layers: int = 3):
        super().__init__()
        mods, cin = [], 3
        for i in range(layers):
            cout = channels * 2 ** i
            mods += [nn.Conv3d(cin, cout, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)), nn.LeakyReLU(0.2)]
            cin = cout
        mods.append(nn.Conv3d(cin, 1, 3, padding=1))
        self.net = nn.Sequential(*mods)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.net(clip.transpose(1, 2) * 2 - 1)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()
