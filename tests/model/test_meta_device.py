"""Every model, loss and metric follows its inputs' device, and runs under CPU bfloat16 autocast (issue 13).

Without a GPU, the ``meta`` device stands in for one: a module is built on the CPU, moved with ``.to("meta")``
and fed meta tensors. A CPU tensor made inside a forward (a missing ``device=``, a constant that is not a buffer,
a submodule that did not move) then raises when it meets the meta tensors, exactly where it would raise on a
GPU; so does reading values (``.item()``, ``.numpy()``, ``if tensor:``), a host sync on a GPU. Meta tensors
have no values, so these tests check shapes and devices; the autocast tests below check values.

Networks use tiny configs (smaller than the smoke profile's) and random weights; LPIPS uses the stand-in
AlexNet trunk of ``tests.standins``, FVD the stand-in I3D. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F

from vidpred.errors import VidpredError

META = torch.device("meta")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is faster, and spares the first bfloat16 kernels a slow thread-pool start."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def meta(*shape, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(*shape, dtype=dtype, device=META)


def not_on_meta(module: torch.nn.Module) -> list[str]:
    return [n for n, t in itertools.chain(module.named_parameters(), module.named_buffers()) if t.device != META]


def to_meta(module: torch.nn.Module) -> torch.nn.Module:
    """Move ``module`` to meta and check that every parameter and buffer went along."""
    module.to(META)
    assert not not_on_meta(module), f"not moved by .to(): {not_on_meta(module)}"
    return module


def assert_meta(t: torch.Tensor, shape=None) -> None:
    assert t.device == META, t.device
    if shape is not None:
        assert tuple(t.shape) == tuple(shape)


def rand(*shape, seed=0, lo=0.0, hi=1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def finite(*ts) -> bool:
    return all(bool(torch.isfinite(t.float()).all()) for t in ts)


@contextlib.contextmanager
def quiet():
    """Silence the stand-in weights' warnings (they are the point of a stand-in)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ------------------------------------------------------------------------------------------ MOSO

VQ = dict(image_size=16, frames=4, pool=2, channels=16, embed_dim=8, num_codes=32, scene_factor=2, object_factor=2,
          motion_factor=4, res_layers=1, res_hidden=8, head_dim=8)
TR = dict(num_codes=32, scene_tokens=64, object_tokens=64, frames=4, motion_hw=(4, 4), dim=16, heads=2, so_layers=1,
          m_layers=1, mlp_dim=32, dropout=0.0)


def _vqvae(**kw):
    from vidpred.models.moso.vqvae import MosoVQVAE, VQVAEConfig

    torch.manual_seed(0)
    return MosoVQVAE(VQVAEConfig(**{**VQ, **kw}))


def _transformer():
    from vidpred.models.moso.transformer import MosoTransformer, TransformerConfig

    torch.manual_seed(0)
    return MosoTransformer(TransformerConfig(**TR)).eval()


@pytest.mark.parametrize("decomposition", ["mso", "none"])
@pytest.mark.parametrize("training", [True, False])
def test_moso_vqvae_losses_and_discriminator_on_meta(decomposition, training):
    from vidpred.models.moso.vqvae import VideoDiscriminator, hinge_d_loss, hinge_g_loss, reconstruction_loss

    net = to_meta(_vqvae(decomposition=decomposition, dead_after=2)).train(training)
    clip = meta(2, 4, 3, 16, 16)
    out = net(clip, clip, clip) if decomposition == "mso" else net(clip)  # train mode runs the EMA update too
    assert_meta(out["recon"], (2, 4, 3, 16, 16))
    assert_meta(out["commitment"], ())
    assert_meta(out["perplexity"], ())
    if decomposition == "mso":
        assert_meta(out["tokens"]["scene"], (2, 8, 8))
        assert_meta(out["tokens"]["motion"], (2, 4, 4, 4))
    assert_meta(net.decode_tokens(out["tokens"]), (2, 4, 3, 16, 16))
    loss = reconstruction_loss(out["recon"], clip, l1=1.0, l2=1.0, ssim=0.5) + out["commitment"]
    assert_meta(loss, ())
    disc = to_meta(VideoDiscriminator(channels=4, layers=2))
    real, fake = disc(clip), disc(out["recon"])
    assert_meta(hinge_d_loss(real, fake), ())
    assert_meta(hinge_g_loss(fake), ())


