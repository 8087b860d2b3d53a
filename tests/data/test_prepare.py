"""`prepare` / `vidpred data prepare` on real video files the test writes itself: a folder mixing
resolutions, frame rates and containers plus a broken file; an all-broken folder; argument errors."""

import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidpred.data.prepare import prepare
from vidpred.data.sources import get_source
from vidpred.data.sources.folder import hash_fraction
from vidpred.data.store import open_store
from vidpred.data.synthetic import moving_square, write_video
from vidpred.errors import VidpredError

VIDPRED = str(Path(os.environ.get("VIRTUAL_ENV", Path(__file__).resolve().parents[2] / ".venv")) / "bin" / "vidpred")


@pytest.fixture
def mixed_folder(tmp_path):
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    write_video(root / "wide.mp4", moving_square(6, 240, 320, side=40, step=8), fps=25, codec="h264")
    write_video(root / "sub" / "small.AVI", moving_square(5, 120, 160), fps=10, codec="MJPG")
    write_video(root / "tall.mkv", moving_square(7, 128, 96, side=24), fps=30, codec="mpeg4")
    frames = root / "sub" / "frames"
    frames.mkdir()
    for i in range(3):  # an image-frame folder
        cv2.imwrite(str(frames / f"{i}.png"), np.full((40, 50, 3), 60 * i, np.uint8))
    (root / "broken.mp4").write_bytes(np.random.default_rng(1).bytes(4000))
    (root / "readme.txt").write_text("not a video")
    return root


def test_folder_source_order_and_stable_split(mixed_folder):
    src = get_source("folder")
    root = src.fetch(str(mixed_folder), None, {})
    vids = list(src.iter_videos(root, {}))
    assert [v.video_id for v in vids] == ["broken.mp4", "sub/frames", "sub/small.AVI", "tall.mkv", "wide.mp4"]
    for v in vids:  # defaults: test below 0.2, val in [0.2, 0.3), train above
        h = hash_fraction(v.video_id)
        assert v.split == ("test" if h < 0.2 else "val" if h < 0.3 else "train")
    assert [v.split for v in vids] == ["train", "train", "val", "train", "train"]  # small.AVI: h = 0.239
    everything = list(src.iter_videos(root, {"test_fraction": 1.0}))
    assert {v.split for v in everything} == {"test"}
    with pytest.raises(VidpredError, match="test_fraction"):
        list(src.iter_videos(root, {"test_fraction": 2}))
    with pytest.raises(VidpredError, match="val_fraction must be a number in"):
        list(src.iter_videos(root, {"val_fraction": -0.1}))
    with pytest.raises(VidpredError, match=r"test_fraction \+ val_fraction must be ≤ 1"):
        list(src.iter_videos(root, {"test_fraction": 0.5, "val_fraction": 0.6}))


def test_folder_val_split_is_stable(tmp_path):
    # splits come from the paths only, so empty files named like videos are enough (nothing is decoded)
    full, part = tmp_path / "full", tmp_path / "part"
    full.mkdir(), part.mkdir()
    names = [f"clip{i:03d}.mp4" for i in range(300)]
    for i, name in enumerate(names):
        (full / name).touch()
        if i % 3 == 0:
            (part / name).touch()
    src = get_source("folder")
    splits = {v.video_id: v.split for v in src.iter_videos(full, {})}
    counts = {s: list(splits.values()).count(s) for s in ("train", "val", "test")}
    assert 0.05 < counts["val"] / 300 < 0.15 and 0.13 < counts["test"] / 300 < 0.27  # ~0.1 and ~0.2
    # a video's split does not depend on which other files exist
    assert {v.video_id: v.split for v in src.iter_videos(part, {})} == {n: splits[n] for n in names[::3]}
    # val is carved out of train only: the test videos are those of the old two-way split
    two_way = {v.video_id: v.split for v in src.iter_videos(full, {"val_fraction": 0})}
    assert set(two_way.values()) == {"train", "test"}
    assert {n for n, s in two_way.items() if s == "test"} == {n for n, s in splits.items() if s == "test"}
    assert all(two_way[n] == "train" for n, s in splits.items() if s == "val")
    bigger = {v.video_id: v.split for v in src.iter_videos(full, {"val_fraction": 0.3})}
    assert {n for n, s in splits.items() if s == "val"} < {n for n, s in bigger.items() if s == "val"}


