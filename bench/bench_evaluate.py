"""Evaluation throughput at 64 px, and what evaluation adds to the smoke run's wall time — measured in one run.

Prints
* predicted frames/s for PSNR + SSIM (float64, the reported convention) and for LPIPS (AlexNet v0.1; the
  trunk here has RANDOM weights — no download offline — so the cost is real and the score is not);
* I3D clips/s for FVD features: 16-frame 64-px clips through an Inception-I3D of the published layer shapes
  (Carreira & Zisserman 2017) at I3D's 224 × 224 input, randomly initialised — compute-equivalent to the
  StyleGAN-V torchscript detector, not that file;
* (with ``--pipeline``, default on) the smoke pipeline's task times from one ``vidpred run --profile smoke`` in a
  temp folder with stand-in weights: evaluation + report seconds / whole run, the goal being ≤ 25 %.

Usage::

    python bench/bench_evaluate.py [--frames 256] [--clips 4] [--no-pipeline]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def rate(fn, n_items: int, repeat: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_items / best


# ---------------------------------------------------------------- Inception-I3D (layer shapes of the paper)

class Unit(nn.Sequential):
    def __init__(self, cin, cout, k=1, s=1):
        super().__init__(nn.Conv3d(cin, cout, k, s, padding=k // 2 if isinstance(k, int) else tuple(x // 2 for x in k),
                                   bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class Mixed(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.b0 = Unit(cin, c[0])
        self.b1 = nn.Sequential(Unit(cin, c[1]), Unit(c[1], c[2], 3))
        self.b2 = nn.Sequential(Unit(cin, c[3]), Unit(c[3], c[4], 3))
        self.b3 = nn.Sequential(nn.MaxPool3d(3, 1, 1), Unit(cin, c[5]))

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(x)], 1)


class InceptionI3D(nn.Module):
    def __init__(self, classes=400):
        super().__init__()
        mixed = [(192, (64, 96, 128, 16, 32, 32)), (256, (128, 128, 192, 32, 96, 64)), "pool",
                 (480, (192, 96, 208, 16, 48, 64)), (512, (160, 112, 224, 24, 64, 64)), (512, (128, 128, 256, 24, 64, 64)),
                 (512, (112, 144, 288, 32, 64, 64)), (528, (256, 160, 320, 32, 128, 128)), "pool2",
                 (832, (256, 160, 320, 32, 128, 128)), (832, (384, 192, 384, 48, 128, 128))]
        layers = [Unit(3, 64, 7, 2), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)), Unit(64, 64), Unit(64, 192, 3),
                  nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))]
        for m in mixed:
            if m == "pool":
                layers.append(nn.MaxPool3d(3, 2, 1))
            elif m == "pool2":
                layers.append(nn.MaxPool3d(2, 2))
            else:
                layers.append(Mixed(*m))
        self.features = nn.Sequential(*layers)
        self.logits = nn.Conv3d(1024, classes, 1)

    def forward(self, x):  # B×3×T×H×W in [-1, 1]
        x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)  # I3D's resize
        h = self.features(x)
        return self.logits(F.adaptive_avg_pool3d(h, 1)).flatten(1)


# ---------------------------------------------------------------- measurements

def metric_rates(n_frames: int) -> dict:
    from vidpred.metrics.image import psnr, ssim
    from vidpred.metrics.lpips import LPIPSMetric

    torch.manual_seed(0)
    truth = torch.rand(n_frames, 3, 64, 64)
    pred = (truth + 0.05 * torch.randn_like(truth)).clamp(0, 1)
    p64, t64 = pred.double(), truth.double()
    out = {"psnr+ssim": rate(lambda: (psnr(p64, t64), ssim(p64, t64)), n_frames)}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TORCH_HOME"] = tmp
        sys.path.insert(0, str(ROOT))
        from tests.standins import write_standin_alexnet

        write_standin_alexnet()
        lp = LPIPSMetric(allow_stand_in=True)
        out["lpips"] = rate(lambda: lp(pred, truth), n_frames)
    return out


@torch.no_grad()
def i3d_rate(n_clips: int) -> float:
    torch.manual_seed(0)
    net = InceptionI3D().eval()
    clips = torch.rand(n_clips, 3, 16, 64, 64) * 2 - 1
    return rate(lambda: net(clips), n_clips, repeat=2)


def pipeline_share() -> tuple[float, float, dict]:
    """(evaluation + report seconds, whole run seconds, per-task seconds) of one smoke run."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TORCH_HOME": f"{tmp}/torch", "VIDPRED_ALLOW_STANDIN_WEIGHTS": "1",
               "VIDPRED_HOME": tmp, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        subprocess.run([sys.executable, "-c", "from tests.standins import write_standin_alexnet, write_standin_i3d;"
                        "write_standin_alexnet(); write_standin_i3d()"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        t = time.perf_counter()
        proc = subprocess.run([str(Path(sys.executable).parent / "vidpred"), "run", "--profile", "smoke", "--workdir",
                               f"{tmp}/runs"], cwd=tmp, env=env, capture_output=True, text=True)
        total = time.perf_counter() - t
        if proc.returncode:
            sys.exit(f"smoke run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    stamps = re.findall(r"(\d\d):(\d\d):(\d\d\.\d+) - INFO - (Executing task|Task) '([^']+)'", log)
    start, tasks = {}, {}
    for h, m, s, kind, name in stamps:
        sec = int(h) * 3600 + int(m) * 60 + float(s)
        if kind == "Executing task":
            start[name] = sec
        elif name in start:
            tasks[name] = sec - start[name]
    evaluation = sum(v for k, v in tasks.items() if k.startswith(("evaluate-", "make-report")))
    return evaluation, total, tasks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rates = metric_rates(args.frames)
    print(f"evaluation throughput at 64 px, {args.threads} threads:")
    print(f"  PSNR + SSIM (float64):       {rates['psnr+ssim']:8.1f} predicted frames/s")
    print(f"  LPIPS v0.1 AlexNet:          {rates['lpips']:8.1f} predicted frames/s (random trunk weights: speed only)")
    print(f"  I3D features (16 × 224²):    {i3d_rate(args.clips):8.2f} clips/s (Inception-I3D shapes, random weights)")
    if args.pipeline:
        evaluation, total, tasks = pipeline_share()
        print(f"smoke run: {total:.0f} s wall; evaluate + report tasks {evaluation:.0f} s = {100 * evaluation / total:.0f} % "
              f"of the run; they add {100 * evaluation / (total - evaluation):.0f} % to the run without them "
              f"(goal ≤ 25 %)")
        for name, sec in sorted(tasks.items(), key=lambda kv: -kv[1]):
            print(f"  {name:28s} {sec:6.1f} s")


if __name__ == "__main__":
    main()