def test_moso_transformer_loss_and_sampling_on_meta():
    from vidpred.models.moso.sampling import generate_tokens, interpolate_tokens, maskgit_fill, predict_tokens
    from vidpred.models.moso.transformer import prediction_loss

    model = to_meta(_transformer())
    ids = lambda *s: meta(*s, dtype=torch.long)  # noqa: E731
    batch = {"scene": ids(2, 8, 8), "object": ids(2, 8, 8), "motion": ids(2, 4, 4, 4), "cond_scene": ids(2, 8, 8),
             "cond_object": ids(2, 8, 8), "cond_motion": ids(2, 4, 4, 4)}
    model.train()
    out = prediction_loss(model, batch, given_frames=2, uncond_prob=0.5)
    assert_meta(out["loss"], ())
    model.eval()
    cond = {k: batch[k] for k in ("scene", "object", "motion")}
    pred = predict_tokens(model, cond, given=2, steps=2)  # every MaskGIT step runs on meta (nothing is skipped)
    for k, v in cond.items():
        assert_meta(pred[k], v.shape)
    known = torch.tensor([True, False, False, True])  # a CPU mask is taken to the tokens' device
    assert_meta(interpolate_tokens(model, cond, known, steps=2)["motion"], (2, 4, 4, 4))
    gen = generate_tokens(model, 3, (8, 8), (8, 8), steps=2)  # device: the model's
    assert_meta(gen["motion"], (3, 4, 4, 4))
    assert_meta(maskgit_fill(lambda x: meta(*x.shape, 32), ids(2, 6), meta(2, 6, dtype=torch.bool), 32, steps=2),
                (2, 6))


# ------------------------------------------------------------------------------------------ landmarks

AE = dict(num_landmarks=4, image_size=32, pose_channels=4, pose_depth=2, app_channels=4, decoder_channels=[8, 8, 8, 4],
          spade_hidden=8)


def _autoencoder(**kw):
    from vidpred.models.landmarks.autoencoder import AutoencoderConfig, LandmarkAutoencoder

    torch.manual_seed(0)
    return LandmarkAutoencoder(AutoencoderConfig(**{**AE, **kw}))


def _lstm():
    from vidpred.models.landmarks.dynamics import DynamicsConfig, LandmarkLSTM

    torch.manual_seed(0)
    return LandmarkLSTM(DynamicsConfig(num_landmarks=4, hidden=8, layers=2))


@pytest.mark.parametrize("decoder", ["spade", "plain"])
def test_landmark_autoencoder_discriminator_and_training_pairs_on_meta(decoder):
    from vidpred.models.landmarks import augment
    from vidpred.models.landmarks.autoencoder import PatchDiscriminator, lsgan_losses

    net = to_meta(_autoencoder(decoder=decoder)).train()
    images = meta(2, 3, 32, 32)
    pose_in, app_in = augment.color_jitter(images), augment.random_tps(images)  # training pairs on the device
    assert_meta(pose_in, (2, 3, 32, 32))
    assert_meta(app_in, (2, 3, 32, 32))
    out = net(pose_in, app_in)
    assert_meta(out["recon"], (2, 3, 32, 32))
    assert_meta(out["mu"], (2, 4, 2))
    assert_meta(out["cov"], (2, 4, 2, 2))
    d_loss, g_loss = lsgan_losses(to_meta(PatchDiscriminator((4, 8, 8))), images, out["recon"])
    assert_meta(d_loss, ())
    assert_meta(g_loss, ())


