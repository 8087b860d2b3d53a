"""The corrwise training stage end to end: a tiny toy-car clip store made here, a few steps, resume."""

import json

import pytest

from vidpred.data.sources.toycar import SOURCE
from vidpred.data.store import StoreWriter
from vidpred.errors import VidpredError
from vidpred.train import corrwise


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "toycar"
    with StoreWriter(out, {"dataset": "toycar", "size": 32, "clip_len": 4, "options": {}}) as w:
        for v in SOURCE.iter_videos(None, {"num_videos": 4, "frames": 8, "size": 16}):
            w.add(v.video_id, v.split, v.frames, fps=v.fps, source=v.source)
    return out


def _args(store, out, steps):
    return [f"data.store={store}", f"train.out_dir={out}", f"train.max_steps={steps}", "train.ckpt_every=2",
            "train.sample_every=2", "train.log_every=1", "train.batch_size=2", "model.ngf=4"]


@pytest.mark.slow
def test_trains_logs_samples_and_resumes(store, tmp_path):
    out = tmp_path / "run"
    r1 = corrwise.main("smoke/corrwise", _args(store, out, 2), progress=False)
    assert r1.step == 2 and (out / "checkpoints" / "step-000002.pt").exists()
    grid = out / "samples" / "context_pred_warped_target" / "step-000002.png"
    from PIL import Image

    w, h = Image.open(grid).size
    assert (w, h) == (6 * 32, 2 * 16)  # 3 context | prediction | warped | target, 2 clips
    r2 = corrwise.main("smoke/corrwise", _args(store, out, 4), progress=False)
    assert r2.resumed_from == 2 and r2.step == 4
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_missing_store_and_bad_mode(tmp_path, store):
    with pytest.raises(VidpredError, match="clip store"):
        corrwise.main("smoke/corrwise", ["data.store=/nonexistent/store"], progress=False)
    with pytest.raises(VidpredError, match="loss.mode"):
        corrwise.main("smoke/corrwise", _args(store, tmp_path / "r", 1) + ["loss.mode=patchwise"], progress=False)
