"""Synthetic shapes: determinism, ground truth consistent with the pixels, bouncing, panning."""

import hashlib

import numpy as np
import pytest

from vidpred.data.prepare import prepare
from vidpred.data.sources import get_source
from vidpred.data.synthetic import render_video
from vidpred.errors import VidpredError


def test_same_seed_same_video_different_seed_different():
    a, b = render_video(5, 32, 10, 3), render_video(5, 32, 10, 3)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.centers, b.centers)
    assert not np.array_equal(a.frames, render_video(6, 32, 10, 3).frames)


def test_shapes_and_ground_truth_match_pixels():
    v = render_video(1, 48, 20, 3)
    assert v.frames.shape == (20, 48, 48, 3) and v.frames.dtype == np.uint8
    assert v.centers.shape == (20, 3, 2) and v.masks.shape == (20, 48, 48)
    assert set(np.unique(v.masks)) <= {0, 1, 2, 3}
    # centres stay inside the frame, and each object's visible mask sits around its centre
    assert (v.centers >= 0).all() and (v.centers <= 47).all()
    for t in (0, 10, 19):
        for k in range(3):
            ys, xs = np.nonzero(v.masks[t] == k + 1)
            if len(xs) > 60:  # not mostly hidden behind a later object
                assert abs(np.median(xs) - v.centers[t, k, 0]) < 4
                assert abs(np.median(ys) - v.centers[t, k, 1]) < 4
    # objects differ from each other and from the background in colour
    means = [v.frames[0][v.masks[0] == k].mean(0) for k in range(4) if (v.masks[0] == k).sum() > 20]
    for i in range(len(means)):
        for j in range(i + 1, len(means)):
            assert np.abs(means[i] - means[j]).max() > 15


def test_objects_move_at_constant_speed_and_bounce():
    v = render_video(3, 32, 120, 1)
    vel = np.diff(v.centers[:, 0], axis=0)  # T-1 × 2
    speed = np.linalg.norm(vel, axis=-1)
    # between bounces the speed is constant; a bounce flips a velocity component's sign
    assert np.median(speed) > 0.3
    assert (np.sign(vel[:, 0])[1:] != np.sign(vel[:, 0])[:-1]).any() or \
           (np.sign(vel[:, 1])[1:] != np.sign(vel[:, 1])[:-1]).any()


def test_pan_moves_background_static_camera_does_not():
    still = render_video(2, 32, 6, 0, pan=False)
    panned = render_video(2, 32, 6, 0, pan=True)
    np.testing.assert_array_equal(still.frames[0], still.frames[5])
    assert np.abs(panned.frames[0].astype(int) - panned.frames[5].astype(int)).mean() > 2


def test_bad_arguments():
    with pytest.raises(VidpredError, match="size ≥ 8"):
        render_video(0, 4, 10, 1)
    src = get_source("shapes")
    with pytest.raises(VidpredError, match="unknown option"):
        list(src.iter_videos(None, {"num_vidoes": 3}))
    with pytest.raises(VidpredError, match="num_frames must be an integer ≥ 1"):
        list(src.iter_videos(None, {"num_frames": 0}))
    with pytest.raises(VidpredError, match="takes no --source"):
        src.fetch("/somewhere", None, {})