def test_landmark_gaussians_and_dynamics_on_meta():
    from vidpred.models.landmarks import gaussians as G

    mu, cov = G.fit_gaussians(G.spatial_softmax(meta(2, 4, 8, 8)))
    assert_meta(G.render_heatmaps(mu, cov, 8, 8, "gaussian"), (2, 4, 8, 8))
    state = G.gaussians_to_state(mu, cov)
    assert_meta(G.state_to_gaussians(state)[1], (2, 4, 2, 2))
    assert_meta(G.interpolate_states(state[0], state[1], [0.0, 0.5, 1.0]), (3, 4, 5))
    assert_meta(G.grid_to_pixels(mu, 8, 8), (2, 4, 2))
    lstm = to_meta(_lstm())
    states = meta(2, 5, 4, 5)
    assert_meta(lstm(states, n_inputs=3), (2, 4, 4, 5))
    assert_meta(lstm.rollout(states[:, :2], 3), (2, 3, 4, 5))


# ------------------------------------------------------------------------------------------ CorrWise

def _predictor():
    from vidpred.models.predictor import Predictor, PredictorConfig

    torch.manual_seed(0)
    return Predictor(PredictorConfig(ngf=4, context_frames=2, n_res3d=1, n_res2d=1))


def _raft():
    from vidpred.models.flow import RaftFlow

    torch.manual_seed(0)
    return RaftFlow("small", iters=1, weights=None)  # random weights: device and precision plumbing only


@pytest.fixture(scope="module")
def vgg():
    """One randomly initialised VGG19 perceptual loss (no download); tests take copies."""
    from vidpred.losses.perceptual import PerceptualLoss

    torch.manual_seed(0)
    return PerceptualLoss(trunk_weights=None)


def test_corrwise_predictor_on_meta():
    net = to_meta(_predictor()).train()
    ctx = meta(2, 2, 3, 16, 16)
    assert_meta(net(ctx), (2, 3, 16, 16))
    assert_meta(net.rollout(ctx, 3), (2, 3, 3, 16, 16))


def test_corrwise_loss_moves_raft_and_the_perceptual_trunk_and_runs_on_meta(vgg):
    from vidpred.losses.corrwise import CorrWiseLoss, WeightedLoss

    base = WeightedLoss({"l1": (0.5, F.l1_loss), "perceptual": (0.5, copy.deepcopy(vgg))})
    loss = CorrWiseLoss(base, _raft(), magnitude_weight=0.1, smoothness_weight=0.1)
    assert "flow.model" in dict(loss.named_modules())  # RAFT is a submodule now: .to() reaches it
    to_meta(loss)
    assert next(loss.flow.model.parameters()).device == META
    assert loss.base.terms["perceptual"].mean.device == META
    loss.train()
    assert not loss.flow.model.training and not loss.base.terms["perceptual"].features.training  # frozen nets stay eval
    pred, target = meta(2, 3, 16, 16).requires_grad_(), meta(2, 3, 16, 16)
    value, extras = loss(pred, target, return_extras=True)
    assert_meta(value, ())
    assert_meta(extras["flow_pred"], (2, 2, 16, 16))
    assert_meta(extras["warped_target"], (2, 3, 16, 16))
    assert_meta(loss(pred, target, pixelwise=True), ())


def test_raft_on_another_device_than_its_inputs_is_a_clear_error():
    raft = to_meta(_raft())
    with pytest.raises(VidpredError, match=r"RAFT weights are on meta .*\.to\(device\)"):
        raft(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))


def test_dis_copies_to_the_cpu_and_restores_dtype_and_is_a_submodule_of_the_loss():
    from vidpred.losses.corrwise import CorrWiseLoss, make_base_loss
    from vidpred.models.flow import DisFlow

    dis = DisFlow("fast")
    x1 = rand(1, 3, 32, 32, seed=0, lo=-1.0)
    x2 = torch.roll(x1, shifts=2, dims=-1)
    ref = dis(x1, x2)
    assert ref.dtype == torch.float32 and ref.device == x1.device
    as64 = dis(x1.double(), x2.double())
    assert as64.dtype == torch.float64
    torch.testing.assert_close(as64, ref.double())  # same CPU computation, returned in the input's dtype
    as16 = dis(x1.bfloat16(), x2.bfloat16())
    assert as16.dtype == torch.bfloat16 and finite(as16)
    loss = CorrWiseLoss(make_base_loss("l1"), dis)
    assert dict(loss.named_modules())["flow"] is dis
    assert list(dis.parameters()) == [] and dis.to(torch.float64) is dis  # nothing to move: OpenCV runs on the CPU


