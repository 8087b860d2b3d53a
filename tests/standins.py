"""STAND-IN pretrained weights for tests (none of them is the real network; their scores are NOT real).

Tests run offline with ``TORCH_HOME`` in a temp dir (see conftest), so no real weights exist. These helpers
write small files under the REAL file names into the torch hub cache, so the code under test goes through
exactly the same loading path as with the real weights:

* :func:`write_standin_i3d` — a small randomly initialised 3-D conv net, scripted with ``torch.jit.script``
  and saved with ``torch.jit.save`` as ``i3d_torchscript.pt``. It takes the real detector's call signature
  (``model(videos, rescale=..., resize=..., return_features=...)``, videos uint8 B×3×T×H×W) and returns
  B×400 features. Its I3D status is ``"unverified"`` (no pinned hash), so FVD flags it as a stand-in.
* :func:`write_standin_alexnet` — a randomly initialised torchvision AlexNet trunk (``features.*`` tensors:
  right keys and shapes, not the ImageNet weights) as ``alexnet-owt-7be5be79.pth``; its hash does not match
  torchvision's, so it is only accepted with stand-ins allowed and is reported as ``"stand-in"``.

Usage: ``from tests.standins import write_standin_i3d, write_standin_alexnet``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

STANDIN_I3D_SIZE = 32  # the stand-in's "resize": frames → 32×32 (the real I3D resizes to 224×224)


class StandinI3D(torch.nn.Module):
    """Random 3-D conv features with the real I3D torchscript's call signature (NOT a trained network)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv3d(3, 8, kernel_size=3, stride=(1, 2, 2), padding=1)
        self.conv2 = torch.nn.Conv3d(8, 16, kernel_size=3, stride=2, padding=1)
        self.head = torch.nn.Linear(32, 400)
        self.size = STANDIN_I3D_SIZE  # an int attribute: scripted as a constant of the module

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = x.float()
        if rescale:  # the real detector's rescale: [0, 255] → [-1, 1]
            x = x / 255.0 * 2.0 - 1.0
        if resize:
            x = F.interpolate(x, size=[x.shape[2], self.size, self.size], mode="trilinear",
                              align_corners=False)
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        logits = self.head(torch.cat([h.mean(dim=[2, 3, 4]), h.amax(dim=[2, 3, 4])], dim=1))
        if return_features:
            return logits
        return torch.softmax(logits, dim=1)


def _target_dir(directory: str | Path | None) -> Path:
    if directory is None:
        from vidpred.weights import cache_dir

        directory = cache_dir()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def write_standin_i3d(directory: str | Path | None = None, seed: int = 0) -> Path:
    """Write the STAND-IN I3D torchscript as ``i3d_torchscript.pt`` into ``directory`` (default: the torch hub
    checkpoint dir of the current ``TORCH_HOME``); return its path. Same seed → same weights."""
    from vidpred.weights import spec

    torch.manual_seed(seed)
    module = torch.jit.script(StandinI3D().eval())
    path = _target_dir(directory) / spec("i3d").filename
    torch.jit.save(module, str(path))
    return path


def write_standin_alexnet(directory: str | Path | None = None, seed: int = 0) -> Path:
    """Write a STAND-IN AlexNet trunk (random torchvision ``features.*`` tensors) as ``alexnet-owt-7be5be79.pth``
    into ``directory`` (default: the torch hub checkpoint dir); return its path."""
    import torchvision

    from vidpred.weights import spec

    torch.manual_seed(seed)
    state = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items()
             if k.startswith("features.")}
    path = _target_dir(directory) / spec("alexnet").filename
    torch.save(state, path)
    return path


__all__ = ["StandinI3D", "write_standin_i3d", "write_standin_alexnet", "STANDIN_I3D_SIZE"]
