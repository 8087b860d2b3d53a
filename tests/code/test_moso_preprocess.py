"""MOSO preprocessing: the decomposition math on hand-made clips, and the store round trip.

All data is made here: a static gray background with a bright square that moves one step per frame
(contrast 0.4, so single and double differences 0.4 / 0.8 both fall inside the paper's [0.1, 0.9] band).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidpred.errors import VidpredError
from vidpred.preprocess.moso import decompose

BG, FG, SIZE, SQ = 0.3, 0.7, 16, 4


def moving_square(t: int = 6, step: int = 2, start: int = 1) -> np.ndarray:
    """T×3×H×W float32: square of side SQ moving right by ``step`` pixels each frame."""
    clip = np.full((t, 3, SIZE, SIZE), BG, np.float32)
    for i in range(t):
        x = start + i * step
        clip[i, :, 5:5 + SQ, x:x + SQ] = FG
    return clip


def reference(clip: np.ndarray, lower: float, upper: float, nxt: np.ndarray | None = None) -> dict:
    """Per-frame loop written straight from the formula (the module docstring's variant)."""
    t = clip.shape[0]
    out = {k: [] for k in ("motion", "scene", "object", "mask")}
    for i in range(t):
        x_next = clip[i + 1] if i + 1 < t else (nxt if nxt is not None else clip[i])
        motion = 2 * clip[i] - clip[0] - x_next
        peak = np.abs(motion).max(axis=0)
        mask = (peak >= lower) & (peak <= upper)
        obj = clip[i] * mask
        out["motion"].append(motion)
        out["mask"].append(mask)
        out["object"].append(obj)
        out["scene"].append(clip[i] - obj)
    return {k: np.stack(v) for k, v in out.items()}


def test_mask_covers_changed_pixels_and_scene_keeps_background():
    clip = moving_square()
    parts = decompose(clip[None])
    mask = parts["mask"][0].numpy()
    for i in range(clip.shape[0]):
        nxt = clip[min(i + 1, clip.shape[0] - 1)]
        changed = (clip[i] != clip[0]).any(0) | (clip[i] != nxt).any(0)
        np.testing.assert_array_equal(mask[i], changed, err_msg=f"frame {i}")
    # pixels the square never visits are background in every scene frame, and never in the mask
    never = ~(clip == FG).any(axis=(0, 1))
    assert never.sum() > 100
    scene = parts["scene"][0].numpy()
    np.testing.assert_allclose(scene[:, :, never], BG)
    assert not mask[:, never].any()
    # the square's pixels at frame 3 (not at the first or next frame's place) are object, not scene
    obj = parts["object"][0].numpy()
    np.testing.assert_allclose(obj[3, :, 5:9, 7:9], FG)
    np.testing.assert_allclose(scene[3, :, 5:9, 7:9], 0.0)


def test_object_plus_scene_is_frame_and_ranges():
    rng = np.random.default_rng(0)
    clips = rng.random((3, 5, 3, 8, 8), dtype=np.float32)
    parts = decompose(clips, 0.1, 0.9)
    x = torch.from_numpy(clips)
    torch.testing.assert_close(parts["scene"] + parts["object"], x)
    assert parts["motion"].shape == (3, 5, 3, 8, 8) and parts["mask"].shape == (3, 5, 8, 8)
    assert parts["mask"].dtype == torch.bool
    assert parts["motion"].min() >= -2 and parts["motion"].max() <= 2
    for k in ("scene", "object"):
        assert parts[k].min() >= 0 and parts[k].max() <= 1
    # masked pixels are object (scene 0); unmasked are scene (object 0)
    m = parts["mask"][:, :, None].expand_as(x)
    assert (parts["scene"][m] == 0).all() and (parts["object"][~m] == 0).all()
    # random noise gives a mask that is neither empty nor full
    assert 0.05 < parts["mask"].float().mean() < 0.95


def test_static_video_has_zero_motion_and_empty_mask():
    clip = np.broadcast_to(np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32), (6, 3, 8, 8))
    parts = decompose(clip[None].copy())
    assert torch.count_nonzero(parts["motion"]) == 0
    assert not parts["mask"].any()
    torch.testing.assert_close(parts["scene"][0], torch.from_numpy(clip.copy()))