def test_perceptual_loss_on_meta(vgg):
    for normalize in ("none", "imagenet"):
        loss = to_meta(copy.deepcopy(vgg))
        loss.normalize = normalize
        assert_meta(loss(meta(2, 3, 16, 16), meta(2, 3, 16, 16)), ())


# ------------------------------------------------------------------------------------------ metrics

@pytest.fixture
def standin_lpips(monkeypatch, tmp_path):
    """LPIPS with the STAND-IN AlexNet trunk (tests.standins: random weights under the real file name)."""
    from tests.standins import write_standin_alexnet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("VIDPRED_ALLOW_STANDIN_WEIGHTS", "1")
    monkeypatch.setenv("VIDPRED_OFFLINE", "1")
    write_standin_alexnet(tmp_path / "torch" / "hub" / "checkpoints")
    from vidpred.metrics.lpips import LPIPSMetric

    with quiet():
        return LPIPSMetric()


def test_lpips_and_ssim_on_meta(standin_lpips):
    import lpips

    from vidpred.metrics.image import psnr, ssim

    metric = to_meta(standin_lpips)
    assert metric.device == META
    a, b = meta(2, 3, 3, 32, 32), meta(2, 3, 3, 32, 32)  # AlexNet needs ≥ 32 px
    assert_meta(metric(a, b), (2, 3))
    assert_meta(ssim(a, b), (2, 3))
    assert_meta(ssim(a, b, dtype=torch.float32), (2, 3))
    assert_meta(psnr(a, b), (2, 3))
    with quiet():
        net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)  # random trunk
    assert_meta(to_meta(net)(a[0], b[0]), (3, 1, 1, 1))


# ------------------------------------------------------------------------------------------ evaluate predictors

def test_predictors_put_their_networks_on_the_requested_device(tmp_path):
    from vidpred.evaluate.predictors import load_predictor
    from vidpred.models.moso.inference import TRANSFORMER_KIND, VQVAE_KIND, save_model
    from vidpred.train.corrwise import save_predictor_file
    from vidpred.train.landmark_dynamics import save_dynamics
    from vidpred.train.landmarks import save_autoencoder

    (tmp_path / "cw").mkdir()
    save_predictor_file(_predictor(), tmp_path / "cw" / "predictor.pt")
    cw = load_predictor("corrwise", tmp_path / "cw", device="meta")
    out = cw.predict(meta(2, 3, 3, 16, 16), horizon=2)  # context and prediction on the model's device
    assert_meta(out, (2, 1, 2, 3, 16, 16))

    (tmp_path / "moso").mkdir()
    save_model(_vqvae(), tmp_path / "moso" / "moso_vqvae.pt", VQVAE_KIND)
    save_model(_transformer(), tmp_path / "moso" / "moso_transformer.pt", TRANSFORMER_KIND)
    moso = load_predictor("moso", tmp_path / "moso", device="meta")
    (tmp_path / "lm").mkdir()
    save_autoencoder(_autoencoder(), tmp_path / "lm" / "landmarks.pt")
    save_dynamics(_lstm(), tmp_path / "lm" / "dynamics.pt", {})
    lm = load_predictor("landmarks", tmp_path / "lm", device="meta")
    for module in (moso.vqvae, moso.transformer, lm.net, lm.lstm):
        assert not not_on_meta(module)


def test_baseline_prediction_comes_back_on_the_context_device():
    from vidpred.evaluate.predictors import load_predictor

    ctx = meta(2, 3, 3, 16, 16)
    for method in ("copy-last", "linear"):
        assert_meta(load_predictor(method).predict(ctx, horizon=2), (2, 1, 2, 3, 16, 16))


