"""Benchmark: training speed on this machine (issue 13), all figures measured in this one run.

(a) MOSO-Transformer training step at the cpu profile's sizes (``configs/cpu/moso-*.yaml``: 512 codes, 256 scene
    + 256 object + 8×64 motion tokens, dim 128, 4 + 2 layers, batch 8; ``prediction_loss``, backward, AdamW on
    random tokens): its FLOPs (``torch.utils.flop_counter.FlopCounterMode``, forward + backward), the achieved
    FLOP/s, and that as a fraction of this machine's fp32 matmul rate (a 2048² ``torch.mm`` on the same thread
    count, best of three timed blocks). The flop counter does not know PyTorch's fused CPU attention kernel, so
    its formula (the same one the counter uses for the CUDA kernels) is registered here; the fraction is also
    printed with matmuls only (attention not counted, as ``bench_moso.py`` used to).
(b) bf16 vs fp32 step time (``torch.autocast("cpu", torch.bfloat16)`` around forward and loss, backward and
    optimizer outside, as ``train.precision=bf16`` does) of that MOSO-Transformer step and of the smoke CorrWise
    predictor's step (``configs/smoke/corrwise.yaml``: its task's ``training_step`` — predictor, corr-wise L1
    with DIS flow — backward, Adam; batch 4 of random 64×64 clips). The two precisions alternate step by step
    and the median of each is taken, so a change in machine load affects both alike.
(c) steps/s of ``vidpred train corrwise --config smoke/corrwise --nproc N`` for N = 1 and 2 on the CPU, each
    process with one thread (``OMP_NUM_THREADS=1``, ``OPENCV_FOR_THREADS_NUM=1`` for the DIS flow), on the
    default dataset prepared by ``vidpred.data.versioning.prepare_default`` in a temporary directory. The
    batch is global (each of N processes takes batch/N). Steady-state rate: the stage logs every
    ``--ddp-log-every`` steps to its ``metrics.jsonl`` (``train.log_every``; rank 0 writes it, and logs the same
    to MLflow — here a throw-away store), this script notes the time each line appears and takes steps/s
    between the first logged step at or after ``--ddp-warmup`` and the last one — process start-up, imports,
    data loading and the first steps are excluded; the wall time of the whole command is printed too.

With ``--compile`` also (a) with ``model.compile`` (``torch.compile`` of every transformer block): the first
step's time (compilation) and the steady step time.

Usage::

    python bench/bench_training.py [--threads 2] [--steps 6] [--ddp-steps 150] [--skip-ddp] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------
# helpers


def matmul_rate(n: int = 2048, seconds: float = 1.0, blocks: int = 3) -> float:
    """fp32 FLOP/s of an n×n ``torch.mm`` on the current thread count (best of ``blocks`` timed blocks)."""
    a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    torch.mm(a, b, out=c)
    t = time.perf_counter()
    torch.mm(a, b, out=c)
    reps = max(2, int(seconds / max(time.perf_counter() - t, 1e-6)))
    best = 0.0
    for _ in range(blocks):
        t = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t))
    return best


def median_time(fn, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def interleaved(fn_a, fn_b, steps: int, warmup: int = 2) -> tuple[float, float]:
    """Median step times of two step functions run alternately (after ``warmup`` steps of each)."""
    for _ in range(warmup):
        fn_a(), fn_b()
    ta, tb = [], []
    for _ in range(steps):
        t = time.perf_counter()
        fn_a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        fn_b()
        tb.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def flop_counter(**kw):
    """``FlopCounterMode`` that also counts PyTorch's fused CPU attention (forward and backward) with the
    formulas the counter uses for the CUDA attention kernels."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    def fwd(q, k, v, *args, **kwargs):
        return sdpa_flop_count(q, k, v)

    def bwd(grad_out, q, k, v, *args, **kwargs):
        return sdpa_backward_flop_count(grad_out, q, k, v)

    aten = torch.ops.aten
    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = fwd
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = bwd
    return FlopCounterMode(display=False, custom_mapping=mapping, **kw)


# ----------------------------------------------------------------------------------------------------
# (a), (b): MOSO-Transformer


