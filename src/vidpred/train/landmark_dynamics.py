"""Training stage "landmark-dynamics": the residual LSTM in (μ, Cholesky) space (Shih et al. sec. 2.4).

``vidpred train landmark-dynamics --config configs/smoke/landmark_dynamics.yaml`` → :func:`main`.

1. The trained autoencoder (``model.autoencoder``: a ``landmarks.pt``) encodes every frame of the
   store's training videos into landmark states (T, K, 5), once.
2. Windows of ``dynamics.n_inputs + dynamics.n_future`` consecutive states are the training items; the
   LSTM predicts the n + m − 1 next states, reading ground truth for n steps and its own output after
   ("n inputs, m future", appendix A); loss = MSE to the true states. The shared loop does the rest.
3. Validation rolls out from ``eval.context`` frames of the ``data.eval_split`` videos (default ``val``; a
   store without it is an error, test is never used for tuning) and reports the landmark-mean error in
   pixels; samples are decoded rollouts (ground truth row, prediction, prediction with landmarks).

Output: ``<train.out_dir>/dynamics.pt`` ({"config", "state_dict"}) and a rollout GIF + grid in
``<train.out_dir>/rollout``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidpred.config import REQUIRED, Config, Schema, fields_of, load_config, loop_keys
from vidpred.errors import VidpredError
from vidpred.models.files import load_model_file, save_model_file
from vidpred.models.landmarks import inference
from vidpred.models.landmarks.dynamics import DynamicsConfig, LandmarkLSTM
from vidpred.models.landmarks.gaussians import grid_to_pixels
from vidpred.train.landmarks import load_autoencoder
from vidpred.train.distributed import is_main
from vidpred.train.loop import (EVAL_SPLIT, LoopSettings, Task, TrainResult, epoch_batches, require_split,
                                run_training, stage_logging)

# Every config key this stage reads → its default (REQUIRED: no default); any other key is an error.
CONFIG_SCHEMA = Schema("landmark_dynamics", {
    "model.autoencoder": REQUIRED,  # a landmarks.pt
    "data.store": REQUIRED, "data.split": "train", "data.eval_split": EVAL_SPLIT, "data.stride": 1,
    **fields_of(DynamicsConfig, "dynamics", exclude=("num_landmarks",)),  # num_landmarks: the autoencoder's
    "dynamics.n_inputs": REQUIRED, "dynamics.n_future": REQUIRED,
    "optim.lr": REQUIRED, "optim.weight_decay": 0.0, "optim.batch_size": REQUIRED,
    **loop_keys("train"), "train.out_dir": "runs/landmark_dynamics",
    "eval.context": 2, "eval.max_videos": 8, "eval.rollout_steps": 100,
})

MODEL_FILE = "dynamics.pt"


def encode_split(net, store, split: str, max_videos: int | None = None) -> list[tuple[str, torch.Tensor]]:
    """(video_id, states (T, K, 5)) for the videos of a split."""
    from tqdm import tqdm

    vids = store.video_ids(split)[:max_videos]
    return [(v, inference.encode_states(net, np.asarray(store.frames(v))))
            for v in tqdm(vids, desc=f"encode {split}", leave=False)]


class StateWindows(torch.utils.data.Dataset):
    """All windows of ``length`` consecutive states (stride ``stride``) of every video."""

    def __init__(self, videos: list[tuple[str, torch.Tensor]], length: int, stride: int = 1):
        self.items = [(s, t) for _, s in videos for t in range(0, len(s) - length + 1, stride)]
        self.length = length
        if not self.items:
            longest = max((len(s) for _, s in videos), default=0)
            raise VidpredError(f"dynamics.n_inputs + n_future = {length} frames is longer than every video "
                               f"(longest {longest})")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        s, t = self.items[i]
        return s[t:t + self.length]


class DynamicsTask(Task):
    def __init__(self, cfg: Config, autoencoder, val_videos, store):
        self.cfg = cfg
        self.ae = autoencoder
        self.dyn_cfg = DynamicsConfig.from_dict({**cfg.get("dynamics"), "num_landmarks": autoencoder.cfg.num_landmarks})
        self.lstm = LandmarkLSTM(self.dyn_cfg)
        self.modules = {"lstm": self.lstm}
        self.optimizers = {"adam": torch.optim.Adam(self.lstm.parameters(), lr=float(cfg["optim.lr"]),
                                                    weight_decay=float(cfg.get("optim.weight_decay", 0.0)))}
        self.n_inputs = int(cfg["dynamics.n_inputs"])
        self.context = int(cfg.get("eval.context", 2))
        self.val_videos = val_videos
        self.store = store
        self.aux_modules = {"autoencoder": autoencoder}  # frozen; decodes samples on the training device

    def export_model(self):
        return self.lstm

    def training_step(self, batch, step):
        pred = self.train_module("lstm")(batch, self.n_inputs)  # DDP-wrapped under torchrun
        target = batch[:, 1:]
        loss = F.mse_loss(pred, target)
        mu_err = (pred[..., :2] - target[..., :2]).norm(dim=-1).mean()
        return {"loss": loss, "mu_error_grid": mu_err.detach()}

    def validation(self, step):
        if not self.val_videos:
            return None
        h, w = self.ae.cfg.hw
        errs = []
        for _, s in self.val_videos:
            if len(s) <= self.context:
                continue
            s = s.to(self.device)
            roll = self.lstm.rollout(s[None, :self.context], len(s) - self.context)[0]
            d = grid_to_pixels(roll[..., :2], h, w) - grid_to_pixels(s[self.context:, :, :2], h, w)
            errs.append(d.norm(dim=-1).mean())
        return {"rollout_mu_error_px": float(torch.stack(errs).mean())} if errs else None

    def sample_images(self, batch, step):
        if not self.val_videos:
            return {}
        vid, _ = self.val_videos[0]
        frames = np.asarray(self.store.frames(vid))
        seq = inference.predict(self.ae, self.lstm, frames[:self.context], len(frames) - self.context)
        every = max(1, len(frames) // 10)
        return {"rollout": inference.landmark_strip(seq, every, frames)}


DYNAMICS_KIND = "vidpred-landmark-dynamics/1"


def save_dynamics(lstm: LandmarkLSTM, path: Path, extra: dict) -> Path:
    return save_model_file(path, DYNAMICS_KIND, lstm.cfg.to_dict(), lstm.state_dict(), **extra)


def load_dynamics(path) -> LandmarkLSTM:
    """A trained LSTM from ``dynamics.pt`` (eval mode); VidpredError for a missing/corrupt file."""
    blob = load_model_file(path, DYNAMICS_KIND, "dynamics model", "train it with `vidpred train landmark-dynamics`")
    lstm = LandmarkLSTM(DynamicsConfig.from_dict(blob["config"]))
    lstm.load_state_dict(blob["state_dict"])
    return lstm.eval()


@dataclass
class DynamicsResult:
    train: TrainResult
    model_path: Path
    rollout_dir: Path | None

    def describe(self) -> str:
        roll = f"; rollout GIF {self.rollout_dir / 'sequence.gif'}" if self.rollout_dir else ""
        return f"{self.train.describe()}; model {self.model_path}{roll}"


def main(config, overrides=(), callback=None, data_md5: str | None = None) -> DynamicsResult:
    """Train the landmark LSTM as configured; write ``dynamics.pt`` and a rollout GIF/grid."""
    from vidpred.data.store import open_store

    cfg = load_config(config, overrides, schema=CONFIG_SCHEMA)
    out_dir = Path(cfg.get("train.out_dir", "runs/landmark_dynamics"))
    store = open_store(cfg["data.store"])
    eval_split = cfg.get("data.eval_split", EVAL_SPLIT)
    require_split(f"store {cfg['data.store']}", store.manifest["split"], eval_split, store.meta.get("dataset"))
    ae = load_autoencoder(cfg["model.autoencoder"])
    h, w = np.asarray(store.frames(store.manifest["video_id"].iloc[0])).shape[1:3]
    if (h, w) != ae.cfg.hw:
        raise VidpredError(f"the autoencoder {cfg['model.autoencoder']} was trained on {ae.cfg.hw[0]}×{ae.cfg.hw[1]} "
                           f"frames but the frames of {cfg['data.store']} are {h}×{w}")
    for p in ae.parameters():
        p.requires_grad_(False)
    n, m = int(cfg["dynamics.n_inputs"]), int(cfg["dynamics.n_future"])
    if n < 1 or m < 0:
        raise VidpredError(f"dynamics.n_inputs must be ≥ 1 and dynamics.n_future ≥ 0, got {n}/{m}")
    settings = LoopSettings.from_config(cfg.get("train"), out_dir, "landmark_dynamics")
    ae.to(settings.device)  # encode on the training device; the states are kept on the CPU (the loader's side)
    train_videos = [(v, s.cpu()) for v, s in encode_split(ae, store, cfg.get("data.split", "train"))]
    val_videos = [(v, s.cpu()) for v, s in encode_split(ae, store, eval_split, int(cfg.get("eval.max_videos", 8)))]
    data = StateWindows(train_videos, n + m, int(cfg.get("data.stride", 1)))
    task = DynamicsTask(cfg, ae, val_videos, store)
    batches = epoch_batches(data, min(int(cfg["optim.batch_size"]), len(data)), seed=settings.seed,
                            pin_memory=settings.device.type == "cuda")
    with stage_logging("landmark_dynamics", cfg, out_dir, data_md5=data_md5, callback=callback) as log:
        result = run_training(task, batches, settings, log)
        if not is_main():  # under torchrun rank 0 writes the model file and the rollout
            return DynamicsResult(result, out_dir / MODEL_FILE, None)
        model_path = save_dynamics(task.lstm, out_dir / MODEL_FILE, {  # the autoencoder's path: vidpred.evaluate
            "n_inputs": n, "n_future": m, "autoencoder": str(Path(cfg["model.autoencoder"]).resolve())})
        log.files([model_path, cfg["model.autoencoder"]])  # the autoencoder beside it: a whole predictor
        rollout_dir = None
        if val_videos:
            vid, _ = val_videos[0]
            frames = np.asarray(store.frames(vid))
            steps = int(cfg.get("eval.rollout_steps", 100))
            ctx = task.context
            seq = inference.predict(ae, task.lstm, frames[:ctx], steps)
            rollout_dir = out_dir / "rollout"
            inference.write_sequence(rollout_dir, seq, truth=frames, grid_every=max(1, (steps + ctx) // 10))
            if log.run_id:
                import mlflow

                mlflow.log_artifact(str(rollout_dir / "sequence.gif"), artifact_path="rollout")
                mlflow.log_artifact(str(rollout_dir / "grid.png"), artifact_path="rollout")
    return DynamicsResult(result, model_path, rollout_dir)