def test_uint8_input_matches_float_input():
    clip = (moving_square() * 255).round().astype(np.uint8)
    a = decompose(clip[None])
    b = decompose(clip[None].astype(np.float32) / 255.0)
    for k in a:
        torch.testing.assert_close(a[k], b[k])


@pytest.mark.parametrize("with_next", [False, True])
def test_vectorised_equals_per_frame_loop(with_next):
    rng = np.random.default_rng(2)
    clips = rng.random((4, 6, 3, 10, 10), dtype=np.float32)
    nxt = rng.random((4, 3, 10, 10), dtype=np.float32) if with_next else None
    parts = decompose(clips, 0.2, 0.7, next_frames=nxt)
    for n in range(4):
        ref = reference(clips[n], 0.2, 0.7, None if nxt is None else nxt[n])
        for k, v in ref.items():
            np.testing.assert_allclose(parts[k][n].numpy(), v, atol=1e-6, err_msg=k)


def test_first_and_last_frame_conventions():
    clip = moving_square(t=4)
    parts = decompose(clip[None])
    m = parts["motion"][0].numpy()
    np.testing.assert_allclose(m[0], clip[0] - clip[1], atol=1e-6)  # x_prev = x_0
    np.testing.assert_allclose(m[-1], clip[-1] - clip[0], atol=1e-6)  # last frame repeated as x_next
    nxt = np.full((1, 3, SIZE, SIZE), BG, np.float32)
    m2 = decompose(clip[None], next_frames=nxt)["motion"][0].numpy()
    np.testing.assert_allclose(m2[-1], 2 * clip[-1] - clip[0] - nxt[0], atol=1e-6)


@pytest.mark.parametrize("lower,upper", [(0.9, 0.1), (0.5, 0.5), (-0.1, 0.9), (0.1, 1.5), (float("nan"), 0.9)])
def test_impossible_thresholds_raise(lower, upper):
    with pytest.raises(VidpredError, match="lower"):
        decompose(moving_square()[None], lower, upper)


def test_bad_clips_raise():
    with pytest.raises(VidpredError, match="N×T×C×H×W"):
        decompose(np.zeros((3, 8, 8), np.float32))
    bad = moving_square()[None].copy()
    bad[0, 1, 0, 0, 0] = np.nan
    with pytest.raises(VidpredError, match="NaN"):
        decompose(bad)


# ----------------------------------------------------------------------------------------------------
# Store round trip (a small clip store made here with the real StoreWriter)


