"""Clip store: round trip, ground-truth alignment, determinism, atomicity, clear errors.

Frames here are small random uint8 arrays made by the test itself.
"""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from vidpred.data.store import FORMAT, StoreWriter, open_store
from vidpred.errors import VidpredError

META = {"dataset": "unit", "size": 8, "clip_len": 5, "options": {"seed": 1}}


def _videos(seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(5):
        t = 4 + i
        frames = rng.integers(0, 256, (t, 8, 8, 3), dtype=np.uint8)
        gt = None
        if i % 2:
            gt = {"centers": rng.random((t, i, 2)).astype(np.float32) * 8,
                  "masks": rng.integers(0, i + 1, (t, 8, 8), dtype=np.uint8)}
        out.append((f"vid{i}", "test" if i == 4 else "train", frames, gt))
    return out


def _write(out, videos, shard_frames=10):
    with StoreWriter(out, META, shard_frames=shard_frames) as w:
        for vid, split, frames, gt in videos:
            w.add(vid, split, frames, fps=12.5, source="unit", ground_truth=gt)
        w.reject("broken.avi", "no frames decoded")
    return out


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_round_trip_frames_manifest_and_ground_truth(tmp_path):
    videos = _videos()
    store = open_store(_write(tmp_path / "s", videos))
    m = store.manifest
    assert list(m["video_id"]) == [v[0] for v in videos]
    assert m["num_frames"].tolist() == [4, 5, 6, 7, 8]
    assert m["offset"].dtype == np.int64 and m["fps"].dtype == np.float64 and m["has_gt"].dtype == bool
    assert m["has_gt"].tolist() == [False, True, False, True, False]
    # shards hold ~10 frames; a video never straddles two shards
    assert m["shard"].nunique() >= 2
    for vid, split, frames, gt in videos:
        np.testing.assert_array_equal(store.frames(vid), frames)
        row = store.row(vid)
        assert row["split"] == split
        assert row["pixel_mean"] == pytest.approx(frames.astype(np.float64).mean())
        assert row["pixel_std"] == pytest.approx(frames.astype(np.float64).std())
        got = store.ground_truth(vid)
        if gt is None:
            assert got == {}
        else:
            k = gt["centers"].shape[1]
            np.testing.assert_allclose(got["centers"][:, :k], gt["centers"])
            assert np.isnan(got["centers"][:, k:]).all()  # padding for fewer objects
            np.testing.assert_array_equal(got["masks"], gt["masks"])
    assert isinstance(store.frames("vid0"), np.memmap)
    assert store.meta["format"] == FORMAT and store.meta["splits"] == {"test": 1, "train": 4}
    assert store.meta["ground_truth"]["centers"]["shape"] == [3, 2]
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert report["prepared"] == 5
    assert report["rejected"] == [{"path": "broken.avi", "reason": "no frames decoded"}]
    assert [r["video_id"] for r in report["too_short"]] == ["vid0"]
    import cv2  # preview: one row per video (5), 8 frame slots, 8-px frames + 2-px gaps, enlarged ×12
    preview = cv2.imread(str(tmp_path / "s" / "preview.png"))
    assert preview.shape == (5 * 10 * 12, 8 * 10 * 12, 3)
    np.testing.assert_array_equal(preview[:96, :96, ::-1], np.kron(videos[0][2][0], np.ones((12, 12, 1), np.uint8)))


def test_identical_input_gives_byte_identical_store(tmp_path):
    a = _digest(_write(tmp_path / "a", _videos(3)))
    b = _digest(_write(tmp_path / "b", _videos(3)))
    c = _digest(_write(tmp_path / "c", _videos(4)))
    assert a == b
    assert a != c


def test_failure_inside_block_leaves_no_output(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(RuntimeError):
        with StoreWriter(out, META) as w:
            w.add("v", "train", np.zeros((3, 8, 8, 3), np.uint8), 10, "unit")
            raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_no_video_is_an_error_and_no_output(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(VidpredError, match="no video could be prepared.*bad.mp4"):
        with StoreWriter(out, META) as w:
            w.reject("bad.mp4", "corrupt")
    assert not out.exists()


@pytest.mark.parametrize("frames, match", [
    (np.zeros((3, 8, 8, 3), np.float32), "uint8"),
    (np.zeros((0, 8, 8, 3), np.uint8), "non-empty"),
    (np.zeros((3, 8, 8), np.uint8), "T×H×W×3"),
    (np.zeros((3, 9, 8, 3), np.uint8), "differs"),
])
def test_bad_frames_are_rejected(tmp_path, frames, match):
    with pytest.raises(VidpredError, match=match):
        with StoreWriter(tmp_path / "s", META) as w:
            w.add("ok", "train", np.zeros((3, 8, 8, 3), np.uint8), 10, "unit")
            w.add("bad", "train", frames, 10, "unit")
    assert not (tmp_path / "s").exists()


def test_duplicate_id_and_misaligned_ground_truth(tmp_path):
    f = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.raises(VidpredError, match="appears twice"):
        with StoreWriter(tmp_path / "s", META) as w:
            w.add("a", "train", f, 10, "unit")
            w.add("a", "train", f, 10, "unit")
    with pytest.raises(VidpredError, match="ground truth 'centers'"):
        with StoreWriter(tmp_path / "s", META) as w:
            w.add("a", "train", f, 10, "unit", {"centers": np.zeros((2, 1, 2))})


def test_open_store_errors(tmp_path):
    with pytest.raises(VidpredError, match="does not exist"):
        open_store(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(VidpredError, match="not a vidpred clip store"):
        open_store(tmp_path / "plain")
    (tmp_path / "plain" / "store.json").write_text("{not json")
    with pytest.raises(VidpredError, match="not valid JSON"):
        open_store(tmp_path / "plain")
    (tmp_path / "plain" / "store.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(VidpredError, match="unsupported store format"):
        open_store(tmp_path / "plain")
    store_dir = _write(tmp_path / "s", _videos())
    (store_dir / "manifest.parquet").write_bytes(b"garbage")
    with pytest.raises(VidpredError, match="manifest.parquet cannot be read"):
        open_store(store_dir)
    with pytest.raises(VidpredError, match="no video 'zzz'"):
        open_store(_write(tmp_path / "t", _videos())).frames("zzz")


def test_manifest_columns_match_contract(tmp_path):
    m = pd.read_parquet(_write(tmp_path / "s", _videos()) / "manifest.parquet")
    assert list(m.columns) == ["video_id", "split", "num_frames", "height", "width", "fps", "source",
                               "shard", "offset", "pixel_mean", "pixel_std", "has_gt"]
    assert (m["height"] == 8).all() and (m["width"] == 8).all()