def moso_transformer(batch: int, compile: bool = False):
    """(model, optimizer, token batch) at the cpu profile's sizes."""
    from vidpred.config import load_config
    from vidpred.models.moso.transformer import MosoTransformer, TransformerConfig
    from vidpred.models.moso.vqvae import VQVAEConfig

    vcfg = VQVAEConfig.from_dict(dict(load_config(ROOT / "configs/cpu/moso-vqvae.yaml")["model"]))
    tcfg = dict(load_config(ROOT / "configs/cpu/moso-transformer.yaml")["model"])
    hs, ws = vcfg.token_shape("scene")
    ho, wo = vcfg.token_shape("object")
    hm, wm = vcfg.token_shape("motion")
    geo = {"num_codes": vcfg.num_codes, "scene_tokens": hs * ws, "object_tokens": ho * wo, "frames": vcfg.frames,
           "motion_hw": (hm, wm)}
    if compile:
        tcfg["compile"] = True
    torch.manual_seed(0)
    net = MosoTransformer(TransformerConfig.from_dict({**tcfg, **geo})).train()
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    g = torch.Generator().manual_seed(0)
    rnd = lambda *shape: torch.randint(0, vcfg.num_codes, (batch, *shape), generator=g)  # noqa: E731
    tokens = {"scene": rnd(hs, ws), "object": rnd(ho, wo), "motion": rnd(vcfg.frames, hm, wm),
              "cond_scene": rnd(hs, ws), "cond_object": rnd(ho, wo), "cond_motion": rnd(vcfg.frames, hm, wm)}
    return net, opt, tokens