def test_source_ids_splits_and_prefix_stability():
    src = get_source("shapes")
    few = list(src.iter_videos(None, {"num_videos": 2, "num_test": 1, "num_frames": 4, "size": 16}))
    more = list(src.iter_videos(None, {"num_videos": 3, "num_test": 1, "num_frames": 4, "size": 16}))
    assert [v.video_id for v in few] == ["train-00000", "train-00001", "test-00000"]
    assert [v.split for v in more] == ["train"] * 3 + ["test"]
    np.testing.assert_array_equal(few[1].frames, more[1].frames)  # adding videos changes no others


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_same_seed_gives_byte_identical_store(tmp_path):
    opts = {"num_videos": 3, "num_test": 1, "num_frames": 8, "num_objects": 2, "pan": True, "seed": 7}
    a = prepare("shapes", tmp_path / "a", size=24, clip_len=4, options=opts, cache_dir=tmp_path / "c")
    b = prepare("shapes", tmp_path / "b", size=24, clip_len=4, options=opts, cache_dir=tmp_path / "c")
    c = prepare("shapes", tmp_path / "c2", size=24, clip_len=4, options={**opts, "seed": 8},
                cache_dir=tmp_path / "c")
    assert _digest(a.store) == _digest(b.store)
    assert _digest(a.store) != _digest(c.store)


def test_val_split_is_deterministic_and_leaves_train_and_test_unchanged(tmp_path):
    src = get_source("shapes")
    base = {"num_videos": 2, "num_test": 1, "num_frames": 4, "size": 16}
    old = list(src.iter_videos(None, base))
    new = list(src.iter_videos(None, {**base, "num_val": 2}))
    assert [(v.video_id, v.split) for v in new] == [
        ("train-00000", "train"), ("train-00001", "train"), ("val-00000", "val"), ("val-00001", "val"),
        ("test-00000", "test")]
    kept = [v for v in new if v.split != "val"]
    assert [v.video_id for v in kept] == [v.video_id for v in old]
    for a, b in zip(old, kept):  # asking for val changes no train/test video
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.ground_truth["centers"], b.ground_truth["centers"])
    val = [v for v in new if v.split == "val"]
    again = [v for v in src.iter_videos(None, {**base, "num_val": 2}) if v.split == "val"]
    for a, b in zip(val, again):  # deterministic
        np.testing.assert_array_equal(a.frames, b.frames)
    for v in val:  # new videos, not copies of train/test ones
        assert all(not np.array_equal(v.frames, o.frames) for o in old)
    assert val[0].meta["seed"] == [0, 2, 0]
    with pytest.raises(VidpredError, match="num_val must be an integer ≥ 0"):
        list(src.iter_videos(None, {**base, "num_val": -1}))

    # num_val=0 (the default) writes the same frames and manifest as a store made before val existed
    opts = {"num_videos": 2, "num_test": 1, "num_frames": 6, "num_objects": 1}
    a = prepare("shapes", tmp_path / "a", size=16, clip_len=4, options=opts, cache_dir=tmp_path / "c").store
    b = prepare("shapes", tmp_path / "b", size=16, clip_len=4, options={**opts, "num_val": 0},
                cache_dir=tmp_path / "c").store
    for rel in ["manifest.parquet", "shards/shard-00000.npy", "gt/shard-00000.npz", "preview.png"]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = prepare("shapes", tmp_path / "v", size=16, clip_len=4, options={**opts, "num_val": 1},
                cache_dir=tmp_path / "c")
    assert c.videos == {"train": 2, "val": 1, "test": 1}


def test_toycar_val_videos_leave_train_and_test_unchanged():
    src = get_source("toycar")
    base = {"num_videos": 4, "frames": 3, "size": 16}
    old = list(src.iter_videos(None, base))
    new = list(src.iter_videos(None, {**base, "num_val": 2}))
    assert [v.split for v in old] == ["train", "train", "train", "test"]
    assert [(v.video_id, v.split) for v in new[4:]] == [("toycar-val-0000", "val"), ("toycar-val-0001", "val")]
    for a, b in zip(old, new[:4]):
        assert a.video_id == b.video_id and a.split == b.split
        np.testing.assert_array_equal(a.frames, b.frames)
    more = list(src.iter_videos(None, {**base, "num_videos": 8, "num_val": 2}))
    for a, b in zip(new[4:], more[8:]):  # val does not depend on num_videos
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.ground_truth["centers"], b.ground_truth["centers"])
    assert not any(np.array_equal(new[4].frames, v.frames) for v in more[:8])
