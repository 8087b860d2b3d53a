"""Training-step time: corr-wise / pixel-wise ratio for the same predictor and batch, measured in one run.

Paper (GPU, RAFT): +30–50 % wall time. Goal here with DIS: ≤ 1.2×. The RAFT ratio uses RANDOMLY
INITIALISED RAFT weights (no checkpoint offline): its cost is real, its flow is not — speed only.

Pixel-wise and corr-wise steps are interleaved (A, B, A, B, …) and the median of each is taken, so a
change in machine load during the run affects both alike. Usage::

    python bench/bench_corrwise.py [--steps 8] [--threads 2]
"""

import argparse
import statistics
import time

import torch

from vidpred.losses.corrwise import CorrWiseLoss, make_base_loss
from vidpred.models.flow import DisFlow, RaftFlow
from vidpred.models.predictor import Predictor

BATCH, SIZE, NGF = 4, (64, 128), 32  # the smoke training shape, with the paper's KITTI width (ngf 32)


def make_step(model, opt, clip, loss_fn, pixelwise):
    def step():
        t = time.perf_counter()
        pred = model(clip[:, :3])
        loss = loss_fn(pred, clip[:, 3], pixelwise=pixelwise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - t
    return step


def interleaved(steps_a, steps_b, n):
    """Median time of two step functions run alternately ``n`` times each (after one warm-up each)."""
    steps_a(), steps_b()
    ta, tb = [], []
    for _ in range(n):
        ta.append(steps_a())
        tb.append(steps_b())
    return statistics.median(ta), statistics.median(tb)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (DIS)")
    parser.add_argument("--raft-steps", type=int, default=2, help="timed steps per variant (RAFT)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Predictor(ngf=NGF)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    clip = torch.rand(BATCH, 4, 3, *SIZE) * 2 - 1
    base = make_base_loss("l1")
    shape = f"predictor ngf={NGF}, batch {BATCH}, {SIZE[0]}×{SIZE[1]}, {args.threads} threads"

    dis = CorrWiseLoss(base, DisFlow("medium"))
    pix, cw = interleaved(make_step(model, opt, clip, dis, True), make_step(model, opt, clip, dis, False), args.steps)
    print(f"{shape}\n  DIS (medium):  pixel-wise {pix * 1e3:.0f} ms/step, corr-wise {cw * 1e3:.0f} ms/step, "
          f"ratio {cw / pix:.2f}×  (goal ≤ 1.2×; paper GPU+RAFT 1.3–1.5×)")

    raft = CorrWiseLoss(base, RaftFlow("large", iters=5, weights=None))  # RANDOM weights: speed only
    pix_r, cw_r = interleaved(make_step(model, opt, clip, raft, True), make_step(model, opt, clip, raft, False),
                              args.raft_steps)
    print(f"  RAFT-large, 5 iterations, RANDOMLY INITIALISED (speed only, flow meaningless): pixel-wise "
          f"{pix_r * 1e3:.0f} ms/step, corr-wise {cw_r * 1e3:.0f} ms/step, ratio {cw_r / pix_r:.2f}× on this CPU")


if __name__ == "__main__":
    main()
