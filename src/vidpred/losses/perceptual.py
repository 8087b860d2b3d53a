"""VGG19 perceptual loss with configurable layers, per-layer distance and weights.

Defaults follow CorrWise (relu1_1 … relu5_1, L1 per layer, weights 1/32, 1/16, 1/8, 1/4, 1, inputs left
in [-1, 1] as in the authors' code). The landmarks stage reuses it with relu1_2 … relu4_2, MSE and
1/32 … 1/4. The ImageNet VGG19 trunk comes from the weights registry (``vidpred.weights`` entry
``vgg19``, torchvision's file) or an explicit path; ``weights=None`` builds a randomly initialised trunk
(tests and benchmarks only — never for results).

Devices and precision: the trunk, the layer weights and the ImageNet mean/std are parameters and buffers, so
``.to(device)`` moves everything; inputs are fed in the trunk's dtype (the trunk may run in bfloat16 under
autocast) and each layer's distance is taken in float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from vidpred.errors import VidpredError

# VGG19 "features": conv blocks of 2, 2, 4, 4, 4 convs, each conv followed by ReLU, a max-pool between blocks.
_BLOCKS = (2, 2, 4, 4, 4)


def vgg19_layer_index() -> dict[str, int]:
    """Layer name (``conv3_2``, ``relu3_2``, ``pool3``) → index in ``torchvision.models.vgg19().features``."""
    index, i = {}, 0
    for b, n in enumerate(_BLOCKS, start=1):
        for c in range(1, n + 1):
            index[f"conv{b}_{c}"], index[f"relu{b}_{c}"] = i, i + 1
            i += 2
        index[f"pool{b}"] = i
        i += 1
    return index


CORRWISE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CORRWISE_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


class PerceptualLoss(torch.nn.Module):
    """``sum_l w_l · dist(VGG_l(x), VGG_l(y))`` with ``dist`` the mean L1 or MSE over a layer's features.

    ``normalize``: ``"none"`` feeds the [-1, 1] images as they are (CorrWise code); ``"imagenet"`` maps
    [-1, 1] to ImageNet mean/std first.
    """

    def __init__(self, layers: Sequence[str] = CORRWISE_LAYERS, weights: Sequence[float] = CORRWISE_WEIGHTS,
                 distance: str = "l1", trunk_weights: str | Path | None = "registry", normalize: str = "none"):
        super().__init__()
        from torchvision.models import vgg19

        index = vgg19_layer_index()
        unknown = [name for name in layers if name not in index]
        if unknown or not layers:
            raise VidpredError(f"perceptual.layers: unknown VGG19 layer(s) {unknown or '(none given)'}")
        if len(weights) != len(layers):
            raise VidpredError(f"perceptual.weights has {len(weights)} entries for {len(layers)} layers")
        if distance not in ("l1", "mse"):
            raise VidpredError(f"perceptual.distance must be 'l1' or 'mse', got '{distance}'")
        if normalize not in ("none", "imagenet"):
            raise VidpredError(f"perceptual.normalize must be 'none' or 'imagenet', got '{normalize}'")
        net = vgg19(weights=None)
        if trunk_weights == "registry":
            trunk_weights = _registry_vgg19()
        if trunk_weights is not None:
            try:
                state = torch.load(trunk_weights, map_location="cpu", weights_only=True)
                net.load_state_dict(state)
            except Exception as exc:
                raise VidpredError(f"VGG19 weights {trunk_weights} cannot be loaded: {str(exc).splitlines()[0]}") from None
        self.layer_ids = [index[name] for name in layers]
        self.layers = tuple(layers)
        self.features = net.features[: max(self.layer_ids) + 1].eval().requires_grad_(False)
        self.register_buffer("layer_weights", torch.tensor([float(w) for w in weights]))
        self.distance = distance
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def train(self, mode: bool = True):  # the trunk stays in eval mode
        super().train(mode)
        self.features.eval()
        return self

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.normalize == "imagenet":
            x = ((x + 1) / 2 - self.mean) / self.std
        out, wanted = [], set(self.layer_ids)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise VidpredError(f"perceptual loss needs two B×3×H×W tensors of equal shape, got "
                               f"{tuple(x.shape)} and {tuple(y.shape)}")
        trunk_dtype = self.features[0].weight.dtype
        fx = self.feature_maps(torch.cat([x, y]).to(trunk_dtype))
        dist = F.l1_loss if self.distance == "l1" else F.mse_loss
        b = x.shape[0]
        total = x.new_zeros((), dtype=torch.promote_types(trunk_dtype, torch.float32))
        for w, f in zip(self.layer_weights, fx):
            f = f.to(total.dtype)  # the distance in float32 even when the trunk ran in bfloat16
            total = total + w * dist(f[:b], f[b:])
        return total


def _registry_vgg19() -> Path:
    try:
        from vidpred.weights import weight_path
    except ModuleNotFoundError as exc:
        if exc.name != "vidpred.weights":
            raise
        raise VidpredError("VGG19 weights need the weights registry (vidpred.weights), not installed") from None
    return weight_path("vgg19")
