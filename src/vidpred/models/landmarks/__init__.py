"""Unsupervised landmarks (Shih et al.): Gaussian math, autoencoder, training pairs, LSTM dynamics.

* :mod:`.gaussians`   — fit / render / (μ, Cholesky) state / interpolation (pure torch)
* :mod:`.augment`     — colour jitter and thin-plate-spline training pairs (kornia)
* :mod:`.autoencoder` — pose U-Net, appearance encoder, SPADE or plain decoder, LSGAN critic
* :mod:`.dynamics`    — residual LSTM in state space, "n inputs, m future" training, rollout
"""