# ------------------------------------------------------------------------------------------ CPU bf16 autocast

def test_codebook_picks_the_same_codes_under_autocast():
    """Nearest-code search in bfloat16 picks other codes for ~1 % of the inputs at MOSO's default codebook size
    (512 × 64); the codebook computes in float32 with autocast off."""
    from vidpred.models.moso.quantizer import EMACodebook

    torch.manual_seed(0)
    cb = EMACodebook(512, 64).eval()
    z = rand(4, 64, 16, 16, seed=1, lo=-2.0, hi=2.0)
    ref = cb(z)
    with bf16():
        out = cb(z.bfloat16())
        same = cb(z)
    assert torch.equal(same.indices, ref.indices)
    assert same.commitment.dtype == torch.float32 and torch.equal(same.quantized, ref.quantized)
    assert out.quantized.dtype == torch.float32 and finite(out.quantized, out.commitment, out.perplexity)


def test_moso_models_under_autocast():
    from vidpred.models.moso.sampling import predict_tokens
    from vidpred.models.moso.transformer import prediction_loss
    from vidpred.models.moso.vqvae import reconstruction_loss

    net = _vqvae().train()
    clip = rand(2, 4, 3, 16, 16, seed=2)
    with bf16():
        out = net(clip * 2 - 1, clip, clip)
        loss = reconstruction_loss(out["recon"], clip, l1=1.0, l2=1.0, ssim=0.5) + out["commitment"]
    assert out["recon"].dtype == torch.bfloat16  # the decoder did run in bfloat16
    assert loss.dtype == torch.float32 and finite(out["recon"], loss, out["perplexity"])
    loss.backward()
    assert all(finite(p.grad) for p in net.parameters() if p.grad is not None)

    model = _transformer()
    g = torch.Generator().manual_seed(0)
    tok = {k: torch.randint(0, 32, shape, generator=g)
           for k, shape in (("scene", (2, 8, 8)), ("object", (2, 8, 8)), ("motion", (2, 4, 4, 4)))}
    batch = {**tok, **{f"cond_{k}": v.roll(1, 0) for k, v in tok.items()}}
    with bf16():
        out = prediction_loss(model.train(), batch, given_frames=2, generator=torch.Generator().manual_seed(1))
        pred = predict_tokens(model.eval(), tok, given=2, steps=3, generator=torch.Generator().manual_seed(2))
    assert finite(out["loss"])
    assert all(int(v.min()) >= 0 and int(v.max()) < 32 for v in pred.values())
    assert torch.equal(pred["motion"][:, :2], tok["motion"][:, :2])  # given frames kept


def test_landmark_math_is_float32_under_autocast():
    """Moments of bfloat16 einsums are off by ~1e-3 (the size of a small covariance); the Gaussian math runs in
    float32 with autocast off, so it gives the float32 result bit for bit."""
    from vidpred.models.landmarks import gaussians as G

    probs = G.spatial_softmax(rand(2, 4, 16, 16, seed=3, hi=6.0))
    mu, cov = G.fit_gaussians(probs)
    heat = G.render_heatmaps(mu, cov, 16, 16)
    with bf16():
        mu_a, cov_a = G.fit_gaussians(probs)
        heat_a = G.render_heatmaps(mu_a, cov_a, 16, 16)
        from_bf16 = G.fit_gaussians(G.spatial_softmax(rand(2, 4, 16, 16, seed=3, hi=6.0).bfloat16()))
    assert torch.equal(mu_a, mu) and torch.equal(cov_a, cov) and torch.equal(heat_a, heat)
    assert from_bf16[1].dtype == torch.float32  # bfloat16 logits are upcast before the softmax