def transformer_step(net, opt, tokens, bf16: bool = False):
    from vidpred.models.moso.transformer import prediction_loss

    gen = torch.Generator().manual_seed(0)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = prediction_loss(net, tokens, 2, uncond_prob=0.1, generator=gen)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def bench_transformer(args) -> None:
    net, opt, tokens = moso_transformer(args.batch)
    step = transformer_step(net, opt, tokens)
    step()
    with flop_counter() as counter:
        step()
    flops = counter.get_total_flops()
    per_op = counter.get_flop_counts()["Global"]
    mm_flops = sum(v for k, v in per_op.items() if str(k).split(".")[-1] in ("mm", "addmm", "bmm", "baddbmm"))
    attn = flops - mm_flops
    peak = matmul_rate()
    sec = median_time(step, args.steps)
    print(f"fp32 matmul rate (2048² torch.mm, {torch.get_num_threads()} threads, best of 3): {peak / 1e9:.1f} GFLOP/s")
    print(f"(a) MOSO-Transformer training step (cpu profile sizes, batch {args.batch}): {sec:.3f} s/step "
          f"(median of {args.steps})")
    print(f"    FLOPs/step (fwd+bwd): {flops / 1e9:.1f} G = {mm_flops / 1e9:.1f} G matmuls "
          f"+ {attn / 1e9:.1f} G attention")
    print(f"    achieved {flops / sec / 1e9:.1f} GFLOP/s = {flops / sec / peak:.1%} of the fp32 matmul rate "
          f"(goal ≥ 30%); counting matmuls only: {mm_flops / sec / peak:.1%}")
    tok_per_clip = sum(v.flatten(1).shape[1] for k, v in tokens.items() if not k.startswith("cond_"))
    print(f"    {args.batch / sec:.2f} clips/s, {args.batch * tok_per_clip / sec:.0f} target tokens/s")

    if args.compile:
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True  # time a cold compilation, not a hit in inductor's disk cache
        warnings.filterwarnings("ignore", message=".*force_disable_caches.*")
        cnet, copt, _ = moso_transformer(args.batch, compile=True)
        cnet.load_state_dict(net.state_dict())
        cstep = transformer_step(cnet, copt, tokens)
        t = time.perf_counter()
        cstep()
        first = time.perf_counter() - t
        csec = median_time(cstep, args.steps)
        print(f"    with model.compile=true (torch.compile of every block, inductor): first step {first:.1f} s "
              f"(compilation), then {csec:.3f} s/step = {sec / csec:.2f}× the eager speed, "
              f"{flops / csec / peak:.1%} of the matmul rate")

    bstep = transformer_step(net, opt, tokens, bf16=True)
    f32, b16 = interleaved(step, bstep, max(3, args.steps // 2))
    print(f"(b) MOSO-Transformer step: fp32 {f32:.3f} s, bf16 autocast {b16:.3f} s → bf16/fp32 = {b16 / f32:.2f}")


# ----------------------------------------------------------------------------------------------------
# (b): CorrWise predictor


def bench_corrwise(args) -> None:
    from vidpred.config import load_config
    from vidpred.train.corrwise import CorrWiseTask

    cfg = load_config(ROOT / "configs/smoke/corrwise.yaml")
    torch.manual_seed(0)
    task = CorrWiseTask(cfg, steps_per_epoch=1000)
    opt = task.optimizers["adam"]
    b = int(cfg["train.batch_size"])
    t = task.context + task.predict
    frames = torch.rand(b, t, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def make(bf16: bool):
        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = task.training_step({"frames": frames}, 1)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    f32, b16 = interleaved(make(False), make(True), args.steps)
    print(f"(b) CorrWise predictor step (smoke config, batch {b}, 64×64, DIS flow): fp32 {f32 * 1e3:.0f} ms, "
          f"bf16 autocast {b16 * 1e3:.0f} ms → bf16/fp32 = {b16 / f32:.2f}")


# ----------------------------------------------------------------------------------------------------
# (c): DDP steps/s


def run_stage(nproc: int, store: str, out: Path, steps: int, warmup: int, every: int) -> dict:
    """Run ``vidpred train corrwise --nproc nproc`` and time the lines of its metrics.jsonl as they appear."""
    out.mkdir(parents=True, exist_ok=True)
    overrides = [f"data.store={store}", f"train.max_steps={steps}", f"train.log_every={every}", "train.ckpt_every=0",
                 "train.sample_every=0", "train.device=cpu", "train.precision=32",
                 f"train.out_dir={out}", f"train.ckpt_dir={out / 'ckpt'}"]
    cmd = [sys.executable, "-m", "vidpred.cli", "train", "corrwise", "--config", "smoke/corrwise",
           "--nproc", str(nproc)] + [a for o in overrides for a in ("--set", o)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENCV_FOR_THREADS_NUM": "1",
           "PYTHONUNBUFFERED": "1",  # and the stage's MLflow run goes to a throw-away store, not the project's
           "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}", "VIDPRED_ARTIFACT_ROOT": str(out / "mlartifacts")}
    metrics = out / "metrics.jsonl"
    seen: dict[int, float] = {}
    t0 = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        pos = 0
        while True:
            done = proc.poll() is not None
            if metrics.exists():
                with open(metrics) as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                now = time.perf_counter()
                complete = chunk[:chunk.rfind("\n") + 1]
                pos += len(complete.encode())
                for line in complete.splitlines():
                    record = json.loads(line)
                    if "train/loss" in record:  # the training line of a step (validation lines come apart)
                        seen.setdefault(int(record["step"]), now)
            if done:
                break
            time.sleep(0.01)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (out / "log.txt").read_text()[-2000:]
        raise SystemExit(f"vidpred train corrwise --nproc {nproc} failed ({proc.returncode}):\n{tail}")
    first, last = min((s for s in seen if s >= warmup), default=None), max(seen, default=None)
    if first is None or last <= first:
        raise SystemExit(f"--nproc {nproc}: too few logged steps ({sorted(seen)[:5]}…); raise --ddp-steps")
    rate = (last - first) / (seen[last] - seen[first])
    return {"rate": rate, "wall": wall, "startup": seen[min(seen)] - t0, "steps": last - first, "first": first}


def bench_ddp(args) -> None:
    from vidpred.data.versioning import prepare_default

    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        t = time.perf_counter()
        store = str(Path(tmp) / "data")
        prepare_default(store)
        prep = time.perf_counter() - t
        res = {n: run_stage(n, store, Path(tmp) / f"run-{n}", args.ddp_steps, args.ddp_warmup, args.ddp_log_every)
               for n in (1, 2)}
    print(f"(c) vidpred train corrwise --config smoke/corrwise on the CPU, 1 thread per process, global batch 4, "
          f"{args.ddp_steps} steps (default dataset prepared in {prep:.0f} s):")
    for n, r in res.items():
        print(f"    --nproc {n}: {r['rate']:.2f} steps/s (steady state: {r['steps']} steps after step "
              f"{r['first']}, timed from metrics.jsonl); whole command {r['wall']:.1f} s, "
              f"first step logged after {r['startup']:.1f} s")
    print(f"    2 processes / 1 process: {res[2]['rate'] / res[1]['rate']:.2f}× steps/s (ideal 2.00×)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="threads for (a) and (b) (default 2: this machine)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per measurement in (a) and (b)")
    ap.add_argument("--batch", type=int, default=8, help="MOSO-Transformer batch (cpu profile: 8)")
    ap.add_argument("--ddp-steps", type=int, default=150, help="training steps per run in (c)")
    ap.add_argument("--ddp-warmup", type=int, default=10, help="steps in (c) left out of the steady-state rate")
    ap.add_argument("--ddp-log-every", type=int, default=5, help="train.log_every in (c): the timing resolution "
                    "(every logged step also goes to MLflow, which costs time on rank 0)")
    ap.add_argument("--skip-ddp", action="store_true", help="leave out (c)")
    ap.add_argument("--only", choices=("transformer", "corrwise", "ddp"), help="run one part only")
    ap.add_argument("--compile", action="store_true", help="also time (a) with model.compile=true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads for (a)/(b); load average at start {load:.2f}")
    t = time.perf_counter()
    if args.only in (None, "transformer"):
        bench_transformer(args)
    if args.only in (None, "corrwise"):
        bench_corrwise(args)
    if args.only == "ddp" or (args.only is None and not args.skip_ddp):
        bench_ddp(args)
    end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"total {time.perf_counter() - t:.0f} s; load average at end {end:.2f}")


if __name__ == "__main__":
    main()
