"""Training stage "moso_transformer": MOSO-Transformer on a token set (paper §3.2, appendix table).

``vidpred train moso-transformer --config configs/smoke/moso-transformer.yaml [--set key=value …]`` → :func:`main`.

Data: a token set from the ``moso-tokens`` stage (:mod:`vidpred.train.moso_tokens`) — real and pseudo-clip
tokens of every clip. Token geometry (codebook size, map sizes, clip length) comes from the token set;
``model.*`` sets the width and depth. Loss: :func:`vidpred.models.moso.transformer.prediction_loss`
(MaskGIT, 5× weight on changed scene/object tokens, pool-aligned given motion frames). AdamW, cosine decay.

Validation (clips of ``data.eval_split``, default ``val``; a token set without it is an error, test is never
used for tuning): MaskGIT prediction from the pseudo clip, decoded by the VQVAE that made the
tokens; PSNR/SSIM of the predicted frames (those after the context) against the ground truth, beside the
copy-last-context-frame baseline and the VQVAE's own reconstruction (the upper bound). ``pred_*`` are per-clip
means over the predicted frames, each metric the best of ``sample.best_of`` trials on its own (the paper's
protocol on KTH, KITTI and RoboNet: best PSNR and best SSIM of 100 trials per video, §4 Metrics).
``real_so_*``: prediction with the real clip's scene/object tokens and sampled motion — the part of the gap to
the reconstruction that TransformerM alone leaves. ``copy_recon_*``: the pseudo clip's own tokens decoded, i.e.
copy-last-frame through the tokenizer — what a model that predicts no change can reach; below ``copy_*`` by the
VQVAE's reconstruction loss.
Samples: ground truth | prediction | copy-last-frame rows.

Output: ``<train.out_dir>/moso_transformer.pt`` (:func:`vidpred.models.moso.inference.load_transformer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vidpred.config import REQUIRED, Config, Schema, fields_of, load_config, loop_keys
from vidpred.errors import VidpredError
from vidpred.models.moso.inference import TRANSFORMER_KIND, codebook_version, load_vqvae, save_model
from vidpred.models.moso.sampling import predict_tokens
from vidpred.models.moso.transformer import MosoTransformer, TransformerConfig, prediction_loss
from vidpred.train.distributed import is_main
from vidpred.train.loop import (EVAL_SPLIT, LoopSettings, Task, TrainResult, epoch_batches, require_split,
                                run_training, stage_logging)
from vidpred.train.moso_tokens import TokenDataset
from vidpred.train.moso_vqvae import clip_grid, cosine_lambda

# Every config key this stage reads → its default (REQUIRED: no default); any other key is an error.
CONFIG_SCHEMA = Schema("moso_transformer", {
    "data.tokens": REQUIRED, "data.split": "train", "data.eval_split": EVAL_SPLIT,
    "data.moso_store": None,  # None: the token set's MOSO store
    "vqvae": None,  # None: the token set's VQVAE
    **fields_of(TransformerConfig, "model",  # the geometry comes from the token set (geometry())
                exclude=("num_codes", "scene_tokens", "object_tokens", "frames", "motion_hw")),
    "loss.changed_weight": 5.0, "loss.uncond_prob": 0.0,
    "sample.steps": 16, "sample.temperature": 4.5, "sample.best_of": 1, "sample.token_temperature": 1.0,
    "optim.lr": REQUIRED, "optim.weight_decay": 0.01, "optim.scheduler": "cosine", "optim.batch_size": REQUIRED,
    **loop_keys("train"), "train.out_dir": "runs/moso-transformer",
    "eval.max_clips": 16,
})

MODEL_FILE = "moso_transformer.pt"


def geometry(meta: dict) -> dict:
    """Transformer settings fixed by the token set."""
    sh = meta["shapes"]
    return {"num_codes": meta["num_codes"], "scene_tokens": sh["scene"][0] * sh["scene"][1],
            "object_tokens": sh["object"][0] * sh["object"][1], "frames": sh["motion"][0],
            "motion_hw": tuple(sh["motion"][1:])}


@torch.no_grad()
def evaluate_prediction(model, vqvae, store, batches: list[dict], context: int, given: int, steps: int,
                        temperature: float, best_of: int = 1, seed: int = 0,
                        token_temperature: float = 1.0) -> tuple[dict, dict]:
    """Held-out prediction metrics (means over predicted frames) and one sample of each kind."""
    from vidpred.metrics.image import psnr, ssim

    model.eval()
    device = next(model.parameters()).device  # batches and ground truth go where the model is
    gen = torch.Generator(device=device).manual_seed(seed)
    res = {f"{k}_{m}": [] for k in ("pred", "copy", "copy_recon", "recon", "real_so") for m in ("psnr", "ssim")}
    sample = {}
    for batch in batches:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        truth = torch.stack([store.clip(int(c))["frames"] for c in batch["clip"]]).to(device)
        future = truth[:, context:]
        cond = {k: batch[f"cond_{k}"] for k in ("scene", "object", "motion")}
        best, best_p, best_s = None, None, None
        for _ in range(best_of):
            tok = predict_tokens(model, cond, given, steps, temperature, gen, token_temperature)
            frames = vqvae.decode_tokens(tok).clamp(0, 1)
            p, s = psnr(frames[:, context:], future).mean(1), ssim(frames[:, context:], future).mean(1)
            if best is None:
                best, best_p, best_s = frames, p, s
            else:  # each metric's best trial separately (paper §4 Metrics); the shown sample is the best-PSNR one
                best = torch.where((p > best_p)[:, None, None, None, None], frames, best)
                best_p, best_s = torch.maximum(p, best_p), torch.maximum(s, best_s)
        res["pred_psnr"].append(best_p)
        res["pred_ssim"].append(best_s)
        copy = truth[:, context - 1:context].expand_as(future)
        real = {k: batch[k] for k in ("scene", "object", "motion")}
        recon = vqvae.decode_tokens(real).clamp(0, 1)
        copy_recon = vqvae.decode_tokens(cond).clamp(0, 1)
        real_so = vqvae.decode_tokens(predict_tokens(model, cond, given, steps, temperature, gen, token_temperature,
                                                     content=real)).clamp(0, 1)
        for name, x in (("copy", copy), ("copy_recon", copy_recon[:, context:]), ("recon", recon[:, context:]),
                        ("real_so", real_so[:, context:])):
            res[f"{name}_psnr"].append(psnr(x, future).flatten())
            res[f"{name}_ssim"].append(ssim(x, future).flatten())
        if not sample:
            shown = torch.cat([truth[:, :context], best[:, context:]], 1)
            sample = {"truth": truth[0], "prediction": shown[0],
                      "copy_last": torch.cat([truth[0, :context], copy[0]])}
    out = {}
    for k, v in res.items():
        t = torch.cat(v)
        out[k] = float(t.mean())  # PSNR is capped (vidpred.metrics.image), so every clip counts
    return out, sample


class TransformerTask(Task):
    def __init__(self, cfg: Config, meta: dict, vqvae, store, eval_batches: list[dict], max_steps: int):
        model = {**dict(cfg.get("model", {})), **geometry(meta)}
        self.net = MosoTransformer(TransformerConfig.from_dict(model))
        self.given, self.context = int(meta["given_frames"]), int(meta["context"])
        self.changed_weight = float(cfg.get("loss.changed_weight", 5.0))
        self.uncond_prob = float(cfg.get("loss.uncond_prob", 0.0))
        self.steps, self.temperature = int(cfg.get("sample.steps", 16)), float(cfg.get("sample.temperature", 4.5))
        self.best_of = int(cfg.get("sample.best_of", 1))
        self.token_temperature = float(cfg.get("sample.token_temperature", 1.0))
        self.modules = {"transformer": self.net}
        opt = torch.optim.AdamW(self.net.parameters(), lr=float(cfg["optim.lr"]),
                                weight_decay=float(cfg.get("optim.weight_decay", 0.01)))
        self.optimizers = {"adamw": opt}
        self.schedulers = {"cosine": torch.optim.lr_scheduler.LambdaLR(opt, cosine_lambda(max_steps))} \
            if cfg.get("optim.scheduler", "cosine") == "cosine" else {}
        self.vqvae, self.store, self.eval_batches = vqvae, store, eval_batches
        self.aux_modules = {"vqvae": vqvae}  # frozen tokenizer for validation: moved to the training device
        self._sample = {}

    def training_step(self, batch, step):
        self.net.train()
        # the whole loss (three passes of the transformer) as one forward: one DDP forward under torchrun
        return self.call("transformer", prediction_loss, batch, self.given, self.changed_weight, self.uncond_prob)

    def validation(self, step):
        if not self.eval_batches:
            return None
        metrics, self._sample = evaluate_prediction(self.net, self.vqvae, self.store, self.eval_batches,
                                                    self.context, self.given, self.steps, self.temperature,
                                                    self.best_of, token_temperature=self.token_temperature)
        return metrics

    def sample_images(self, batch, step):
        if not self.eval_batches:
            return {}
        sample = self._sample  # from the validation that ran at this step, if any
        if not sample:
            _, sample = evaluate_prediction(self.net, self.vqvae, self.store, self.eval_batches[:1], self.context,
                                            self.given, self.steps, self.temperature, 1,
                                            token_temperature=self.token_temperature)
        self._sample = {}
        return {"prediction": clip_grid([sample["truth"], sample["prediction"], sample["copy_last"]])}


@dataclass
class TransformerResult:
    train: TrainResult
    model_path: Path
    metrics: dict

    def describe(self) -> str:
        m = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items()))
        return f"{self.train.describe()}; model {self.model_path}; held-out prediction: {m}"


def main(config, overrides=(), callback=None) -> TransformerResult:
    """Train MOSO-Transformer on ``data.tokens``; return the result with held-out prediction metrics."""
    from vidpred.preprocess.moso import load_moso_store

    cfg = load_config(config, overrides, schema=CONFIG_SCHEMA)
    out_dir = Path(cfg.get("train.out_dir", "runs/moso-transformer"))
    data = TokenDataset(cfg["data.tokens"], cfg.get("data.split", "train"))
    meta = data.tokens.meta
    vqvae, _ = load_vqvae(cfg.get("vqvae", meta["vqvae"]))
    if codebook_version(vqvae) != meta["codebook_version"]:
        raise VidpredError(f"token set {cfg['data.tokens']} was made with codebook {meta['codebook_version']}, "
                           f"the VQVAE {cfg.get('vqvae', meta['vqvae'])} has {codebook_version(vqvae)}")
    store = load_moso_store(cfg.get("data.moso_store", meta["moso_store"]))  # ground-truth frames for validation
    settings = LoopSettings.from_config(cfg.get("train"), out_dir, "moso_transformer")
    torch.manual_seed(settings.seed)
    bs = int(cfg["optim.batch_size"])
    eval_split = cfg.get("data.eval_split", EVAL_SPLIT)
    require_split(f"MOSO token set {cfg['data.tokens']}", data.tokens.manifest["split"], eval_split,
                  (store.meta.get("source_meta") or {}).get("dataset"),
                  redo=", then run `vidpred preprocess moso` and `vidpred moso tokens` again")
    ev = TokenDataset(cfg["data.tokens"], eval_split)
    n = min(len(ev), int(cfg.get("eval.max_clips", 16)))
    evald = [torch.utils.data.default_collate([ev[i] for i in range(s, min(n, s + bs))]) for s in range(0, n, bs)]
    task = TransformerTask(cfg, meta, vqvae, store, evald, settings.max_steps)
    batches = epoch_batches(data, bs, seed=settings.seed, pin_memory=settings.device.type == "cuda")
    with stage_logging("moso_transformer", cfg, out_dir, callback=callback) as log:
        result = run_training(task, batches, settings, log)
        if not is_main():  # under torchrun rank 0 writes the model file and validates
            return TransformerResult(result, out_dir / MODEL_FILE, {})
        path = save_model(task.net, out_dir / MODEL_FILE, TRANSFORMER_KIND, steps=result.step,
                          codebook_version=meta["codebook_version"], context=task.context, given_frames=task.given,
                          tokens=str(Path(cfg["data.tokens"]).resolve()))
        log.files([path, cfg.get("vqvae", meta["vqvae"])])  # the tokenizer beside it: a whole predictor
        metrics = {k[len("val/"):]: v for k, v in result.metrics.items() if k.startswith("val/")}
        if not metrics:  # e.g. resumed at max_steps: the loop ran no step, so validate here
            metrics = task.validation(result.step) or {}
        log.metrics({f"final/{k}": v for k, v in metrics.items()}, result.step)
    return TransformerResult(result, path, metrics)