def make_store(path, lengths=(10, 9, 3), splits=("train", "train", "test")):
    from vidpred.data.store import StoreWriter

    with StoreWriter(path, {"dataset": "test", "size": SIZE, "clip_len": 4, "options": {}}) as w:
        for i, (n, split) in enumerate(zip(lengths, splits)):
            clip = moving_square(t=n, step=1, start=i)  # T×3×H×W float
            frames = (clip.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
            w.add(f"v{i}", split, frames, fps=10.0, source="test")
    return path


def test_preprocess_store_round_trip(tmp_path):
    from PIL import Image

    from vidpred.data.store import open_store
    from vidpred.preprocess.moso import PREVIEW_LABEL_WIDTH, MosoClipDataset, load_moso_store, preprocess_store

    src = make_store(tmp_path / "store")
    summary = preprocess_store(src, tmp_path / "moso", lower=0.1, upper=0.9)
    # v0: 10 frames → clips at 0, 4; v1: 9 frames → 0, 4; v2: 3 frames → none (skipped)
    assert summary.num_clips == 4 and summary.clips_per_split == {"train": 4}
    assert summary.skipped_videos == ["v2"] and "4 clips of 4 frames" in summary.describe()

    mo = load_moso_store(tmp_path / "moso")
    assert list(mo.manifest["video_id"]) == ["v0", "v0", "v1", "v1"]
    assert list(mo.manifest["start"]) == [0, 4, 0, 4]
    # v0 has frames 8, 9 after its clips; v1's second clip (frames 4..7) has frame 8 after it
    assert list(mo.manifest["has_next"]) == [True, True, True, True]
    meta = json.loads((tmp_path / "moso" / "moso.json").read_text())
    assert meta["lower"] == 0.1 and meta["upper"] == 0.9 and meta["clip_len"] == 4
    assert meta["source_store"] == str(src.resolve())

    store = open_store(src)
    for row in mo.manifest.itertuples():
        frames = store.frames(row.video_id)
        clip = frames[row.start:row.start + 4].transpose(0, 3, 1, 2)
        item = mo.clip(row.clip)
        # the frame is exactly scene + object (uint8), and the arrays equal a direct decompose()
        np.testing.assert_array_equal(mo.arrays["scene"][row.clip] + mo.arrays["object"][row.clip], clip)
        nxt = frames[row.start + 4].transpose(2, 0, 1)[None]
        ref = decompose(clip[None], 0.1, 0.9, next_frames=nxt)
        np.testing.assert_array_equal(item["mask"].numpy(), ref["mask"][0].numpy())
        torch.testing.assert_close(item["motion"], ref["motion"][0], atol=2e-3, rtol=0)  # float16 storage
        torch.testing.assert_close(item["object"], ref["object"][0])
        assert item["frames"].shape == (4, 3, SIZE, SIZE) and item["motion"].dtype == torch.float32
    assert 0 < mo.manifest["mask_fraction"].min() and mo.manifest["mask_fraction"].max() < 0.5

    ds = MosoClipDataset(tmp_path / "moso", split="train")
    assert len(ds) == 4 and ds[1]["video_id"] == "v0" and ds[1]["start"] == 4
    with pytest.raises(VidpredError, match="no clips in split 'test'"):
        MosoClipDataset(tmp_path / "moso", split="test")

    img = Image.open(tmp_path / "moso" / "preview.png")
    # 3 clips × 5 rows (frames, motion, scene, object, mask) of 4 frames, 16 px + 1 px padding, labels left
    assert img.size == (PREVIEW_LABEL_WIDTH + 4 * 17 + 1, 15 * 17 + 1)
    assert np.asarray(img).std() > 10


def test_last_clip_without_next_frame_repeats_last(tmp_path):
    from vidpred.preprocess.moso import load_moso_store, preprocess_store

    src = make_store(tmp_path / "store", lengths=(8,), splits=("train",))
    preprocess_store(src, tmp_path / "moso")
    mo = load_moso_store(tmp_path / "moso")
    assert list(mo.manifest["has_next"]) == [True, False]
    item = mo.clip(1)
    torch.testing.assert_close(item["motion"][-1], item["frames"][-1] - item["frames"][0], atol=2e-3, rtol=0)


def test_preprocess_store_bad_input_leaves_nothing(tmp_path):
    from vidpred.preprocess.moso import load_moso_store, preprocess_store

    src = make_store(tmp_path / "store")
    out = tmp_path / "moso"
    with pytest.raises(VidpredError, match="lower < upper"):
        preprocess_store(src, out, lower=0.9, upper=0.1)
    with pytest.raises(VidpredError, match="no video with at least clip_len=50"):
        preprocess_store(src, out, clip_len=50)
    with pytest.raises(VidpredError, match="not a vidpred clip store"):
        preprocess_store(tmp_path, out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".moso")]  # no temp leftovers
    with pytest.raises(VidpredError, match="not a MOSO store"):
        load_moso_store(src)
    # a truncated array in a MOSO store is reported by name
    preprocess_store(src, out)
    (out / "motion.npy").write_bytes((out / "motion.npy").read_bytes()[:200])
    with pytest.raises(VidpredError, match="motion.npy"):
        load_moso_store(out)


def test_cli_preprocess_moso(tmp_path):
    from typer.testing import CliRunner

    from vidpred.cli import app

    src = make_store(tmp_path / "store")
    res = CliRunner().invoke(app, ["preprocess", "moso", "--input", str(src), "--out", str(tmp_path / "m"),
                                   "--lower", "0.2", "--upper", "0.8"])
    assert res.exit_code == 0, res.output
    assert "4 clips of 4 frames" in res.output and "[0.2, 0.8]" in res.output
    assert json.loads((tmp_path / "m" / "moso.json").read_text())["lower"] == 0.2
    bad = CliRunner().invoke(app, ["preprocess", "moso", "--input", str(src), "--out", str(tmp_path / "b"),
                                   "--lower", "0.95"])
    assert isinstance(bad.exception, VidpredError) and not (tmp_path / "b").exists()
