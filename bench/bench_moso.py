"""Benchmark: MOSO-VQVAE and MOSO-Transformer training throughput on this machine, in one run.

Random inputs of the cpu profile's shapes (64 px, 8-frame clips; model sizes from
``configs/cpu/moso-*.yaml``). Prints, all measured here and now:

* VQVAE: clips/s and tokens/s of full training steps (forward, backward, Adam);
* Transformer: clips/s and tokens/s of training steps (``prediction_loss``, backward, AdamW), the FLOPs of
  one step (``torch.utils.flop_counter``, with PyTorch's fused CPU attention counted — see
  ``bench_training.py``, which also prints the figures of issue 13), the achieved FLOP/s, and that as a
  fraction of this machine's fp32 matmul rate (a 1024² ``torch.mm`` loop timed in the same run).

Usage::

    python bench/bench_moso.py [--steps 5] [--batch 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from vidpred.config import load_config
from vidpred.models.moso.transformer import MosoTransformer, TransformerConfig, prediction_loss
from vidpred.models.moso.vqvae import MosoVQVAE, VQVAEConfig


def matmul_rate(n: int = 1024, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    t = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def timed(fn, steps: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b = args.batch

    vcfg = VQVAEConfig.from_dict(dict(load_config("configs/cpu/moso-vqvae.yaml")["model"]))
    vq = MosoVQVAE(vcfg).train()
    opt = torch.optim.Adam(vq.parameters(), 1e-4)
    x = torch.rand(b, vcfg.frames, 3, vcfg.image_size, vcfg.image_size)

    def vq_step():
        out = vq(x * 2 - 1, x, x)
        loss = torch.nn.functional.mse_loss(out["recon"], x) + out["commitment"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    vq_s = timed(vq_step, args.steps)
    vq_tokens = sum(vcfg.token_counts().values())

    tcfg = dict(load_config("configs/cpu/moso-transformer.yaml")["model"])
    s = vcfg.image_size
    geo = {"num_codes": vcfg.num_codes, "scene_tokens": (s // vcfg.scene_factor) ** 2,
           "object_tokens": (s // vcfg.object_factor) ** 2, "frames": vcfg.frames,
           "motion_hw": (s // vcfg.motion_factor,) * 2}
    tr = MosoTransformer(TransformerConfig.from_dict({**tcfg, **geo})).train()
    topt = torch.optim.AdamW(tr.parameters(), 1e-4)
    hs, ho, hm = s // vcfg.scene_factor, s // vcfg.object_factor, s // vcfg.motion_factor
    rnd = lambda *shape: torch.randint(0, vcfg.num_codes, (b, *shape))  # noqa: E731
    batch = {"scene": rnd(hs, hs), "object": rnd(ho, ho), "motion": rnd(vcfg.frames, hm, hm),
             "cond_scene": rnd(hs, hs), "cond_object": rnd(ho, ho), "cond_motion": rnd(vcfg.frames, hm, hm)}
    gen = torch.Generator().manual_seed(0)

    def tr_step():
        loss = prediction_loss(tr, batch, 2, generator=gen)["loss"]
        topt.zero_grad()
        loss.backward()
        topt.step()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_training import flop_counter  # FlopCounterMode that also counts the fused CPU attention

    with flop_counter() as counter:
        tr_step()
    flops = counter.get_total_flops()
    tr_s = timed(tr_step, args.steps)
    peak = matmul_rate()
    tr_tokens = geo["scene_tokens"] + geo["object_tokens"] + vcfg.frames * hm * hm

    print(f"threads={args.threads} batch={b} steps={args.steps} (64 px, {vcfg.frames}-frame clips, cpu profile sizes)")
    print(f"fp32 matmul rate (1024² mm): {peak / 1e9:.1f} GFLOP/s")
    print(f"MOSO-VQVAE training:       {b / vq_s:.2f} clips/s, {b * vq_tokens / vq_s:.0f} tokens/s "
          f"({vq_s:.2f} s/step, {vq_tokens} tokens/clip)")
    print(f"MOSO-Transformer training: {b / tr_s:.2f} clips/s, {b * tr_tokens / tr_s:.0f} tokens/s "
          f"({tr_s:.2f} s/step, {tr_tokens} target tokens/clip)")
    print(f"MOSO-Transformer FLOPs/step (fwd+bwd): {flops / 1e9:.2f} GFLOP; achieved {flops / tr_s / 1e9:.1f} GFLOP/s "
          f"= {flops / tr_s / peak:.1%} of the matmul rate")


if __name__ == "__main__":
    main()
