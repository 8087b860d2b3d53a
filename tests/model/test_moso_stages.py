"""MOSO stages end to end on a tiny synthetic store made here (shapes, 32 px, 4-frame clips; nothing
downloaded, no pretrained weights): VQVAE training → tokens → Transformer training → the `vidpred moso`
commands, plus the one-line errors for bad inputs (a store without the val split the stages validate on)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vidpred.errors import VidpredError

TINY_VQ = ["model.image_size=32", "model.frames=4", "model.pool=2", "model.channels=8", "model.embed_dim=8",
           "model.num_codes=32", "model.res_hidden=8", "model.head_dim=8", "model.scene_factor=4",
           "model.object_factor=4", "model.motion_factor=8", "optim.batch_size=2", "train.max_steps=3",
           "train.log_every=1", "train.ckpt_every=3", "train.sample_every=3", "preprocess.warmup_steps=2",
           "train.log_model=false", "eval.max_clips=2"]
TINY_TR = ["model.dim=16", "model.heads=2", "model.mlp_dim=16", "optim.batch_size=2", "train.max_steps=2",
           "train.log_every=1", "train.ckpt_every=2", "train.sample_every=2", "sample.steps=2",
           "train.log_model=false", "eval.max_clips=2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from vidpred.data.prepare import prepare
    from vidpred.preprocess.moso import preprocess_store

    root = tmp_path_factory.mktemp("moso")
    prepare("shapes", root / "store", size=32, clip_len=4, cache_dir=root / "cache",
            options={"num_videos": 2, "num_val": 1, "num_test": 1, "num_frames": 8, "num_objects": 1})
    preprocess_store(root / "store", root / "moso", clip_len=4)
    return root


@pytest.mark.slow
def test_vqvae_tokens_transformer_and_commands(tiny, monkeypatch):
    from typer.testing import CliRunner

    from vidpred.cli import app
    from vidpred.train import moso_tokens, moso_transformer, moso_vqvae

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tiny / 'mlflow.db'}")
    vq = moso_vqvae.main("configs/smoke/moso-vqvae.yaml",
                         TINY_VQ + [f"data.moso_store={tiny / 'moso'}", f"train.out_dir={tiny / 'vq'}"])
    assert (tiny / "vq" / "moso_vqvae.pt").is_file()
    assert {"recon_psnr", "recon_ssim", "codebook_usage"} <= set(vq.metrics)
    assert 0 < vq.metrics["codebook_usage"] <= 1
    assert "moso_vqvae: trained to step 3" in vq.describe()
    assert list((tiny / "vq" / "samples" / "reconstruction").glob("*.png"))
    again = moso_vqvae.main("configs/smoke/moso-vqvae.yaml",  # resumed at max_steps: no step, still validated
                            TINY_VQ + [f"data.moso_store={tiny / 'moso'}", f"train.out_dir={tiny / 'vq'}"])
    assert again.train.resumed_from == 3 and again.metrics["recon_psnr"] == pytest.approx(vq.metrics["recon_psnr"])

    toks = moso_tokens.extract_tokens(tiny / "vq" / "moso_vqvae.pt", tiny / "moso", tiny / "tok", context=2)
    meta = json.loads((tiny / "tok" / "tokens.json").read_text())
    assert meta["given_frames"] == 2 and meta["codebook_version"] == toks.codebook_version
    motion = np.load(tiny / "tok" / "motion.npy")
    assert motion.shape == (8, 4, 4, 4) and motion.min() >= 0 and motion.max() < 32
    # every split of the MOSO store is carried through to the token set
    assert meta["splits"] == {"train": 4, "val": 2, "test": 2} and toks.splits == meta["splits"]
    assert json.loads((tiny / "moso" / "moso.json").read_text())["splits"] == meta["splits"]
    assert "val: 2" in toks.describe()
    val = moso_tokens.TokenDataset(tiny / "tok", "val")
    assert sorted(val.tokens.manifest.loc[val.clips, "video_id"].unique()) == ["val-00000"]

    # the kfp component is a thin wrapper: call its python function with artifact stand-ins
    import sys
    from types import SimpleNamespace

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from components.moso import moso_tokens as tokens_component

    art = SimpleNamespace(path=str(tiny / "tok-kfp"), metadata={})
    text = tokens_component.python_func(moso=SimpleNamespace(path=str(tiny / "moso")),
                                        vqvae=SimpleNamespace(path=str(tiny / "vq")), tokens=art, context=2)
    assert "8 clips" in text and art.metadata["codebook_version"] == toks.codebook_version
    assert np.array_equal(np.load(tiny / "tok-kfp" / "motion.npy"), motion)

    tr = moso_transformer.main("configs/smoke/moso-transformer.yaml",
                               TINY_TR + [f"data.tokens={tiny / 'tok'}", f"train.out_dir={tiny / 'tr'}"])
    for k in ("pred_psnr", "pred_ssim", "copy_psnr", "copy_ssim", "recon_ssim", "real_so_psnr", "real_so_ssim",
              "copy_recon_psnr", "copy_recon_ssim"):
        assert k in tr.metrics and np.isfinite(tr.metrics[k])
    # resume: asking for 3 steps continues from the step-2 checkpoint
    tr2 = moso_transformer.main("configs/smoke/moso-transformer.yaml",
                                TINY_TR + [f"data.tokens={tiny / 'tok'}", f"train.out_dir={tiny / 'tr'}",
                                           "train.max_steps=3"])
    assert tr2.train.resumed_from == 2 and tr2.train.step == 3
    # a token set without val clips: one error line, no silent fallback to test, no training
    import shutil

    import pandas as pd

    shutil.copytree(tiny / "tok", tiny / "tok-noval")
    m = pd.read_parquet(tiny / "tok-noval" / "manifest.parquet")
    m.assign(split=m["split"].replace({"val": "train"})).to_parquet(tiny / "tok-noval" / "manifest.parquet")
    with pytest.raises(VidpredError) as err:
        moso_transformer.main("configs/smoke/moso-transformer.yaml",
                              TINY_TR + [f"data.tokens={tiny / 'tok-noval'}", f"train.out_dir={tiny / 'tr-noval'}"])
    assert str(err.value) == (f"MOSO token set {tiny / 'tok-noval'} has no 'val' split (splits: test, train): "
                              "prepare it with -o num_val=N, then run `vidpred preprocess moso` and "
                              "`vidpred moso tokens` again")
    assert not (tiny / "tr-noval").exists()

    # best of N trials (paper §4 Metrics): per clip, the best PSNR and the best SSIM each over all trials
    from vidpred.metrics.image import psnr, ssim
    from vidpred.models.moso.inference import load_transformer, load_vqvae
    from vidpred.models.moso.sampling import predict_tokens
    from vidpred.preprocess.moso import load_moso_store

    vqm, _ = load_vqvae(tiny / "vq" / "moso_vqvae.pt")
    trm, _ = load_transformer(tiny / "tr" / "moso_transformer.pt")
    ds = moso_tokens.TokenDataset(tiny / "tok", "test")
    batches = [torch.utils.data.default_collate([ds[i] for i in range(len(ds))])]
    store = load_moso_store(tiny / "moso")
    many, _ = moso_transformer.evaluate_prediction(trm, vqm, store, batches, 2, 2, 2, 4.5, best_of=4)
    gen = torch.Generator().manual_seed(0)
    future = torch.stack([store.clip(int(c))["frames"] for c in batches[0]["clip"]])[:, 2:]
    cond = {k: batches[0][f"cond_{k}"] for k in ("scene", "object", "motion")}
    trials = [vqm.decode_tokens(predict_tokens(trm, cond, 2, 2, 4.5, gen, 1.0)).clamp(0, 1)[:, 2:] for _ in range(4)]
    p = torch.stack([psnr(f, future).mean(1) for f in trials])
    s = torch.stack([ssim(f, future).mean(1) for f in trials])
    assert many["pred_psnr"] == pytest.approx(p.max(0).values.mean().item(), abs=1e-4)
    assert many["pred_ssim"] == pytest.approx(s.max(0).values.mean().item(), abs=1e-5)
    assert many["pred_ssim"] >= s[0].mean().item() - 1e-6  # never below a single trial

    runner = CliRunner()
    args = ["--vqvae", str(tiny / "vq" / "moso_vqvae.pt"), "--store", str(tiny / "moso")]
    targs = args + ["--transformer", str(tiny / "tr" / "moso_transformer.pt")]
    res = runner.invoke(app, ["moso", "predict", *targs, "--out", str(tiny / "pred"), "--frames", "7",
                              "--steps", "2"])
    assert res.exit_code == 0, res.output
    assert len(list((tiny / "pred" / "prediction").glob("*.png"))) == 7
    assert (tiny / "pred" / "prediction.gif").is_file() and (tiny / "pred" / "grid.png").is_file()
    res = runner.invoke(app, ["moso", "generate", "--vqvae", str(tiny / "vq" / "moso_vqvae.pt"), "--transformer",
                              str(tiny / "tr" / "moso_transformer.pt"), "--out", str(tiny / "gen"), "--num", "2",
                              "--steps", "2"])
    assert res.exit_code == 0, res.output
    assert (tiny / "gen" / "sample-1.gif").is_file() and (tiny / "gen" / "grid.png").is_file()
    res = runner.invoke(app, ["moso", "manipulate", *args, "--out", str(tiny / "man"), "--clip-a", "0",
                              "--clip-b", "5"])
    assert res.exit_code == 0, res.output
    assert (tiny / "man" / "a_on_b.gif").is_file()
    res = runner.invoke(app, ["moso", "manipulate", *args, "--out", str(tiny / "bad"), "--clip-a", "0",
                              "--clip-b", "99"])
    # the app raises VidpredError (`vidpred.cli.main` turns it into one line and exit code 2); no output left
    assert isinstance(res.exception, VidpredError) and "--clip 99 is out of range" in str(res.exception)
    assert not (tiny / "bad").exists()


def test_vqvae_on_a_store_without_val_is_one_clear_error(tmp_path):
    from vidpred.data.prepare import prepare
    from vidpred.preprocess.moso import preprocess_store
    from vidpred.train import moso_vqvae

    prepare("shapes", tmp_path / "store", size=32, clip_len=4, cache_dir=tmp_path / "cache",
            options={"num_videos": 2, "num_test": 1, "num_frames": 4, "num_objects": 1})
    preprocess_store(tmp_path / "store", tmp_path / "moso", clip_len=4)
    with pytest.raises(VidpredError) as err:
        moso_vqvae.main("configs/smoke/moso-vqvae.yaml",
                        TINY_VQ + [f"data.moso_store={tmp_path / 'moso'}", f"train.out_dir={tmp_path / 'vq'}"])
    msg = str(err.value)
    assert msg == (f"MOSO store {tmp_path / 'moso'} has no 'val' split (splits: test, train): prepare it with "
                   "-o num_val=N, then run `vidpred preprocess moso` again")
    assert "\n" not in msg and not (tmp_path / "vq").exists()  # nothing trained, validated on test or written
    # the split is named by the config: asking for another missing one says so too
    with pytest.raises(VidpredError, match="has no 'holdout' split .*set data.eval_split to one of its splits"):
        moso_vqvae.main("configs/smoke/moso-vqvae.yaml",
                        TINY_VQ + [f"data.moso_store={tmp_path / 'moso'}", f"train.out_dir={tmp_path / 'vq'}",
                                   "data.eval_split=holdout"])


def test_corrupt_model_file_is_one_clear_error(tmp_path):
    from vidpred.models.moso.inference import load_transformer, load_vqvae

    bad = tmp_path / "moso_vqvae.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(VidpredError, match="cannot be loaded"):
        load_vqvae(bad)
    torch.save({"kind": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(VidpredError, match="is not a vidpred-moso-transformer"):
        load_transformer(tmp_path / "other.pt")
    with pytest.raises(VidpredError, match="does not exist"):
        load_vqvae(tmp_path / "missing.pt")


def test_token_set_rejects_out_of_range_ids(tmp_path):
    from vidpred.train.moso_tokens import FORMAT, NAMES, load_tokens

    shapes = {"scene": [2, 2], "object": [2, 2], "motion": [4, 1, 1]}
    meta = {"format": FORMAT, "num_clips": 1, "num_codes": 8,
            "shapes": {**shapes, **{f"cond_{k}": v for k, v in shapes.items()}}}
    (tmp_path / "tokens.json").write_text(json.dumps(meta))
    for name in NAMES:
        np.save(tmp_path / f"{name}.npy", np.zeros((1, *meta["shapes"][name]), np.int32))
    import pandas as pd

    pd.DataFrame({"clip": [0], "split": ["train"]}).to_parquet(tmp_path / "manifest.parquet")
    assert load_tokens(tmp_path).meta["num_clips"] == 1
    np.save(tmp_path / "motion.npy", np.full((1, 4, 1, 1), 9, np.int32))
    with pytest.raises(VidpredError, match="motion.npy holds token ids outside 0..7"):
        load_tokens(tmp_path)
