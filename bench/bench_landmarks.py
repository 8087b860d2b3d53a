"""Benchmark the landmark models on this machine (random weights and inputs; numbers vary with load).

Prints, measured in one run:
* autoencoder training throughput (images/s: augmentation + forward + backward + Adam) for the SPADE and
  the plain decoder at the `cpu` config size, and their ratio;
* the TPS warp: coarse-lattice evaluation vs kornia's per-pixel ``warp_image_tps`` (ratio);
* rollout speed: LSTM states only (frames/s, paper-size LSTM 3×256, K=30) and rollout + decoding.

    .venv/bin/python bench/bench_landmarks.py [--config cpu/landmarks] [--batch 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    from vidpred.config import load_config
    from vidpred.models.landmarks import augment
    from vidpred.models.landmarks import gaussians as G
    from vidpred.models.landmarks.autoencoder import AutoencoderConfig, LandmarkAutoencoder
    from vidpred.models.landmarks.dynamics import DynamicsConfig, LandmarkLSTM

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="cpu/landmarks")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = load_config(args.config)
    size = int(cfg["model.image_size"])
    x = torch.rand(args.batch, 3, size, size)
    tps = augment.TPSParams(translation_px=float(cfg.get("augment.tps_translation_px", 10)))

    rates = {}
    for decoder in ("spade", "plain"):
        net = LandmarkAutoencoder(AutoencoderConfig.from_dict({**cfg["model"], "decoder": decoder}))
        opt = torch.optim.Adam(net.parameters(), 1e-4)

        def step():
            out = net(augment.color_jitter(x), augment.random_tps(x, tps))
            loss = (out["recon"] - x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        rates[decoder] = args.batch / timed(step, args.repeats)
        print(f"autoencoder training ({decoder:5s}, {size}px, K={net.cfg.num_landmarks}, batch {args.batch}): "
              f"{rates[decoder]:7.1f} images/s")
    print(f"  ratio spade / plain: {rates['spade'] / rates['plain']:.2f}")

    src = augment.control_grid(tps.grid, args.batch)
    dst = augment.random_tps_targets(src, size, size, tps)
    coarse = timed(lambda: augment.tps_warp(x, src, dst, coarse=16), args.repeats)
    exact = timed(lambda: augment.tps_warp(x, src, dst, coarse=None), args.repeats)
    print(f"TPS warp: coarse lattice {args.batch / coarse:7.1f} images/s, kornia per-pixel "
          f"{args.batch / exact:7.1f} images/s, speed-up {exact / coarse:.1f}×")

    k = 30
    lstm = LandmarkLSTM(DynamicsConfig(num_landmarks=k, hidden=256, layers=3)).eval()
    ctx = G.gaussians_to_state(torch.rand(1, 2, k, 2) * 2 - 1, 0.01 * torch.eye(2).expand(1, 2, k, 2, 2))
    steps = 100
    t_states = timed(lambda: lstm.rollout(ctx, steps), max(1, args.repeats // 2))
    print(f"rollout, states only (LSTM 3×256, K={k}): {steps / t_states:8.1f} frames/s")
    net = LandmarkAutoencoder(AutoencoderConfig.from_dict({**cfg["model"], "num_landmarks": k})).eval()
    lstm_k = lstm
    app = net.encode_appearance(x[:1])

    @torch.no_grad()
    def rollout_decode():
        states = lstm_k.rollout(ctx, steps)[0]
        mu, cov = G.state_to_gaussians(states)
        net.decode(mu, cov, app.expand(steps, -1, -1))

    t_dec = timed(rollout_decode, max(1, args.repeats // 2))
    print(f"rollout + decoding ({size}px): {steps / t_dec:8.1f} frames/s "
          f"(decoding is {t_dec / t_states:.1f}× the cost of the states alone)")


if __name__ == "__main__":
    main()