def test_folder_source_split_subfolders(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        write_video(tmp_path / split / f"{split}.avi", moving_square(3, 32, 32, side=8), codec="MJPG")
    write_video(tmp_path / "loose.avi", moving_square(3, 32, 32, side=8), codec="MJPG")
    vids = list(get_source("folder").iter_videos(tmp_path, {}))
    assert [(v.video_id, v.split) for v in vids] == [("test/test.avi", "test"), ("train/train.avi", "train")]
    # without a val/ subfolder, train/ videos whose hash is below val_fraction become val (test/ never)
    assert hash_fraction("train/train.avi") > 0.9 and hash_fraction("test/test.avi") < 0.95
    vids = list(get_source("folder").iter_videos(tmp_path, {"val_fraction": 0.95}))
    assert [(v.video_id, v.split) for v in vids] == [("test/test.avi", "test"), ("train/train.avi", "val")]
    # a val/ subfolder decides by itself: val_fraction no longer moves train/ videos
    (tmp_path / "val").mkdir()
    write_video(tmp_path / "val" / "v.avi", moving_square(3, 32, 32, side=8), codec="MJPG")
    vids = list(get_source("folder").iter_videos(tmp_path, {"val_fraction": 0.95}))
    assert [(v.video_id, v.split) for v in vids] == [
        ("test/test.avi", "test"), ("train/train.avi", "train"), ("val/v.avi", "val")]


def test_prepare_mixed_folder_keeps_good_rejects_broken(mixed_folder, tmp_path, capsys):
    out = tmp_path / "store"
    summary = prepare("folder", out, source=str(mixed_folder), size=32, clip_len=6, cache_dir=tmp_path / "cache")
    err = capsys.readouterr().err
    assert "rejected broken.mp4" in err
    store = open_store(out)
    m = store.manifest.set_index("video_id")
    assert sorted(m.index) == ["sub/frames", "sub/small.AVI", "tall.mkv", "wide.mp4"]
    assert m.loc["wide.mp4", "num_frames"] == 6 and m.loc["tall.mkv", "num_frames"] == 7
    assert m.loc["sub/small.AVI", "fps"] == pytest.approx(10) and m.loc["tall.mkv", "fps"] == pytest.approx(30)
    assert m.loc["sub/frames", "fps"] == 25  # image folders: default rate
    assert (m["height"] == 32).all() and (m["width"] == 32).all()
    wide = store.frames("wide.mp4")
    assert wide.shape == (6, 32, 32, 3) and wide.max() > 200 and wide.min() < 30
    report = json.loads((out / "report.json").read_text())
    assert [r["path"] for r in report["rejected"]] == ["broken.mp4"]
    assert "cannot be opened" in report["rejected"][0]["reason"]
    assert {r["video_id"] for r in report["too_short"]} == {"sub/frames", "sub/small.AVI"}
    assert summary.frames == 6 + 5 + 7 + 3 and len(summary.rejected) == 1
    text = summary.describe()
    assert "prepared 4 videos" in text and "rejected 1" in text and str(out.resolve()) in text


@pytest.mark.slow
def test_cli_prepare_and_all_broken_exit_2(mixed_folder, tmp_path):
    # through the installed console script, as a user would run it
    out = tmp_path / "cli-store"
    res = subprocess.run([VIDPRED, "data", "prepare", "--dataset", "folder", "--source", str(mixed_folder),
                          "--out", str(out), "--size", "32", "--clip-len", "4"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "prepared 4 videos" in res.stdout
    assert json.loads((out / "report.json").read_text())["rejected"][0]["path"] == "broken.mp4"

    bad = tmp_path / "all-broken"
    bad.mkdir()
    (bad / "a.mp4").write_bytes(b"")
    (bad / "b.avi").write_bytes(b"\x00garbage" * 100)
    res = subprocess.run([VIDPRED, "data", "prepare", "--dataset", "folder", "--source", str(bad),
                          "--out", str(tmp_path / "nothing"), "--size", "32", "--clip-len", "4"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no video could be prepared" in errors[0]
    assert not (tmp_path / "nothing").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".nothing")]  # no temp leftovers


def test_prepare_shapes_ground_truth(tmp_path):
    summary = prepare("shapes", tmp_path / "s", size=32, clip_len=4, cache_dir=tmp_path / "c",
                      options={"num_videos": 2, "num_test": 1, "num_frames": 6, "num_objects": 2})
    assert summary.videos == {"train": 2, "test": 1}
    store = open_store(summary.store)
    gt = store.ground_truth("train-00001")
    assert gt["centers"].shape == (6, 2, 2) and gt["masks"].shape == (6, 32, 32)
    assert store.meta["options"] == {"num_videos": 2, "num_test": 1, "num_frames": 6, "num_objects": 2}


def test_prepare_rescales_ground_truth_of_frames_items():
    # a 40×60 source frame with a labelled point at its centre column: crop x0=10, scale 32/40
    from vidpred.data.prepare import load_video
    from vidpred.data.sources.base import RawVideo

    masks = np.zeros((2, 40, 60), np.uint8)
    masks[:, :, 30:] = 1
    raw = RawVideo("v", "train", "unit", frames=np.zeros((2, 40, 60, 3), np.uint8), fps=5,
                   ground_truth={"centers": np.array([[[29.5, 19.5]]] * 2, np.float32), "masks": masks})
    frames, fps, gt = load_video(raw, 32)
    assert frames.shape == (2, 32, 32, 3) and fps == 5
    np.testing.assert_allclose(gt["centers"][0, 0], [15.5, 15.5], atol=1e-5)
    assert gt["masks"].shape == (2, 32, 32) and set(np.unique(gt["masks"])) == {0, 1}
    assert gt["masks"][0, :, :16].max() == 0 and gt["masks"][0, :, 16:].min() == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"size": 8}, "--size must be an integer ≥ 16"),
    ({"clip_len": 0}, "--clip-len must be an integer ≥ 1"),
    ({"dataset": "nope"}, "unknown dataset 'nope'"),
    ({"options": {"num_frames": -1}}, "num_frames"),
])
def test_argument_errors(tmp_path, kwargs, match):
    args = {"dataset": "shapes", "out": tmp_path / "s", "size": 32, "clip_len": 4, "cache_dir": tmp_path / "c"}
    with pytest.raises(VidpredError, match=match):
        prepare(**{**args, **kwargs})
    assert not (tmp_path / "s").exists()


