"""Landmark autoencoder (Shih et al. sec. 2.1–2.2 and appendix A): pose / appearance factorisation.

    pose image ──U-Net──▶ K part logits (H/2) ──spatial softmax──▶ p_k ──fit──▶ (μ_k, Σ_k)
    appearance image ──pose U-Net──▶ p'_k;  ──small U-Net──▶ M (C, H/2);  a_k = Σ_l p'_k(l) M(l)   (eq. 1)
    decoder: a_k projected onto the rendered heatmaps s_k = 1/(1 + dᵀΣ_k⁻¹d) at H/16, then 4 blocks of
    conv-ReLU-upsample, each conditioned on the heatmaps — by SPADE (InstanceNorm whose scale and shift
    come from the heatmaps; ``decoder="spade"``) or by concatenating them as input channels
    (``decoder="plain"``, the "Ours (Lorenz)" row of Tab. 1) — then a 3×3 conv to RGB.

Channel widths follow the appendix (pose U-Net 64…512, decoder 256, 256, 128, 64) and are
configurable for CPU runs. :class:`PatchDiscriminator` is the optional 3-layer LSGAN critic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
# the hook-based spectral norm: unlike the parametrization API it pickles, so mlflow.pytorch can log the model
from torch.nn.utils import spectral_norm

from vidpred.config import dataclass_from_dict
from vidpred.models.geometry import check_divisible, image_hw, normalize_image_size
from vidpred.models.landmarks import gaussians as G


@dataclass
class AutoencoderConfig:
    """Settings of :class:`LandmarkAutoencoder`.

    ``image_size`` is the frame geometry: ``N`` for square N×N frames (every older config and model file) or
    ``[H, W]`` for non-square ones (``"HxW"`` is read too); H and W must each be a multiple of
    2**len(decoder_channels) and 2**pose_depth. Square sizes are stored as ``N``.
    """

    num_landmarks: int = 30
    image_size: int | list[int] = 64
    pose_channels: int = 64          # first U-Net width; doubles per down block
    pose_depth: int = 4              # down blocks (up blocks = depth − 1; output at H/2)
    app_channels: int = 64           # C of the appearance feature map / per-part vectors
    decoder_channels: list[int] = field(default_factory=lambda: [256, 256, 128, 64])
    decoder: str = "spade"           # spade | plain
    spade_hidden: int = 64           # width of SPADE's shared conv on the heatmaps
    spectral_norm: bool = True
    heatmap: str = "cauchy"          # cauchy (eq. 5) | gaussian

    def validate(self) -> None:
        from vidpred.errors import VidpredError

        up = 2 ** len(self.decoder_channels)
        if self.decoder not in ("spade", "plain"):
            raise VidpredError(f"model.decoder must be 'spade' or 'plain', got {self.decoder!r}")
        if self.num_landmarks < 1:
            raise VidpredError(f"model.num_landmarks must be ≥ 1, got {self.num_landmarks}")
        self.image_size = normalize_image_size(self.image_size)
        check_divisible(self.image_size, {"2**len(decoder_channels)": up, "2**pose_depth": 2 ** self.pose_depth})

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of the frames."""
        return image_hw(self.image_size)

    @classmethod
    def from_dict(cls, d: dict) -> "AutoencoderConfig":
        cfg = dataclass_from_dict(cls, d, "model (landmark autoencoder)")
        cfg.decoder_channels = list(cfg.decoder_channels)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


def _conv(cin: int, cout: int, sn: bool = False, k: int = 3) -> nn.Module:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    return spectral_norm(conv) if sn else conv


def _conv_in_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout), nn.InstanceNorm2d(cout, affine=True), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """Down blocks (conv-IN-ReLU, 2× average pool) then up blocks with skips; output at H/2."""

    def __init__(self, cin: int, cout: int, base: int, depth: int):
        super().__init__()
        widths = [base * 2 ** i for i in range(depth)]
        self.down = nn.ModuleList()
        prev = cin
        for w in widths:
            self.down.append(_conv_in_relu(prev, w))
            prev = w
        self.up = nn.ModuleList()
        for i in range(depth - 1, 0, -1):
            self.up.append(_conv_in_relu(widths[i] + widths[i - 1], widths[i - 1]))
        self.head = nn.Conv2d(widths[0], cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = F.avg_pool2d(block(x), 2)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


class SPADE(nn.Module):
    """InstanceNorm (no affine) modulated per pixel by γ, β predicted from the heatmaps."""

    def __init__(self, channels: int, cond_channels: int, hidden: int = 64):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(cond_channels, hidden, 3, padding=1), nn.ReLU(inplace=True))
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.shared(cond)
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h)


