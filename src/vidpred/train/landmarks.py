"""Training stage "landmarks": pretrain the landmark autoencoder (Shih et al. sec. 2.1–2.2, appendix A).

``vidpred train landmarks --config configs/smoke/landmarks.yaml [--set key=value …]`` → :func:`main`.

Each training item is a frame x of a store video plus a second frame of the same video 3–60 frames away.
The pose encoder sees a colour-jittered x; the appearance encoder sees, with probability
``data.temporal_prob``, the other frame, else a TPS-warped x; the decoder reconstructs x. Loss:
``loss.mse`` · MSE + ``loss.perceptual`` · VGG19 perceptual (``vidpred.losses.perceptual``) +
``loss.adversarial`` · LSGAN. Adam with weight decay. The shared loop (``vidpred.train.loop``) does
checkpoints, resume, progress and MLflow; validation is the keypoint regression, fitted on the ``data.split``
(train) frames and scored on the ``data.eval_split`` frames (default ``val``; ``val/keypoint_accuracy``) when
the store has ``centers`` ground truth — then a store without that split is an error (test is never used for
tuning; ``vidpred landmarks evaluate`` scores on test for the report). Without ground truth there is no
validation and no val split is needed.

Output: ``<train.out_dir>/landmarks.pt`` ({"config", "state_dict"}) for the dynamics stage and the
``vidpred landmarks`` commands (:func:`load_autoencoder`), plus the loop's checkpoints and samples.
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
from vidpred.models.landmarks import augment, viz
from vidpred.models.landmarks.autoencoder import (AutoencoderConfig, LandmarkAutoencoder, PatchDiscriminator,
                                                  lsgan_losses)
from vidpred.models.landmarks.gaussians import grid_to_pixels
from vidpred.train.distributed import is_main
from vidpred.train.loop import (EVAL_SPLIT, LoopSettings, Task, TrainResult, epoch_batches, require_split,
                                run_training, stage_logging)

# Every config key this stage reads → its default (REQUIRED: no default); any other key is an error.
CONFIG_SCHEMA = Schema("landmarks", {
    "data.store": REQUIRED, "data.split": "train", "data.eval_split": EVAL_SPLIT, "data.temporal_prob": 0.5,
    "data.min_gap": 3, "data.max_gap": 60,
    **fields_of(AutoencoderConfig, "model"),
    "augment.brightness": 0.4, "augment.contrast": 0.4, "augment.saturation": 0.4, "augment.hue": 0.3,
    "augment.tps_grid": 10, "augment.tps_rotation": 0.3927, "augment.tps_scale": (1.05, 1.15),
    "augment.tps_translation_px": 10, "augment.tps_jitter_px": 2,
    "loss.mse": 1.0, "loss.perceptual": 0.0, "loss.adversarial": 0.0,
    "loss.perceptual_options": {},  # PerceptualLoss arguments (a mapping, taken whole)
    "optim.lr": REQUIRED, "optim.weight_decay": 0.0, "optim.batch_size": REQUIRED,
    **loop_keys("train"), "train.out_dir": "runs/landmarks",
    "eval.threshold_px": 6.0, "eval.max_frames": 512,
})

MODEL_FILE = "landmarks.pt"


class FramePairs(torch.utils.data.Dataset):
    """Every frame of a split as an item: ``frame`` (3, H, W) in [0, 1], ``other`` (a frame of the same
    video ``min_gap``…``max_gap`` frames away, or the frame itself if the video is too short) and
    ``temporal`` (whether to use ``other`` as the appearance input; probability ``temporal_prob``)."""

    def __init__(self, store_dir, split: str = "train", temporal_prob: float = 0.5, min_gap: int = 3,
                 max_gap: int = 60):
        from vidpred.data.store import open_store

        if not 0 <= temporal_prob <= 1:
            raise VidpredError(f"data.temporal_prob must be in [0, 1], got {temporal_prob}")
        if not 1 <= min_gap <= max_gap:
            raise VidpredError(f"data.min_gap/max_gap must satisfy 1 ≤ min_gap ≤ max_gap, got {min_gap}/{max_gap}")
        self.store = open_store(store_dir)
        self.videos = self.store.video_ids(split)
        if not self.videos:
            raise VidpredError(f"clip store {store_dir} has no videos in split '{split}'")
        self.index = [(v, t) for v in self.videos for t in range(len(self.store.frames(v)))]
        self.temporal_prob, self.min_gap, self.max_gap = temporal_prob, min_gap, max_gap

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        vid, t = self.index[i]
        frames = self.store.frames(vid)
        n = len(frames)
        choices = [u for u in range(max(0, t - self.max_gap), min(n, t + self.max_gap + 1))
                   if abs(u - t) >= self.min_gap]
        temporal = bool(choices) and float(torch.rand(())) < self.temporal_prob
        u = choices[int(torch.randint(len(choices), ()))] if temporal else t
        to_t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32) / 255.0).permute(2, 0, 1)  # noqa: E731
        return {"frame": to_t(frames[t]), "other": to_t(frames[u]), "temporal": temporal}


PAPER_PERCEPTUAL = dict(layers=["relu1_2", "relu2_2", "relu3_2", "relu4_2"], weights=[1 / 32, 1 / 16, 1 / 8, 1 / 4],
                        distance="mse", normalize="imagenet")  # Shih et al. appendix A


def _perceptual(cfg: Config):
    """The VGG19 perceptual loss (default relu1_2…relu4_2, MSE, 1/32…1/4) or None if ``loss.perceptual`` is 0.

    ``loss.perceptual_options`` overrides any argument of ``vidpred.losses.perceptual.PerceptualLoss``
    (e.g. ``trunk_weights``); the trunk weights come from ``vidpred.weights`` by default."""
    if float(cfg.get("loss.perceptual", 0.0)) <= 0:
        return None
    from vidpred.losses.perceptual import PerceptualLoss

    options = {**PAPER_PERCEPTUAL, **(cfg.get("loss.perceptual_options", {}) or {})}
    if options.get("trunk_weights", "registry") == "registry":
        from vidpred.weights import weight_path

        weight_path("vgg19")  # fail fast (before building VGG19) when the weights are missing offline
    return PerceptualLoss(**options)


class LandmarkTask(Task):
    def __init__(self, cfg: Config, eval_data: dict | None):
        self.cfg = cfg
        self.model_cfg = AutoencoderConfig.from_dict(cfg.get("model"))
        self.net = LandmarkAutoencoder(self.model_cfg)
        self.modules = {"autoencoder": self.net}
        lr, wd = float(cfg["optim.lr"]), float(cfg.get("optim.weight_decay", 0.0))
        self.optimizers = {"adam": torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=wd)}
        a = cfg.get("augment", {}) or {}
        self.jitter = dict(brightness=a.get("brightness", 0.4), contrast=a.get("contrast", 0.4),
                           saturation=a.get("saturation", 0.4), hue=a.get("hue", 0.3))
        self.tps = augment.TPSParams(grid=int(a.get("tps_grid", 10)), rotation=float(a.get("tps_rotation", 0.3927)),
                                     scale=tuple(a.get("tps_scale", (1.05, 1.15))),
                                     translation_px=float(a.get("tps_translation_px", 10)),
                                     jitter_px=float(a.get("tps_jitter_px", 2)))
        self.w_mse = float(cfg.get("loss.mse", 1.0))
        self.w_perc = float(cfg.get("loss.perceptual", 0.0))
        self.perceptual = _perceptual(cfg)
        self.aux_modules = {"perceptual": self.perceptual}  # VGG19: moved to the training device
        self.w_adv = float(cfg.get("loss.adversarial", 0.0))
        if self.w_adv > 0:
            self.disc = PatchDiscriminator()
            self.modules["discriminator"] = self.disc
            self.optimizers["adam_d"] = torch.optim.Adam(self.disc.parameters(), lr=lr, weight_decay=wd)
            self.manual_optimization = True
        self.eval_data = eval_data
        self.threshold = float(cfg.get("eval.threshold_px", 6.0))

    def export_model(self):
        return self.net

    def make_inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = batch["frame"]
        pose_in = augment.color_jitter(x, **self.jitter)
        warped = augment.random_tps(x, self.tps)
        temporal = batch["temporal"].view(-1, 1, 1, 1)
        return x, pose_in, torch.where(temporal, batch["other"], warped)

    def training_step(self, batch, step):
        x, pose_in, app_in = self.make_inputs(batch)
        out = self.train_module("autoencoder")(pose_in, app_in)  # DDP-wrapped under torchrun
        recon = out["recon"]
        mse = F.mse_loss(recon, x)
        loss = self.w_mse * mse
        logs = {"mse": mse.detach()}
        if self.perceptual is not None:
            perc = self.perceptual(recon * 2 - 1, x * 2 - 1)  # the loss takes [-1, 1] images
            loss = loss + self.w_perc * perc
            logs["perceptual"] = perc.detach()
        if self.w_adv > 0:
            # Generator, then discriminator, each with its own discriminator pass: under DDP every backward must
            # follow its own forward. The discriminator is unchanged in between (only the generator stepped) and
            # has no running statistics, so d_loss equals the one of the generator's pass.
            disc = self.train_module("discriminator")
            opt_g, opt_d = self.optimizers["adam"], self.optimizers["adam_d"]
            _, g_loss = lsgan_losses(disc, x, recon)
            loss = loss + self.w_adv * g_loss
            opt_g.zero_grad(set_to_none=True)
            self.backward(loss, {**logs, "g_loss": g_loss})  # finite on every process; scaled under 16-mixed
            self.optimizer_step(opt_g)
            opt_d.zero_grad(set_to_none=True)
            d_loss, _ = lsgan_losses(disc, x, recon.detach())
            self.backward(d_loss, {"d_loss": d_loss})
            self.optimizer_step(opt_d)
            logs.update(d_loss=d_loss.detach(), g_loss=g_loss.detach())
        return {"loss": loss, **logs}

    def sample_images(self, batch, step):
        x, pose_in, app_in = self.make_inputs({k: v[:6] for k, v in batch.items()})
        out = {k: v.cpu() for k, v in self.net(pose_in, app_in).items() if torch.is_tensor(v)}
        x, pose_in, app_in = x.cpu(), pose_in.cpu(), app_in.cpu()  # drawn with numpy / PIL
        scale = max(1, 128 // x.shape[-1])
        rows = []
        for i in range(len(x)):
            up = lambda a: np.repeat(np.repeat(a, scale, 0), scale, 1)  # noqa: E731
            rows.append([up(viz.to_uint8(x[i:i + 1])[0]),
                         viz.draw_landmarks(viz.to_uint8(pose_in[i:i + 1])[0], out["mu"][i], out["cov"][i], scale),
                         up(viz.to_uint8(app_in[i:i + 1])[0]),
                         viz.draw_landmarks(viz.to_uint8(out["recon"][i:i + 1])[0], out["mu"][i], None, scale)])
        return {"reconstructions": viz.grid(rows)}  # target | pose input + landmarks | appearance input | output

    def validation(self, step):
        if not self.eval_data:
            return None
        res = keypoint_eval(self.net, self.eval_data, self.threshold)
        return {"keypoint_accuracy": res.accuracy, "keypoint_error_px": res.mean_error_px}


# ---------------------------------------------------------------------------------------------------
# Keypoint evaluation on a store with ``centers`` ground truth


def _frames_with_centres(store, split: str, max_frames: int, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    frames, centres = [], []
    for vid in store.video_ids(split):
        gt = store.ground_truth(vid)
        if "centers" not in gt:
            continue
        f, c = store.frames(vid), np.asarray(gt["centers"], dtype=np.float64)
        ok = np.isfinite(c).all(axis=(1, 2))
        frames.append(np.asarray(f)[ok])
        centres.append(c[ok])
    if not frames or sum(len(f) for f in frames) == 0:
        return None
    frames, centres = np.concatenate(frames), np.concatenate(centres)
    if len(frames) > max_frames:
        pick = np.sort(np.random.default_rng(seed).choice(len(frames), max_frames, replace=False))
        frames, centres = frames[pick], centres[pick]
    return frames, centres


def load_eval_data(store_dir, train_split="train", test_split="test", max_frames=512, seed=0) -> dict | None:
    """Frames + centres of a train split (the regression is fitted on) and a held-out split (scored on) for
    the keypoint regression: the stage passes its ``data.eval_split`` (val), ``vidpred landmarks evaluate``
    test. None without ``centers`` ground truth; VidpredError if the store has GT but no held-out split."""
    from vidpred.data.store import open_store

    store = open_store(store_dir)
    tr = _frames_with_centres(store, train_split, max_frames, seed)
    if tr is None:
        return None
    require_split(f"store {store_dir}", store.manifest["split"], test_split, store.meta.get("dataset"))
    te = _frames_with_centres(store, test_split, max_frames, seed + 1)
    if te is None:
        return None
    return {"train": tr, "test": te}


@torch.no_grad()
def landmark_pixels(net: LandmarkAutoencoder, frames: np.ndarray, batch: int = 64) -> np.ndarray:
    """Landmark means in pixels (N, K, 2) of uint8 frames (N, H, W, 3)."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    out = []
    for i in range(0, len(frames), batch):
        x = torch.from_numpy(np.asarray(frames[i:i + batch], dtype=np.float32) / 255).permute(0, 3, 1, 2)
        mu, _ = net.encode_pose(x.to(device))
        out.append(grid_to_pixels(mu, x.shape[-2], x.shape[-1]).double().cpu().numpy())
    net.train(was_training)
    return np.concatenate(out)


