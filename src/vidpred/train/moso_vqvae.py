"""Training stage "moso_vqvae": MOSO-VQVAE on a MOSO store (paper §3.1.4, §4 "Implementation").

``vidpred train moso-vqvae --config configs/smoke/moso-vqvae.yaml [--set key=value …]`` → :func:`main`.

Data: a MOSO store (``vidpred preprocess moso``; :class:`vidpred.preprocess.moso.MosoClipDataset`). For the
first ``preprocess.warmup_steps`` steps the scene / object encoders see the preprocessed scene / object
videos, afterwards the raw frames; the motion encoder always sees the difference video.
Loss: ``loss.l1``·L1 + ``loss.l2``·L2 + ``loss.perceptual``·VGG19 perceptual (``vidpred.losses.perceptual``)
+ ``loss.ssim``·(1 − SSIM) (a weight-free structural loss, not in the paper; for runs without VGG weights)
+ commitment (β inside the codebook) + ``loss.disc_weight``·hinge video-GAN loss from ``loss.disc_start``.
Adam, cosine learning-rate decay. The shared loop does checkpoints, resume, progress and MLflow; validation
logs reconstruction PSNR/SSIM on the clips of ``data.eval_split`` (default ``val``; a store without it is an
error, test is never used for tuning) and codebook usage / perplexity; samples are input | reconstruction grids.

Output: ``<train.out_dir>/moso_vqvae.pt`` (:func:`vidpred.models.moso.inference.load_vqvae`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidpred.config import REQUIRED, Config, Schema, fields_of, load_config, loop_keys
from vidpred.errors import VidpredError
from vidpred.models.geometry import image_hw
from vidpred.models.moso.inference import VQVAE_KIND, model_inputs, save_model
from vidpred.models.moso.vqvae import (MosoVQVAE, VideoDiscriminator, VQVAEConfig, hinge_d_loss, hinge_g_loss,
                                       reconstruction_loss)
from vidpred.train.distributed import is_main
from vidpred.train.loop import (EVAL_SPLIT, LoopSettings, Task, TrainResult, epoch_batches, require_split,
                                run_training, stage_logging)

# Every config key this stage reads → its default (REQUIRED: no default); any other key is an error.
CONFIG_SCHEMA = Schema("moso_vqvae", {
    "data.moso_store": REQUIRED, "data.split": "train", "data.eval_split": EVAL_SPLIT,
    **fields_of(VQVAEConfig, "model"),
    "tokens.context": None,  # pseudo-clip context of the token set: read by the pipeline's moso_tokens task
    "preprocess.warmup_steps": 0,
    "loss.l1": 0.0, "loss.l2": 1.0, "loss.ssim": 0.0, "loss.perceptual": 0.0, "loss.disc_weight": 0.0,
    "loss.disc_start": 0,
    "optim.lr": REQUIRED, "optim.scheduler": "cosine", "optim.batch_size": REQUIRED,
    **loop_keys("train"), "train.out_dir": "runs/moso-vqvae",
    "eval.max_clips": 32,
})

MODEL_FILE = "moso_vqvae.pt"


def cosine_lambda(max_steps: int):
    return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, max_steps) / max_steps))


def clip_grid(rows: list[torch.Tensor]) -> np.ndarray:
    """Rows of clips (each T×3×H×W in [0, 1]) → one H×W×3 uint8 picture."""
    from torchvision.utils import make_grid

    t = rows[0].shape[0]
    grid = make_grid(torch.cat([r.detach().float().clamp(0, 1).cpu() for r in rows]), nrow=t, padding=1)
    return (grid.permute(1, 2, 0) * 255).round().byte().numpy()


class VQVAETask(Task):
    def __init__(self, cfg: Config, eval_data: list[dict], max_steps: int):
        self.model_cfg = VQVAEConfig.from_dict(dict(cfg["model"]))
        self.net = MosoVQVAE(self.model_cfg)
        self.warmup = int(cfg.get("preprocess.warmup_steps", 0))
        self.l1, self.l2 = float(cfg.get("loss.l1", 0.0)), float(cfg.get("loss.l2", 1.0))
        self.w_ssim = float(cfg.get("loss.ssim", 0.0))
        self.w_perc = float(cfg.get("loss.perceptual", 0.0))
        self.w_disc, self.disc_start = float(cfg.get("loss.disc_weight", 0.0)), int(cfg.get("loss.disc_start", 0))
        lr = float(cfg["optim.lr"])
        self.modules = {"vqvae": self.net}
        if self.model_cfg.decomposition == "none":  # the ablation leaves the scene/object parts without gradients
            self.find_unused_parameters = {"vqvae"}
        self.optimizers = {"adam": torch.optim.Adam(self.net.parameters(), lr=lr)}
        if cfg.get("optim.scheduler", "cosine") == "cosine":
            self.schedulers = {"cosine": torch.optim.lr_scheduler.LambdaLR(self.optimizers["adam"],
                                                                          cosine_lambda(max_steps))}
        else:
            self.schedulers = {}
        self.perceptual = None
        if self.w_perc > 0:
            from vidpred.losses.perceptual import PerceptualLoss

            self.perceptual = PerceptualLoss(distance="mse", normalize="imagenet")
            self.aux_modules = {"perceptual": self.perceptual}  # moved to the training device with the modules
        self.disc = self.d_opt = None
        if self.w_disc > 0:
            self.disc = VideoDiscriminator()
            self.d_opt = torch.optim.Adam(self.disc.parameters(), lr=lr, betas=(0.5, 0.9))
            self.modules["disc"] = self.disc
        self.eval_data = eval_data

    def raw_content(self, step: int) -> bool:
        return step >= self.warmup

    def training_step(self, batch, step):
        self.net.train()
        net = self.train_module("vqvae")  # DDP-wrapped under torchrun
        out = net(*model_inputs(self.net, batch, self.raw_content(step)))
        recon, target = out["recon"], batch["frames"]
        rec = reconstruction_loss(recon, target, self.l1, self.l2, self.w_ssim)
        loss = rec + out["commitment"]
        logs = {"recon": rec.detach(), "commitment": out["commitment"].detach(), "perplexity": out["perplexity"]}
        if self.perceptual is not None:
            perc = self.perceptual(recon.flatten(0, 1) * 2 - 1, target.flatten(0, 1) * 2 - 1)
            loss = loss + self.w_perc * perc
            logs["perceptual"] = perc.detach()
        if self.disc is not None and step >= self.disc_start:
            disc = self.train_module("disc")  # each backward below follows its own forward (DDP syncs both)
            self.d_opt.zero_grad()
            d_loss = hinge_d_loss(disc(target), disc(recon.detach()))
            self.backward(d_loss, {"d_loss": d_loss})  # finite on every process, scaled under 16-mixed
            self.optimizer_step(self.d_opt, clip=0)  # the discriminator's step is not clipped
            self.d_opt.zero_grad()
            g_loss = hinge_g_loss(disc(recon))
            loss = loss + self.w_disc * g_loss
            logs.update(d_loss=d_loss.detach(), g_loss=g_loss.detach())
        return {"loss": loss, **logs}

    @torch.no_grad()
    def reconstruct(self, batch, step) -> torch.Tensor:
        self.net.eval()
        return self.net(*model_inputs(self.net, batch, self.raw_content(step)))

    def validation(self, step):
        if not self.eval_data:
            return None
        from vidpred.metrics.image import psnr, ssim

        ps, ss, used = [], [], set()
        for batch in self.eval_data:
            batch = self.to_device(batch)
            out = self.reconstruct(batch, step)
            recon = out["recon"].clamp(0, 1)
            ps.append(psnr(recon, batch["frames"]).flatten())
            ss.append(ssim(recon, batch["frames"]).flatten())
            for v in out["tokens"].values():
                used.update(v.flatten().tolist())
        p = torch.cat(ps)
        return {"recon_psnr": float(p.mean()), "recon_ssim": float(torch.cat(ss).mean()),
                "codebook_usage": len(used) / self.model_cfg.num_codes}

    def sample_images(self, batch, step):
        out = self.reconstruct({k: v[:2] for k, v in batch.items() if torch.is_tensor(v)}, step)
        rows = []
        for i in range(min(2, out["recon"].shape[0])):
            rows += [batch["frames"][i], out["recon"][i]]
        return {"reconstruction": clip_grid(rows)}

    def extra_state(self):
        return {"d_opt": self.d_opt.state_dict()} if self.d_opt is not None else {}

    def load_extra_state(self, state):
        if self.d_opt is not None and "d_opt" in state:
            self.d_opt.load_state_dict(state["d_opt"])

    def export_model(self):
        return self.net


def require_moso_split(moso_store, split: str) -> None:
    """One-line VidpredError unless the MOSO store has clips of ``split`` (see ``loop.require_split``)."""
    from vidpred.preprocess.moso import load_moso_store

    store = load_moso_store(moso_store)
    require_split(f"MOSO store {moso_store}", store.manifest["split"], split,
                  (store.meta.get("source_meta") or {}).get("dataset"),
                  redo=", then run `vidpred preprocess moso` again")


def eval_batches(moso_store, split: str, max_clips: int, batch_size: int) -> list[dict]:
    """Up to ``max_clips`` clips of ``split`` as a list of batches; VidpredError if the split has none."""
    from vidpred.preprocess.moso import MosoClipDataset

    require_moso_split(moso_store, split)
    data = MosoClipDataset(moso_store, split)
    n = min(len(data), max_clips)
    items = [data[i] for i in range(n)]
    keys = [k for k, v in items[0].items() if torch.is_tensor(v)]
    return [{k: torch.stack([it[k] for it in items[i:i + batch_size]]) for k in keys}
            for i in range(0, n, batch_size)]


@dataclass
class VQVAEResult:
    train: TrainResult
    model_path: Path
    metrics: dict

    def describe(self) -> str:
        m = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items()))
        return f"{self.train.describe()}; model {self.model_path}; held-out: {m}"


def main(config, overrides=(), callback=None) -> VQVAEResult:
    """Train MOSO-VQVAE as configured; return the result with held-out reconstruction metrics."""
    from vidpred.preprocess.moso import MosoClipDataset

    cfg = load_config(config, overrides, schema=CONFIG_SCHEMA)
    out_dir = Path(cfg.get("train.out_dir", "runs/moso-vqvae"))
    store = cfg["data.moso_store"]
    data = MosoClipDataset(store, cfg.get("data.split", "train"))
    meta = data.store.meta
    model = dict(cfg["model"])
    store_hw = (int(meta["height"]), int(meta.get("width", meta["height"])))
    model_hw = image_hw(model.get("image_size", VQVAEConfig.image_size))
    if (meta["clip_len"], store_hw) != (model.get("frames"), model_hw):
        want = store_hw[0] if store_hw[0] == store_hw[1] else list(store_hw)
        raise VidpredError(f"model.frames/image_size = {model.get('frames')}/{model.get('image_size')} (H×W "
                           f"{model_hw[0]}×{model_hw[1]}) but MOSO store {store} has clips of {meta['clip_len']} "
                           f"frames at {store_hw[0]}×{store_hw[1]} px; set model.frames={meta['clip_len']} "
                           f"model.image_size={want}")
    settings = LoopSettings.from_config(cfg.get("train"), out_dir, "moso_vqvae")
    torch.manual_seed(settings.seed)
    bs = int(cfg["optim.batch_size"])
    evald = eval_batches(store, cfg.get("data.eval_split", EVAL_SPLIT), int(cfg.get("eval.max_clips", 32)), bs)
    task = VQVAETask(cfg, evald, settings.max_steps)
    batches = epoch_batches(data, bs, seed=settings.seed, pin_memory=settings.device.type == "cuda")
    with stage_logging("moso_vqvae", cfg, out_dir, callback=callback) as log:
        result = run_training(task, batches, settings, log)
        if not is_main():  # under torchrun rank 0 writes the model file and validates
            return VQVAEResult(result, out_dir / MODEL_FILE, {})
        path = save_model(task.net, out_dir / MODEL_FILE, VQVAE_KIND, steps=result.step,
                          raw_content=task.raw_content(result.step), lower=meta["lower"], upper=meta["upper"])
        metrics = {k[len("val/"):]: v for k, v in result.metrics.items() if k.startswith("val/")}
        if not metrics:  # e.g. resumed at max_steps: the loop ran no step, so validate here
            metrics = task.validation(result.step) or {}
        log.metrics({f"final/{k}": v for k, v in metrics.items()}, result.step)
    return VQVAEResult(result, path, metrics)