def test_landmark_models_under_autocast():
    net, lstm = _autoencoder().train(), _lstm()
    images = rand(2, 3, 32, 32, seed=4)
    with bf16():
        out = net(images, images.flip(-1))
        states = lstm(torch.cat([out["mu"], out["cov"].flatten(-2)[..., :3]], -1)[:, None].expand(-1, 4, -1, -1), 2)
        future = lstm.rollout(states, 3)
    cov = out["cov"]
    assert cov.dtype == torch.float32 and bool((torch.linalg.det(cov.detach()) > 0).all())  # positive definite
    assert finite(out["recon"], out["mu"], states, future) and future.shape == (2, 3, 4, 5)
    out["recon"].float().mean().backward()
    assert all(finite(p.grad) for p in net.parameters() if p.grad is not None)


def test_corrwise_predictor_and_losses_under_autocast(vgg):
    from vidpred.losses.corrwise import CorrWiseLoss, WeightedLoss, make_base_loss
    from vidpred.models.flow import DisFlow

    net = _predictor().train()
    ctx = rand(2, 2, 3, 32, 32, seed=5, lo=-1.0)
    target = torch.roll(ctx[:, -1], shifts=2, dims=-1)
    with bf16():
        pred = net(ctx)
    assert pred.dtype == torch.bfloat16 and finite(pred)

    # DIS: the corr-wise form upcasts the bfloat16 prediction and warps in float32 under autocast
    dis_loss = CorrWiseLoss(make_base_loss("l1"), DisFlow("fast"))
    with bf16():
        value, extras = dis_loss(pred, target, return_extras=True)
    ref = dis_loss(pred.detach().float(), target)
    assert extras["flow_target"].dtype == torch.float32 and extras["warped_pred"].dtype == torch.float32
    torch.testing.assert_close(value.detach(), ref)
    value.backward()
    assert all(finite(p.grad) for p in net.parameters() if p.grad is not None)

    # RAFT runs in float32 with autocast off: the same flow with and without autocast
    raft = _raft()
    a, b = rand(1, 3, 32, 32, seed=6, lo=-1.0), rand(1, 3, 32, 32, seed=7, lo=-1.0)
    flow = raft(a, b)
    with bf16():
        assert torch.equal(raft(a, b), flow)

    # perceptual: the trunk may run in bfloat16, the loss is float32 and close to the float32 value
    perceptual = copy.deepcopy(vgg)
    x, y = rand(2, 3, 32, 32, seed=8, lo=-1.0), rand(2, 3, 32, 32, seed=9, lo=-1.0)
    full = perceptual(x, y)
    with bf16():
        mixed = WeightedLoss({"perceptual": (1.0, perceptual)})(x.bfloat16(), y)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, full, rtol=0.05, atol=1e-4)


def test_metrics_do_not_change_under_autocast(standin_lpips, i3d_standin):
    from vidpred.metrics.image import ssim

    a, b = rand(2, 3, 3, 32, 32, seed=10), rand(2, 3, 3, 32, 32, seed=11)
    ref32, ref64, ref_lp = ssim(a, b, dtype=torch.float32), ssim(a, b), standin_lpips(a, b)
    feats = i3d_standin.features(rand(2, 10, 3, 16, 16, seed=12))
    with bf16():
        assert torch.equal(ssim(a, b, dtype=torch.float32), ref32)  # no bfloat16 convolutions inside SSIM
        assert torch.equal(ssim(a, b), ref64)
        assert torch.equal(standin_lpips(a, b), ref_lp)
        assert (i3d_standin.features(rand(2, 10, 3, 16, 16, seed=12)) == feats).all()
    assert ref_lp.dtype == torch.float32 and ref_lp.device == a.device


@pytest.fixture
def i3d_standin(monkeypatch, tmp_path):
    """FVD with the STAND-IN I3D torchscript (tests.standins; random 3-D convs under the real file name)."""
    from tests.standins import write_standin_i3d

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("VIDPRED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDPRED_OFFLINE", "1")
    write_standin_i3d()
    from vidpred.metrics.fvd import FVDMetric

    with quiet():
        metric = FVDMetric(batch_size=2)
    assert metric.to("cpu") is metric and metric.device == torch.device("cpu")
    return metric