def keypoint_eval(net: LandmarkAutoencoder, data: dict, threshold: float = 6.0):
    from vidpred.metrics.keypoints import evaluate_keypoints

    (f_tr, c_tr), (f_te, c_te) = data["train"], data["test"]
    h, w = f_tr.shape[1:3]
    return evaluate_keypoints(landmark_pixels(net, f_tr), c_tr, landmark_pixels(net, f_te), c_te, h, w, threshold)


# ---------------------------------------------------------------------------------------------------
# Saving / loading the trained model


AUTOENCODER_KIND = "vidpred-landmark-autoencoder/1"


def save_autoencoder(net: LandmarkAutoencoder, path: Path) -> Path:
    return save_model_file(path, AUTOENCODER_KIND, net.cfg.to_dict(), net.state_dict())


def load_autoencoder(path) -> LandmarkAutoencoder:
    """A trained autoencoder from ``landmarks.pt`` (eval mode); VidpredError for a missing/corrupt file."""
    blob = load_model_file(path, AUTOENCODER_KIND, "landmark model", "train it with `vidpred train landmarks`")
    net = LandmarkAutoencoder(AutoencoderConfig.from_dict(blob["config"]))
    net.load_state_dict(blob["state_dict"])
    return net.eval()


# ---------------------------------------------------------------------------------------------------


