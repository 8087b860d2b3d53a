"""Training-step time: corr-wise / pixel-wise ratio for the same predictor and batch (measured in one run).

Paper (GPU, RAFT): +30–50 % wall time. Goal here with DIS: ≤ 1.2×. The RAFT ratio uses RANDOMLY
INITIALISED RAFT weights (no checkpoint offline): its cost is real, its flow is not.
"""

import time

import torch

from vidpred.losses.corrwise import CorrWiseLoss, make_base_loss
from vidpred.models.flow import DisFlow, RaftFlow
from vidpred.models.predictor import Predictor


def step_time(loss_fn, pixelwise, steps=6, batch=4, size=(64, 128), ngf=32):
    torch.manual_seed(0)
    model = Predictor(ngf=ngf)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    clip = torch.rand(batch, 4, 3, *size) * 2 - 1
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        pred = model(clip[:, :3])
        loss = loss_fn(pred, clip[:, 3], pixelwise=pixelwise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # first step is warm-up
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main():
    torch.set_num_threads(2)
    base = make_base_loss("l1")
    dis = CorrWiseLoss(base, DisFlow("medium"))
    pix = step_time(dis, pixelwise=True)
    cw = step_time(dis, pixelwise=False)
    print(f"predictor ngf=32, batch 4, 64×128: pixel-wise step {pix * 1e3:.0f} ms, corr-wise (DIS) {cw * 1e3:.0f} ms, "
          f"ratio {cw / pix:.2f}× (goal ≤ 1.2×; paper GPU+RAFT 1.3–1.5×)")
    raft = CorrWiseLoss(base, RaftFlow("large", iters=5, weights=None))
    cr = step_time(raft, pixelwise=False, steps=3)
    print(f"corr-wise with RAFT-large, 5 iterations, RANDOM weights (timing only): {cr * 1e3:.0f} ms, "
          f"ratio {cr / pix:.2f}× on this CPU")


if __name__ == "__main__":
    main()
