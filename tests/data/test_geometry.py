"""Store geometry: `--size N|HxW` and `--crop center|aspect|full|bbox` (rules in vidpred.data.frames).

All inputs are made here: real video files written with PyAV, PNG frame folders, a BBC Pose-layout
folder with keypoints, and synthetic frames with marked pixels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidpred.data.frames import Geometry, crop_resize, parse_size
from vidpred.data.prepare import prepare
from vidpred.data.store import open_store
from vidpred.data.versioning import dir_md5
from vidpred.errors import VidpredError

SRC = Path(__file__).resolve().parents[2] / "src"
VIDPRED = [sys.executable, "-m", "vidpred.cli"]


def run(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([*VIDPRED, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def pattern(t, h, w, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(t)]


def write_png_video(folder: Path, t, h, w, seed, frames=None):
    folder.mkdir(parents=True)
    for i, f in enumerate(frames if frames is not None else pattern(t, h, w, seed)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))


def write_mp4(path: Path, t: int, h: int, w: int, seed: int) -> None:
    import av

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(t):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = (xx * 255 // max(w - 1, 1)).astype(np.uint8)
            img[..., 1] = (yy * 255 // max(h - 1, 1)).astype(np.uint8)
            img[..., 2] = rng.integers(0, 256)
            x0 = (4 * i) % max(w - 16, 1)
            img[h // 3:h // 3 + 16, x0:x0 + 16] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    """Real mp4 files of two aspect ratios (160×120 and 320×96), in train/ and test/ folders."""
    root = tmp_path_factory.mktemp("videos")
    for split, n in (("train", 3), ("test", 1)):
        (root / split).mkdir()
        for i in range(n):
            w, h = (160, 120) if i % 2 == 0 else (320, 96)
            write_mp4(root / split / f"{split}{i}_{w}x{h}.mp4", t=12, h=h, w=w, seed=10 * i + len(split))
    return root


# -- the command line ----------------------------------------------------------------------------------
def test_aspect_crop_of_real_videos_writes_64x128_and_passes_the_gate(tmp_path, video_folder):
    out = tmp_path / "store"
    res = run("data", "prepare", "--dataset", "folder", "--source", video_folder, "--out", out,
              "--size", "64x128", "--crop", "aspect", "--clip-len", "8", "-o", "val_fraction=0")
    assert res.returncode == 0, res.stderr
    meta = json.loads((out / "store.json").read_text())
    assert meta["frame_shape"] == [64, 128, 3] and meta["size"] == [64, 128] and meta["crop"] == "aspect"
    store = open_store(out)
    assert set(store.manifest["height"]) == {64} and set(store.manifest["width"]) == {128}
    assert set(store.manifest["split"]) == {"train", "test"} and len(store.manifest) == 4
    assert store.frames(store.video_ids()[0]).shape == (12, 64, 128, 3)
    res = run("data", "validate", out)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("args, match", [
    (["--size", "0"], "--size"),
    (["--size", "64x"], "--size"),
    (["--size", "64x0"], "--size"),
    (["--crop", "bogus"], "--crop"),
    (["--crop", "bbox", "--size", "32"], "keypoints"),
])
def test_bad_geometry_is_one_error_line_and_writes_nothing(tmp_path, video_folder, args, match):
    out = tmp_path / "store"
    res = run("data", "prepare", "--dataset", "folder", "--source", video_folder, "--out", out,
              "--cache-dir", tmp_path / "cache", *(["--size", "32"] if "--size" not in args else []), *args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], res.stderr
    assert not out.exists()


def test_parse_size():
    assert parse_size(64) == parse_size("64") == (64, 64)
    assert parse_size("64x128") == (64, 128) and parse_size((3, 5)) == (3, 5)
    for bad in (0, "0", "64x", "x64", "64x0", "a", True, -1, "64x128x3"):
        with pytest.raises(VidpredError, match="--size"):
            parse_size(bad)


# -- each crop mode on a frame with known content -------------------------------------------------------
def marked(h, w, points, r=2):
    """A dark h×w frame with a bright (2r+1)² block at each (x, y)."""
    img = np.full((h, w, 3), 20, np.uint8)
    for x, y in points:
        img[y - r:y + r + 1, x - r:x + r + 1] = 250
    return img


@pytest.mark.parametrize("src_hw, out_hw, crop", [
    ((120, 160), (32, 64), "center"), ((96, 320), (32, 64), "center"), ((120, 160), (40, 40), "center"),
    ((120, 160), (32, 64), "aspect"), ((96, 320), (32, 64), "aspect"), ((90, 300), (48, 32), "aspect"),
    ((120, 160), (32, 64), "full"), ((96, 320), (64, 32), "full"),
])
def test_marked_pixels_land_where_the_points_go(src_hw, out_hw, crop):
    h, w = src_hw
    geo = Geometry(*out_hw, crop)
    plan = geo.plan(h, w)
    pts = np.array([[w // 2, h // 2], [w // 2 + w // 16, h // 2 - h // 10]], np.float32)
    r = 1 + int(np.ceil(max(h / out_hw[0], w / out_hw[1])))  # still ≥ 2 output pixels wide
    out = crop_resize(marked(h, w, pts.astype(int), r), geo)
    assert out.shape == (*out_hw, 3)
    for (x, y) in plan.points(pts):
        xi, yi = int(round(x)), int(round(y))
        assert 0 <= xi < out_hw[1] and 0 <= yi < out_hw[0]
        assert out[yi, xi].min() > 100, (crop, x, y)  # the block is still there
    # the source centre is the output centre (up to one pixel of integer cropping) in every mode
    cx, cy = plan.points(np.array([(w - 1) / 2, (h - 1) / 2], np.float32))
    assert abs(cx - (out_hw[1] - 1) / 2) <= 1 and abs(cy - (out_hw[0] - 1) / 2) <= 1


def test_crop_rules_in_numbers():
    # KITTI raw 1242×375 at 256×512 (the CorrWise paper): resize to 848×256, centre crop 512×256
    plan = Geometry(256, 512, "aspect").plan(375, 1242)
    assert plan.a == (0, 0, 375, 1242) and plan.resize == (256, 848) and plan.b == (0, 168)
    # its CPU variant at 64×128: 212×64, centre crop 128×64
    plan = Geometry(64, 128, "aspect").plan(375, 1242)
    assert plan.resize == (64, 212) and plan.b == (0, 42)
    # center keeps the target aspect: 160×120 → centre 160×80 → 128×64; square is the old centre square
    assert Geometry(64, 128).plan(120, 160).a == (20, 0, 80, 160)
    assert Geometry(64, 64).plan(120, 160).a == (0, 20, 120, 120)
    # full: the corners' pixel edges map onto the output's edges
    plan = Geometry(32, 64, "full").plan(120, 160)
    np.testing.assert_allclose(plan.points(np.array([[-0.5, -0.5], [159.5, 119.5]])), [[-0.5, -0.5], [63.5, 31.5]])


def test_bbox_box_is_dilated_keypoint_box_grown_to_the_aspect():
    kp = np.array([[[100, 50], [140, 90]], [[110, 60], [np.nan, np.nan]]], np.float32)
    plan = Geometry(32, 32, "bbox", keypoints=kp, margin=10).plan(300, 400)
    # tight box x 100..140, y 50..90, +10 px each side → 61 × 61 whole pixels (90..150, 40..100)
    assert plan.a == (40, 90, 61, 61)
    plan = Geometry(32, 64, "bbox", keypoints=kp, margin=10).plan(300, 400)
    assert plan.a[2:] == (61, 122) and plan.a[1] == 90 - 30  # widened symmetrically to aspect 2
    # a box running over the frame edge is shifted inside; a box bigger than the frame is centred, padded
    assert Geometry(32, 32, "bbox", keypoints=np.array([[2.0, 2.0]]), margin=5).plan(100, 100).a == (0, 0, 11, 11)
    plan = Geometry(32, 32, "bbox", keypoints=kp, margin=150).plan(200, 300)
    assert plan.a[2] == plan.a[3] > 300 and plan.a[0] < 0 and plan.a[1] < 0
    out = plan.apply(np.full((200, 300, 3), 200, np.uint8))
    assert out.shape == (32, 32, 3) and out[0, 0].max() == 0 and out[16, 16].min() == 200
    with pytest.raises(VidpredError, match="keypoints"):
        Geometry(32, 32, "bbox", keypoints=np.full((3, 2, 2), np.nan))


# -- bbox end to end on a BBC Pose-layout folder ----------------------------------------------------------
def test_bbox_crop_keypoints_land_on_the_same_content(tmp_path):
    root = tmp_path / "bbc"
    h, w, t = 240, 360, 4
    kps = []
    frames = []
    for i in range(t):
        pts = [(150 + 3 * i, 100), (200, 130 + 2 * i), (170, 160)]
        frames.append(marked(h, w, pts))
        kps.append(pts)
    kp = np.array(kps, np.float32)
    write_png_video(root / "1", t, h, w, 0, frames=frames)
    write_png_video(root / "2", t, h, w, 0, frames=frames)  # no keypoints file: rejected in bbox mode
    (root / "keypoints").mkdir()
    np.save(root / "keypoints" / "1.npy", kp)
    out = tmp_path / "store"
    summary = prepare("bbcpose", out, source=str(root), size="48x64", clip_len=2, crop="bbox",
                      options={"bbox_margin": 20}, cache_dir=tmp_path / "cache")
    assert [r["path"] for r in summary.rejected] == ["2"]
    store = open_store(out)
    assert store.meta["frame_shape"] == [48, 64, 3] and store.meta["crop"] == "bbox"
    assert store.meta["bbox_margin"] == 20
    f = store.frames("bbcpose-01")
    c = store.ground_truth("bbcpose-01")["centers"]
    assert f.shape == (t, 48, 64, 3) and c.shape == (t, 3, 2)
    # tight box x 150..200, y 100..160 (+20) → 91×101 px, widened to aspect 4:3 → 135×101 from x = 108
    plan = Geometry(48, 64, "bbox", keypoints=kp, margin=20).plan(h, w)
    assert plan.a == (80, 108, 101, 135)
    for i in range(t):
        for x, y in c[i]:
            assert 0 <= x < 64 and 0 <= y < 48
            assert f[i, int(round(y)), int(round(x))].min() > 100, (i, x, y)
    # the default margin is the paper's 150 px
    out2 = tmp_path / "store150"
    prepare("bbcpose", out2, source=str(root), size=32, clip_len=2, crop="bbox", cache_dir=tmp_path / "cache")
    assert open_store(out2).meta["bbox_margin"] == 150.0


# -- the square default is unchanged ----------------------------------------------------------------------
# md5s of these stores as prepared by the square-only code (commit bd7425c), PNG frames (deterministic)
OLD_FOLDER_MD5 = "edb431e33764c2ec7e91cb06552cf484.dir"
OLD_BBC_MD5 = "7d7f30a5cea37ffe3f8e8ef81b700a98.dir"


def test_square_default_is_byte_identical_to_before(tmp_path):
    src = tmp_path / "pngs"
    write_png_video(src / "wide", 6, 120, 160, 0)
    write_png_video(src / "tall", 6, 96, 50, 1)
    write_png_video(src / "narrow", 6, 96, 320, 2)
    opts = {"test_fraction": 0, "val_fraction": 0}
    prepare("folder", tmp_path / "a", source=str(src), size=32, clip_len=4, options=opts)
    assert dir_md5(tmp_path / "a") == OLD_FOLDER_MD5
    prepare("folder", tmp_path / "b", source=str(src), size="32x32", crop="center", clip_len=4, options=opts)
    assert dir_md5(tmp_path / "b") == OLD_FOLDER_MD5
    bb = tmp_path / "bbc"
    write_png_video(bb / "1", 5, 90, 160, 3)
    (bb / "keypoints").mkdir()
    kp = np.stack([np.array([[40 + i, 30], [100, 60 + i], [np.nan, np.nan]], np.float32) for i in range(5)])
    np.save(bb / "keypoints" / "1.npy", kp)
    prepare("bbcpose", tmp_path / "c", source=str(bb), size=32, clip_len=4)
    assert dir_md5(tmp_path / "c") == OLD_BBC_MD5


# -- non-square stores downstream ------------------------------------------------------------------------
def test_non_square_shapes_store_loader_and_moso(tmp_path):
    import torch

    from vidpred.data.loader import ClipDataset
    from vidpred.data.validate import validate_store
    from vidpred.preprocess.moso import MosoClipDataset, load_moso_store, preprocess_store

    out = tmp_path / "shapes"
    prepare("shapes", out, size="32x48", clip_len=4, cache_dir=tmp_path / "cache",
            options={"num_videos": 4, "num_test": 1, "num_frames": 8})
    store = open_store(out)
    assert store.meta["frame_shape"] == [32, 48, 3]
    gt = store.ground_truth(store.video_ids()[0])
    assert gt["masks"].shape == (8, 32, 48)
    assert validate_store(out, clip_len=4).success
    ds = ClipDataset(out, "train", clip_len=4, flip=True)
    item = ds[0]
    assert item["frames"].shape == (4, 3, 32, 48) and item["centers"].shape[-1] == 2
    batch = torch.utils.data.default_collate([ds[i] for i in range(2)])
    assert batch["frames"].shape == (2, 4, 3, 32, 48)
    preprocess_store(out, tmp_path / "moso", clip_len=4)
    mo = load_moso_store(tmp_path / "moso")
    assert (mo.meta["height"], mo.meta["width"]) == (32, 48)
    clip = MosoClipDataset(tmp_path / "moso", "train")[0]
    assert tuple(clip["scene"].shape[-2:]) == (32, 48)
