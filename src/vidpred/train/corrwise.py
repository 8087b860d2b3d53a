"""Training stage: the CorrWise 3D-conv predictor with a correspondence-wise (or pixel-wise) loss.

``vidpred train corrwise --config smoke/corrwise --set train.max_steps=50`` calls :func:`main`.
Config sections (every number's provenance is in the YAML):

* ``data``: ``store`` (a clip store), ``split``, ``flip``; clips of ``context + predict`` frames are read
  through ``vidpred.data.loader.ClipDataset`` in [-1, 1].
* ``model``: :class:`vidpred.models.predictor.PredictorConfig` fields; ``task``: ``predict`` (context →
  ``predict`` future frames, predictions fed back, loss summed over all of them) or ``interpolate``
  (frames 0 and 2 → frame 1).
* ``loss``: ``base`` (l1, mse, l1+perceptual or a mapping), ``mode`` (corrwise / pixelwise),
  ``epsilon``, ``flow`` (auto / raft / raft_small / dis), ``raft_iters``, ``dis_preset``,
  ``pixelwise_warmup_epochs``, ``magnitude_weight``, ``smoothness_weight``, ``perceptual`` (kwargs).
* ``train``: ``batch_size``, ``lr``, ``betas``, ``epochs`` or ``max_steps`` and the
  :class:`vidpred.train.loop.LoopSettings` fields, ``out_dir``.

The shared loop (``vidpred.train.loop``) does checkpoints/resume, progress, MLflow metrics, the sample
grid (context | prediction | warped prediction | target) and logs the model; the trained predictor is also
written to ``<train.out_dir>/predictor.pt`` (:func:`load_predictor_file`, used by ``vidpred evaluate``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidpred.config import REQUIRED, Config, Schema, fields_of, load_config, loop_keys
from vidpred.errors import VidpredError
from vidpred.losses.corrwise import CorrWiseLoss, make_base_loss
from vidpred.models.flow import make_flow
from vidpred.models.predictor import Predictor, PredictorConfig
from vidpred.models.files import load_model_file, save_model_file
from vidpred.train.distributed import is_main
from vidpred.train.loop import LoopSettings, Task, TrainResult, epoch_batches, run_training, stage_logging

# Every config key this stage reads → its default (REQUIRED: no default); any other key is an error.
CONFIG_SCHEMA = Schema("corrwise", {
    "task": "predict",  # predict | interpolate
    "data.store": None, "data.split": "train", "data.predict": 1, "data.step": 1, "data.flip": False,
    **fields_of(PredictorConfig, "model"),
    "loss.base": "l1",  # a name ("l1+perceptual") or a mapping of weights
    "loss.perceptual": None,  # PerceptualLoss arguments (a mapping, taken whole)
    "loss.mode": "corrwise", "loss.epsilon": 0.1, "loss.flow": "auto", "loss.raft_iters": 5,
    "loss.dis_preset": "medium", "loss.dis_min_side": 0, "loss.pixelwise_warmup_epochs": 0,
    "loss.magnitude_weight": 0.0, "loss.smoothness_weight": 0.0,
    **loop_keys("train"),
    "train.max_steps": None,  # null: train.epochs × steps per epoch
    "train.epochs": None, "train.batch_size": REQUIRED, "train.lr": REQUIRED, "train.betas": (0.9, 0.999),
    "train.out_dir": "runs/corrwise",
})

MODEL_FILE = "predictor.pt"
PREDICTOR_KIND = "vidpred-corrwise-predictor/1"


def save_predictor_file(model: Predictor, path: Path, **extra) -> Path:
    """``predictor.pt``: the trained predictor (config + weights; it works in [-1, 1])."""
    from dataclasses import asdict

    return save_model_file(path, PREDICTOR_KIND, asdict(model.cfg), model.state_dict(), value_range=[-1.0, 1.0],
                           **extra)


def load_predictor_file(path) -> Predictor:
    """The predictor of a ``predictor.pt`` (eval mode, CPU); one clear error for a missing or foreign file."""
    blob = load_model_file(path, PREDICTOR_KIND, "corrwise model", "train it with `vidpred train corrwise`")
    net = Predictor(PredictorConfig(**blob["config"]))
    net.load_state_dict(blob["state_dict"])
    return net.eval()


def build_loss(cfg: Config) -> CorrWiseLoss:
    """The corr-wise wrapper around the configured base loss (``pixelwise=True`` in forward = plain base)."""
    base = make_base_loss(cfg.get("loss.base", "l1"), cfg.get("loss.perceptual", None))
    mode = cfg.get("loss.mode", "corrwise")
    if mode not in ("corrwise", "pixelwise"):
        raise VidpredError(f"loss.mode must be 'corrwise' or 'pixelwise', got '{mode}'")
    flow = make_flow(cfg.get("loss.flow", "auto"), iters=int(cfg.get("loss.raft_iters", 5)),
                     dis_preset=cfg.get("loss.dis_preset", "medium"),
                     dis_min_side=int(cfg.get("loss.dis_min_side", 0)))
    return CorrWiseLoss(base, flow, epsilon=float(cfg.get("loss.epsilon", 0.1)),
                        magnitude_weight=float(cfg.get("loss.magnitude_weight", 0.0)),
                        smoothness_weight=float(cfg.get("loss.smoothness_weight", 0.0)))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """3×H×W in [-1, 1] → H×W×3 uint8."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


