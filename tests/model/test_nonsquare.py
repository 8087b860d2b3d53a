"""Non-square frames (issue 12 item 2) through every method, loss and metric: a 32×48 shapes store made here
(`prepare(..., size="32x48")`), each method trained a couple of steps on it and run through
``load_predictor(...).predict`` (B×N×H×3×32×48); ``image_size: [H, W]`` configs, old square ``image_size: N``
model files, and the one error when H or W does not fit a model's down/upsampling. Stand-in weights only
(random AlexNet / VGG19 / I3D trunks; their scores are not real)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model.test_landmarks_stages import TINY as LM_SQUARE
from tests.model.test_moso_stages import TINY_TR, TINY_VQ
from vidpred.errors import VidpredError

H, W = 32, 48
HW = f"[{H},{W}]"
# the tiny settings of the square stage tests, with a non-square image_size (later overrides win)
_SHORT = [f"model.image_size={HW}", "train.max_steps=2", "train.ckpt_every=2", "train.sample_every=2"]
LM_TINY = [*LM_SQUARE, *_SHORT, "eval.max_frames=16"]
VQ_TINY = [*TINY_VQ, *_SHORT, "preprocess.warmup_steps=1"]
TR_TINY = TINY_TR


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    from vidpred.data.prepare import prepare

    root = tmp_path_factory.mktemp("nonsquare")
    prepare("shapes", root / "store", size=f"{H}x{W}", clip_len=4, cache_dir=root / "cache",
            options={"num_videos": 2, "num_val": 1, "num_test": 1, "num_frames": 8, "num_objects": 1})
    assert json.loads((root / "store" / "store.json").read_text())["frame_shape"] == [H, W, 3]
    return root / "store"


def _context(store: Path, k: int) -> torch.Tensor:
    from vidpred.data.store import open_store

    st = open_store(store)
    vids = list(st.manifest["video_id"].unique())[:2]
    clips = [np.asarray(st.frames(v))[:k] for v in vids]
    return torch.from_numpy(np.stack(clips).astype(np.float32) / 255).permute(0, 1, 4, 2, 3).contiguous()


# ------------------------------------------------------------------------------------------- configs

def test_image_size_accepts_n_and_hw_and_names_what_does_not_fit():
    from vidpred.models.landmarks.autoencoder import AutoencoderConfig, LandmarkAutoencoder
    from vidpred.models.moso.vqvae import MosoVQVAE, VQVAEConfig

    lm = dict(num_landmarks=3, pose_channels=4, pose_depth=2, app_channels=4, decoder_channels=[4, 4],
              spade_hidden=4)
    assert AutoencoderConfig.from_dict({**lm, "image_size": 32}).hw == (32, 32)
    assert AutoencoderConfig.from_dict({**lm, "image_size": [32, 32]}).image_size == 32  # square stored as N
    cfg = AutoencoderConfig.from_dict({**lm, "image_size": [H, W]})
    assert cfg.hw == (H, W) and cfg.to_dict()["image_size"] == [H, W]
    assert AutoencoderConfig.from_dict({**lm, "image_size": f"{H}x{W}"}).hw == (H, W)
    x = torch.rand(2, 3, H, W)
    assert LandmarkAutoencoder(cfg)(x, x)["recon"].shape == (2, 3, H, W)
    with pytest.raises(VidpredError, match=r"model.image_size=\[32, 42\].*W=42 is not a multiple of"):
        AutoencoderConfig.from_dict({**lm, "image_size": [32, 42]})
    with pytest.raises(VidpredError, match="model.image_size must be N or"):
        AutoencoderConfig.from_dict({**lm, "image_size": [32, 48, 3]})

    vq = dict(frames=4, pool=2, channels=8, embed_dim=8, num_codes=16, res_hidden=8, head_dim=8, scene_factor=4,
              object_factor=4, motion_factor=8)
    assert VQVAEConfig.from_dict({**vq, "image_size": 32}).token_counts() == {"scene": 64, "object": 64,
                                                                              "motion": 4 * 16}
    vcfg = VQVAEConfig.from_dict({**vq, "image_size": [H, W]})
    assert vcfg.token_counts() == {"scene": 8 * 12, "object": 8 * 12, "motion": 4 * 4 * 6}
    net = MosoVQVAE(vcfg)
    clip = torch.rand(1, 4, 3, H, W)
    out = net(clip, clip, clip)
    assert out["recon"].shape == (1, 4, 3, H, W) and out["tokens"]["motion"].shape == (1, 4, 4, 6)
    assert net.decode_tokens(out["tokens"]).shape == (1, 4, 3, H, W)
    with pytest.raises(VidpredError, match=r"H=36 is not a multiple of model.motion_factor=8"):
        VQVAEConfig.from_dict({**vq, "image_size": [36, 48]})
    with pytest.raises(VidpredError, match="scene_factor"):
        VQVAEConfig.from_dict({**vq, "image_size": [H, W], "scene_factor": 3})


def test_old_square_model_files_still_load(tmp_path):
    from vidpred.models.files import save_model_file
    from vidpred.models.landmarks.autoencoder import AutoencoderConfig, LandmarkAutoencoder
    from vidpred.train.landmarks import AUTOENCODER_KIND, load_autoencoder

    cfg = AutoencoderConfig.from_dict(dict(num_landmarks=3, image_size=32, pose_channels=4, pose_depth=2,
                                           app_channels=4, decoder_channels=[4, 4], spade_hidden=4))
    net = LandmarkAutoencoder(cfg)
    old = dict(cfg.to_dict(), image_size=32)  # the config dict as older versions wrote it
    path = save_model_file(tmp_path / "landmarks.pt", AUTOENCODER_KIND, old, net.state_dict())
    again = load_autoencoder(path)
    assert again.cfg.image_size == 32 and again.cfg.hw == (32, 32)


# --------------------------------------------------------------------------------- losses / metrics

def test_losses_and_metrics_on_a_nonsquare_pair(monkeypatch, tmp_path):
    from tests.standins import write_standin_alexnet, write_standin_i3d
    from torchvision.models import vgg19

    from vidpred.losses.corrwise import CorrWiseLoss, make_base_loss
    from vidpred.losses.perceptual import PerceptualLoss
    from vidpred.metrics.fvd import FVDMetric
    from vidpred.metrics.image import psnr, ssim
    from vidpred.metrics.lpips import LPIPSMetric
    from vidpred.models.flow import DisFlow

    torch.manual_seed(0)
    a = torch.rand(2, 3, H, W)
    b = (a + 0.05 * torch.randn_like(a)).clamp(0, 1)
    s = ssim(a, b)
    assert s.shape == (2,) and bool(((s > 0) & (s < 1)).all()) and float(ssim(a, a).min()) == pytest.approx(1, abs=1e-5)
    assert psnr(a, b).shape == (2,)
    corr = CorrWiseLoss(make_base_loss("l1"), DisFlow("medium"), epsilon=0.1)
    assert float(corr(a * 2 - 1, a * 2 - 1)) < 1e-4 and float(corr(a * 2 - 1, b * 2 - 1)) > 0
    vgg = tmp_path / "vgg19-standin.pth"  # STAND-IN: random weights
    torch.save(vgg19(weights=None).state_dict(), vgg)
    perc = PerceptualLoss(trunk_weights=vgg)
    assert torch.isfinite(perc(a * 2 - 1, b * 2 - 1))

    write_standin_alexnet()
    write_standin_i3d()
    monkeypatch.setenv("VIDPRED_ALLOW_STANDIN_WEIGHTS", "1")
    d = LPIPSMetric()(a, b)
    assert d.shape == (2,) and bool(torch.isfinite(d).all())
    vids = torch.rand(2, 10, 3, H, W)
    assert np.isfinite(FVDMetric().fvd(vids, vids.flip(0) * 0.5))


# --------------------------------------------------------------------------------- every method

@pytest.mark.slow
def test_every_method_trains_and_predicts_on_nonsquare_frames(store, tmp_path, monkeypatch):
    from vidpred.evaluate.predictors import load_predictor
    from vidpred.models.landmarks.autoencoder import AutoencoderConfig, LandmarkAutoencoder
    from vidpred.preprocess.moso import preprocess_store
    from vidpred.train import corrwise, landmark_dynamics, landmarks, moso_tokens, moso_transformer, moso_vqvae
    from vidpred.train.landmarks import load_autoencoder, save_autoencoder

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    def check(out, n=1, horizon=2):
        assert out.shape == (2, n, horizon, 3, H, W)
        assert float(out.min()) >= 0 and float(out.max()) <= 1 and bool(torch.isfinite(out).all())

    # CorrWise predictor
    corrwise.main("smoke/corrwise", [f"data.store={store}", f"train.out_dir={tmp_path / 'cw'}", "train.max_steps=2",
                                     "train.ckpt_every=2", "train.sample_every=2", "train.log_every=1",
                                     "train.batch_size=2", "model.ngf=4"], progress=False)
    check(load_predictor("corrwise", tmp_path / "cw").predict(_context(store, 3), 2))

    # landmarks: autoencoder, then dynamics
    res = landmarks.main("smoke/landmarks", [f"data.store={store}", f"train.out_dir={tmp_path / 'lm'}", *LM_TINY])
    assert res.train.step == 2 and res.keypoints is not None
    landmark_dynamics.main("smoke/landmark_dynamics", [
        f"data.store={store}", f"train.out_dir={tmp_path / 'dyn'}", f"model.autoencoder={tmp_path / 'lm' / 'landmarks.pt'}",
        "dynamics.hidden=8", "dynamics.n_inputs=3", "dynamics.n_future=3", "train.max_steps=2",
        "train.ckpt_every=2", "train.sample_every=2", "eval.rollout_steps=4"])
    check(load_predictor("landmarks", tmp_path / "dyn").predict(_context(store, 3), 2))
    square = torch.rand(2, 3, 3, H, H)
    with pytest.raises(VidpredError, match="trained on 32×48 frames, the context frames are 32×32"):
        load_predictor("landmarks", tmp_path / "dyn").predict(square, 2)
    with pytest.raises(VidpredError, match=r"H×W 32×32\) but the frames of .* are 32×48"):
        landmarks.main("smoke/landmarks", [f"data.store={store}", f"train.out_dir={tmp_path / 'lm-bad'}",
                                           *LM_TINY, "model.image_size=32"])
    sq = tmp_path / "lm-square.pt"  # a square autoencoder on the non-square store: one clear error
    save_autoencoder(LandmarkAutoencoder(AutoencoderConfig.from_dict(
        {**load_autoencoder(tmp_path / "lm" / "landmarks.pt").cfg.to_dict(), "image_size": 32})), sq)
    with pytest.raises(VidpredError, match="trained on 32×32 frames but the frames of .* are 32×48"):
        landmark_dynamics.main("smoke/landmark_dynamics", [f"data.store={store}", f"train.out_dir={tmp_path / 'd-bad'}",
                                                           f"model.autoencoder={sq}"])

    # MOSO: preprocess → VQVAE → tokens → Transformer
    preprocess_store(store, tmp_path / "moso", clip_len=4)
    moso_vqvae.main("configs/smoke/moso-vqvae.yaml",
                    VQ_TINY + [f"data.moso_store={tmp_path / 'moso'}", f"train.out_dir={tmp_path / 'vq'}"])
    with pytest.raises(VidpredError, match=r"at 32×48 px; set model.frames=4 model.image_size=\[32, 48\]"):
        moso_vqvae.main("configs/smoke/moso-vqvae.yaml", VQ_TINY + [
            "model.image_size=32", f"data.moso_store={tmp_path / 'moso'}", f"train.out_dir={tmp_path / 'vq-bad'}"])
    moso_tokens.extract_tokens(tmp_path / "vq" / "moso_vqvae.pt", tmp_path / "moso", tmp_path / "tok", context=2)
    assert np.load(tmp_path / "tok" / "motion.npy").shape[1:] == (4, H // 8, W // 8)
    moso_transformer.main("configs/smoke/moso-transformer.yaml",
                          TR_TINY + [f"data.tokens={tmp_path / 'tok'}", f"train.out_dir={tmp_path / 'tr'}"])
    pred = load_predictor("moso", tmp_path / "tr", options={"steps": 2})
    check(pred.predict(_context(store, 2), 4, samples=2, generator=torch.Generator().manual_seed(0)), n=2, horizon=4)
    with pytest.raises(VidpredError, match="trained on 32×48 frames, the context frames are 32×32"):
        pred.predict(square[:, :2], 2)