@dataclass
class LandmarkResult:
    train: TrainResult
    model_path: Path
    keypoints: object | None

    def describe(self) -> str:
        kp = f"; {self.keypoints.describe()}" if self.keypoints is not None else ""
        return f"{self.train.describe()}; model {self.model_path}{kp}"


def main(config, overrides=(), callback=None, data_md5: str | None = None) -> LandmarkResult:
    """Train the landmark autoencoder as configured; return the result with the keypoint evaluation."""
    cfg = load_config(config, overrides, schema=CONFIG_SCHEMA)
    out_dir = Path(cfg.get("train.out_dir", "runs/landmarks"))
    store_dir = cfg["data.store"]
    torch.manual_seed(int(cfg.get("train.seed", 0)))
    data = FramePairs(store_dir, cfg.get("data.split", "train"), float(cfg.get("data.temporal_prob", 0.5)),
                      int(cfg.get("data.min_gap", 3)), int(cfg.get("data.max_gap", 60)))
    eval_data = load_eval_data(store_dir, cfg.get("data.split", "train"), cfg.get("data.eval_split", EVAL_SPLIT),
                               int(cfg.get("eval.max_frames", 512)), int(cfg.get("train.seed", 0)))
    task = LandmarkTask(cfg, eval_data)
    size = task.model_cfg.hw
    h, w = data.store.frames(data.videos[0]).shape[1:3]
    if (h, w) != size:
        raise VidpredError(f"model.image_size={task.model_cfg.image_size} (H×W {size[0]}×{size[1]}) but the frames "
                           f"of {store_dir} are {h}×{w}; set model.image_size={h if h == w else [h, w]}")
    settings = LoopSettings.from_config(cfg.get("train"), out_dir, "landmarks")
    batches = epoch_batches(data, int(cfg["optim.batch_size"]), seed=settings.seed,
                            pin_memory=settings.device.type == "cuda")
    with stage_logging("landmarks", cfg, out_dir, data_md5=data_md5, callback=callback) as log:
        result = run_training(task, batches, settings, log)
        if not is_main():  # under torchrun rank 0 writes the model file and evaluates
            return LandmarkResult(result, out_dir / MODEL_FILE, None)
        model_path = save_autoencoder(task.net, out_dir / MODEL_FILE)
        keypoints = keypoint_eval(task.net, eval_data, task.threshold) if eval_data else None
    return LandmarkResult(result, model_path, keypoints)