class CorrWiseTask(Task):
    def __init__(self, cfg: Config, steps_per_epoch: int):
        self.cfg = cfg
        self.kind = cfg.get("task", "predict")
        if self.kind not in ("predict", "interpolate"):
            raise VidpredError(f"task must be 'predict' or 'interpolate', got '{self.kind}'")
        model_cfg = PredictorConfig(**cfg.get("model", {}))
        if self.kind == "interpolate" and model_cfg.context_frames != 2:
            raise VidpredError("task 'interpolate' needs model.context_frames = 2")
        self.context = model_cfg.context_frames
        self.predict = 1 if self.kind == "interpolate" else int(cfg.get("data.predict", 1))
        self.model = Predictor(model_cfg)
        self.modules = {"predictor": self.model}
        self.optimizers = {"adam": torch.optim.Adam(self.model.parameters(), lr=float(cfg["train.lr"]),
                                                    betas=tuple(cfg.get("train.betas", (0.9, 0.999))))}
        self.loss = build_loss(cfg)
        self.aux_modules = {"loss": self.loss}  # moved to the training device with the predictor (RAFT's weights)
        self.pixelwise = cfg.get("loss.mode", "corrwise") == "pixelwise"
        self.warmup_epochs = int(cfg.get("loss.pixelwise_warmup_epochs", 0))
        self.steps_per_epoch = steps_per_epoch

    def split(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip B×T×3×H×W → (context, targets B×n×3×H×W)."""
        if self.kind == "interpolate":
            return frames[:, [0, 2]], frames[:, 1:2]
        return frames[:, :self.context], frames[:, self.context:self.context + self.predict]

    def training_step(self, batch, step):
        context, targets = self.split(batch["frames"])
        net = self.train_module("predictor")  # DDP-wrapped under torchrun (rollout's gradients are averaged)
        preds = net.rollout(context, targets.shape[1]) if self.kind == "predict" else net(context)[:, None]
        pixelwise = self.pixelwise or self.epoch < self.warmup_epochs
        # one loss call over all predicted frames (flattened), i.e. the sum over frames up to a constant
        b, n = targets.shape[:2]
        loss = self.loss(preds.flatten(0, 1), targets.flatten(0, 1), pixelwise=pixelwise) * n
        with torch.no_grad():
            l1 = (preds - targets).abs().mean()
        return {"loss": loss, "l1": l1, "pixelwise": float(pixelwise)}

    def sample_images(self, batch, step):
        """One row per clip (up to 4): context | prediction | warped prediction | target."""
        frames = batch["frames"][:4]
        context, targets = self.split(frames)
        pred = self.model(context)
        target = targets[:, 0]
        _, extras = self.loss(pred, target, return_extras=True)
        warped = extras["warped_pred"]
        rows = [torch.cat([*context[i], pred[i], warped[i], target[i]], dim=2) for i in range(frames.shape[0])]
        return {"context_pred_warped_target": to_uint8(torch.cat(rows, dim=1))}

    def validation(self, step):
        return None


def main(config: str | Path, overrides=(), progress: bool = True) -> TrainResult:
    from vidpred.data.loader import ClipDataset

    cfg = load_config(config, overrides, schema=CONFIG_SCHEMA)
    kind = cfg.get("task", "predict")
    context = int(cfg.get("model.context_frames", 3))
    clip_len = 3 if kind == "interpolate" else context + int(cfg.get("data.predict", 1))
    store = cfg.get("data.store")
    if not store or not Path(store).exists():
        raise VidpredError(f"data.store: clip store '{store}' not found (run `vidpred data prepare` first)")
    dataset = ClipDataset(store, split=cfg.get("data.split", "train"), clip_len=clip_len,
                          step=int(cfg.get("data.step", 1)), flip=bool(cfg.get("data.flip", False)),
                          value_range=(-1.0, 1.0))
    bs = int(cfg["train.batch_size"])
    steps_per_epoch = len(dataset) // bs
    if steps_per_epoch < 1:
        raise VidpredError(f"train.batch_size {bs} is larger than the {len(dataset)} clips in {store}")
    train = dict(cfg.get("train"))
    if train.get("max_steps") is None:  # paper configs give epochs
        train["max_steps"] = int(cfg["train.epochs"]) * steps_per_epoch
    out_dir = Path(cfg.get("train.out_dir", "runs/corrwise"))
    settings = LoopSettings.from_config(train, out_dir, stage="corrwise")
    torch.manual_seed(settings.seed)
    task = CorrWiseTask(cfg, steps_per_epoch)
    settings.progress = settings.progress and progress
    batches = epoch_batches(dataset, bs, seed=settings.seed, pin_memory=settings.device.type == "cuda")
    with stage_logging("corrwise", cfg, out_dir) as log:
        result = run_training(task, batches, settings, log)
        if not is_main():  # under torchrun rank 0 writes the model file
            return result
        path = save_predictor_file(task.model, out_dir / MODEL_FILE, steps=result.step, task=kind,
                                   loss=f"{cfg.get('loss.base', 'l1')} {cfg.get('loss.mode', 'corrwise')}")
        log.files([path])
    return result
