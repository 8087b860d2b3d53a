"""ClipDataset over a small store written by the test (random frames and known centres)."""

import numpy as np
import pytest
import torch

from vidpred.data.loader import ClipDataset
from vidpred.data.store import StoreWriter
from vidpred.errors import VidpredError

W = 12


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    videos = {}
    with StoreWriter(tmp_path / "s", {"dataset": "unit", "size": W, "clip_len": 4, "options": {}},
                     shard_frames=16) as w:
        for vid, n, split, k in (("a", 10, "train", 2), ("b", 7, "train", 1), ("c", 3, "train", 1),
                                 ("d", 9, "test", 2)):
            frames = rng.integers(0, 256, (n, W, W, 3), dtype=np.uint8)
            centers = rng.uniform(0, W - 1, (n, k, 2)).astype(np.float32)
            w.add(vid, split, frames, 10, "unit", {"centers": centers})
            videos[vid] = (frames, centers)
    return tmp_path / "s", videos


def test_index_non_overlapping_by_default(store):
    root, _ = store
    ds = ClipDataset(root, "train", clip_len=3)
    # a: starts 0,3,6 (10 frames); b: 0,3 (7); c: 0 (3 frames = one clip)
    assert ds.index == [("a", 0), ("a", 3), ("a", 6), ("b", 0), ("b", 3), ("c", 0)]
    ds2 = ClipDataset(root, "train", clip_len=3, stride=2, step=1)  # span 5
    assert ds2.index == [("a", s) for s in range(6)] + [("b", s) for s in range(3)]


def test_item_values_shapes_and_range(store):
    root, videos = store
    ds = ClipDataset(root, "train", clip_len=3, stride=2, step=2, value_range=(-1.0, 1.0))
    item = ds[1]  # video a, start 2 → frames 2, 4, 6
    assert item["video_id"] == "a" and item["start"] == 2
    f = item["frames"]
    assert f.shape == (3, 3, W, W) and f.dtype == torch.float32
    expect = videos["a"][0][[2, 4, 6]].transpose(0, 3, 1, 2) / 255.0 * 2 - 1
    np.testing.assert_allclose(f.numpy(), expect, atol=1e-6)
    assert f.min() >= -1 and f.max() <= 1
    c = item["centers"]
    assert c.shape == (3, 2, 2)  # K padded to the store maximum
    np.testing.assert_allclose(c.numpy(), videos["a"][1][[2, 4, 6]])
    b = ClipDataset(root, "train", clip_len=3)[3]["centers"]  # video b has 1 object
    assert torch.isnan(b[:, 1]).all() and not torch.isnan(b[:, 0]).any()


def test_flip_mirrors_frames_and_centres(store):
    root, videos = store
    ds = ClipDataset(root, "test", clip_len=4, flip=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        item = ds[0]
        frames = videos["d"][0][:4].transpose(0, 3, 1, 2) / 255.0
        centers = videos["d"][1][:4]
        if np.allclose(item["frames"].numpy(), frames[..., ::-1], atol=1e-6):
            np.testing.assert_allclose(item["centers"][..., 0].numpy(), W - 1 - centers[..., 0], atol=1e-5)
            np.testing.assert_allclose(item["centers"][..., 1].numpy(), centers[..., 1])
            seen.add("flipped")
        else:
            np.testing.assert_allclose(item["frames"].numpy(), frames, atol=1e-6)
            np.testing.assert_allclose(item["centers"].numpy(), centers)
            seen.add("plain")
    assert seen == {"flipped", "plain"}


def test_batches_through_dataloader(store):
    root, _ = store
    dl = torch.utils.data.DataLoader(ClipDataset(root, "train", clip_len=3), batch_size=4)
    batches = list(dl)
    assert [b["frames"].shape[0] for b in batches] == [4, 2]
    assert batches[0]["frames"].shape == (4, 3, 3, W, W)
    assert batches[0]["centers"].shape == (4, 3, 2, 2)


def test_bad_arguments(store):
    root, _ = store
    with pytest.raises(VidpredError, match="no 'val' videos"):
        ClipDataset(root, "val")
    with pytest.raises(VidpredError, match="clip_len must be an integer ≥ 1"):
        ClipDataset(root, clip_len=0)
    with pytest.raises(VidpredError, match="needs"):
        ClipDataset(root, "train", clip_len=11)
    with pytest.raises(VidpredError, match="value_range"):
        ClipDataset(root, value_range=(1.0, 1.0))
    with pytest.raises(VidpredError, match="not a vidpred clip store"):
        ClipDataset(root.parent)