class DecoderBlock(nn.Module):
    """[SPADE | concat heatmaps] → conv 3×3 (spectral norm) → ReLU → 2× nearest upsample."""

    def __init__(self, cin: int, cout: int, k: int, mode: str, sn: bool, hidden: int = 64):
        super().__init__()
        self.mode = mode
        if mode == "spade":
            self.spade = SPADE(cin, k, hidden)
            self.conv = _conv(cin, cout, sn)
        else:
            self.conv = _conv(cin + k, cout, sn)

    def forward(self, x: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.spade(x, heat) if self.mode == "spade" else torch.cat([x, heat], 1))
        return F.interpolate(F.relu(x), scale_factor=2, mode="nearest")


class LandmarkAutoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        k, c = cfg.num_landmarks, cfg.app_channels
        self.pose_encoder = UNet(3, k, cfg.pose_channels, cfg.pose_depth)
        self.app_encoder = UNet(3, c, c, 2)  # one down/up module pair with a skip (appendix A)
        chans = [c] + list(cfg.decoder_channels)
        self.blocks = nn.ModuleList(
            DecoderBlock(chans[i], chans[i + 1], k, cfg.decoder, cfg.spectral_norm, cfg.spade_hidden) for i in range(len(chans) - 1))
        self.to_rgb = _conv(chans[-1], 3, cfg.spectral_norm)

    # --- encoders ---------------------------------------------------------------------------------
    def part_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax-normalised part maps (B, K, H/2, W/2)."""
        return G.spatial_softmax(self.pose_encoder(images))

    def encode_pose(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Landmark means (B, K, 2) and covariances (B, K, 2, 2) on the [-1, 1] grid."""
        return G.fit_gaussians(self.part_maps(images))

    def encode_appearance(self, images: torch.Tensor) -> torch.Tensor:
        """Per-part appearance vectors (B, K, C), eq. 1 (pooled with the image's own part maps)."""
        probs = self.part_maps(images)
        feats = self.app_encoder(images)
        return torch.einsum("bkhw,bchw->bkc", probs, feats)

    # --- decoder ----------------------------------------------------------------------------------
    def decode(self, mu: torch.Tensor, cov: torch.Tensor, app: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) from landmarks (μ, Σ) and appearance vectors (B, K, C)."""
        h, w = self.cfg.hw
        h, w = h // 2 ** len(self.blocks), w // 2 ** len(self.blocks)
        heat = G.render_heatmaps(mu, cov, h, w, self.cfg.heatmap)
        x = torch.einsum("bkhw,bkc->bchw", heat, app) / (1 + heat.sum(1, keepdim=True))
        for block in self.blocks:
            x = block(x, heat)
            h, w = 2 * h, 2 * w
            heat = G.render_heatmaps(mu, cov, h, w, self.cfg.heatmap)
        return self.to_rgb(x)

    def forward(self, pose_images: torch.Tensor, app_images: torch.Tensor) -> dict:
        """Reconstruct the target from the pose of ``pose_images`` and the appearance of ``app_images``."""
        mu, cov = self.encode_pose(pose_images)
        app = self.encode_appearance(app_images)
        return {"recon": self.decode(mu, cov, app), "mu": mu, "cov": cov, "app": app}


class PatchDiscriminator(nn.Module):
    """3 conv layers (64, 128, 256; stride 2) with InstanceNorm + LeakyReLU, then a 1-channel patch map."""

    def __init__(self, channels=(64, 128, 256)):
        super().__init__()
        layers, prev = [], 3
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(prev, c, 4, stride=2, padding=1)]
            if i:
                layers += [nn.InstanceNorm2d(c, affine=True)]
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            prev = c
        layers += [nn.Conv2d(prev, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def lsgan_losses(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(discriminator loss, generator loss) of least-squares GAN."""
    d_real, d_fake = disc(real), disc(fake.detach())
    d_loss = 0.5 * ((d_real - 1) ** 2).mean() + 0.5 * (d_fake ** 2).mean()
    g_loss = 0.5 * ((disc(fake) - 1) ** 2).mean()
    return d_loss, g_loss
