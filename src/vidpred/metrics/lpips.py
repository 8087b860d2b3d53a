"""LPIPS v0.1 (AlexNet) per image, with the AlexNet trunk taken from the weight registry.

The ``lpips`` wheel ships its calibrated linear layers; only the ImageNet AlexNet trunk comes from
torchvision. We build ``lpips.LPIPS(net="alex", pnet_rand=True)`` (no download attempt) and load the trunk
from :func:`vidpred.weights.weight_path` ``("alexnet")``, so a missing file gives one clear error naming
the file and directory. Inputs are in ``[0, 1]`` and mapped to ``[-1, 1]`` as LPIPS expects.

If the trunk file is a stand-in (hash mismatch, allowed with ``VIDPRED_ALLOW_STANDIN_WEIGHTS=1``),
``LPIPSMetric.stand_in`` is True and scores are not comparable with published numbers.

Devices and precision: :class:`LPIPSMetric` is an ``nn.Module`` (``.to(device)`` moves the network; it stays in
eval mode). Inputs on any device are copied to the network's device, scored in float32 with autocast off (a
reported metric does not depend on the caller's mixed precision), and the distances are returned on the
prediction's device.
"""

from __future__ import annotations

import warnings

import torch

from vidpred.errors import VidpredError
from vidpred.metrics.image import check_pair
from vidpred.models.devices import autocast_off, module_device

# lpips' AlexNet slices keep torchvision's `features` indices: slice k holds features[i] for i in these ranges.
_SLICES = {1: range(0, 2), 2: range(2, 5), 3: range(5, 8), 4: range(8, 10), 5: range(10, 12)}


class LPIPSMetric(torch.nn.Module):
    """Callable LPIPS distance: ``metric(pred, target)`` → one value per image (shape N or N×T), float32 on the
    prediction's device."""

    def __init__(self, device: str | torch.device = "cpu", allow_stand_in: bool | None = None):
        super().__init__()
        import lpips

        from vidpred.weights import load_state_dict, weight_status

        state = load_state_dict("alexnet", allow_stand_in=allow_stand_in)
        self.stand_in = weight_status("alexnet") == "stand-in"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's deprecated `pretrained=` argument inside lpips
            model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        trunk = {}
        for k, idx in _SLICES.items():
            for i in idx:
                for p in ("weight", "bias"):
                    key = f"features.{i}.{p}"
                    if key in state:
                        trunk[f"slice{k}.{i}.{p}"] = state[key]
        try:
            model.net.load_state_dict(trunk, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise VidpredError(f"pretrained weights 'alexnet' do not fit LPIPS' AlexNet trunk: {first}") from None
        self.model = model.eval().requires_grad_(False)
        self.to(device)

    @property
    def device(self) -> torch.device:
        """Where the network lives (inputs are copied there)."""
        return module_device(self.model)

    def train(self, mode: bool = True):  # a metric: the network stays in eval mode
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(pred, target, "lpips")
        lead = pred.shape[:-3]
        c, h, w = pred.shape[-3:]
        if c != 3:
            raise VidpredError(f"lpips: expected 3 colour channels, got {c}")
        device = self.device
        with autocast_off(device):
            x = pred.reshape(-1, c, h, w).to(device, torch.float32) * 2 - 1
            y = target.reshape(-1, c, h, w).to(device, torch.float32) * 2 - 1
            d = self.model(x, y, normalize=False)
        return d.reshape(lead).to(pred.device)


_DEFAULT: LPIPSMetric | None = None


def lpips_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """LPIPS with a process-wide cached CPU model; see :class:`LPIPSMetric`."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = LPIPSMetric()
    return _DEFAULT(pred, target)


__all__ = ["LPIPSMetric", "lpips_distance"]