def test_refuses_to_replace_a_non_store_directory(tmp_path, mixed_folder):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(VidpredError, match="not a clip store; refusing"):
        prepare("folder", precious, source=str(mixed_folder), size=32, clip_len=4, cache_dir=tmp_path / "c")
    assert (precious / "thesis.tex").read_text() == "keep me"
    with pytest.raises(VidpredError, match="needs --source"):
        prepare("folder", tmp_path / "x", size=32, clip_len=4, cache_dir=tmp_path / "c")


def test_load_video_honours_frame_range_and_rejects_misaligned_ground_truth(tmp_path):
    # KTH-style: one file, a sequence given as 1-based inclusive frame numbers
    from vidpred.data.prepare import load_video
    from vidpred.data.sources.base import RawVideo

    path = tmp_path / "seq.avi"
    write_video(path, moving_square(12, 48, 64, side=8, step=3), fps=25, codec="MJPG")
    frames, fps, _ = load_video(RawVideo("s", "train", "kth", path=path, meta={"frame_range": (4, 9)}), 16)
    assert frames.shape == (6, 16, 16, 3) and fps == pytest.approx(25)
    bad = RawVideo("s", "train", "unit", frames=np.zeros((4, 16, 16, 3), np.uint8),
                   ground_truth={"centers": np.zeros((2, 1, 2), np.float32)})
    with pytest.raises(VidpredError, match="covers 2 of 4 frames"):
        load_video(bad, 16)
