"""Public dataset sources on tiny fake copies of the raw data, built here with real content.

KTH: real MJPG avi files written with OpenCV, zipped, plus a 00sequences.txt in the official format.
BAIR: a real tfrecord written with the ``tfrecord`` package's writer, inside a tar.
Moving MNIST: a small npy in the official T×N×H×W layout. KITTI / Vimeo-90K / BBC Pose: folder trees of
real PNGs (and one mp4 for BBC Pose). Records are checked for ids, splits, frame counts, shapes and
determinism, and every ``path`` record is decoded with OpenCV or PyAV.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zipfile
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vidpred.data.sources import get_source
from vidpred.errors import VidpredError

RNG = np.random.default_rng(7)


def _decode_count(path: Path, limit: int = 1000) -> tuple[int, tuple]:
    """Frames decoded by OpenCV from a video file or a folder of images, and the first frame's shape."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".png", ".jpg"))
        images = [cv2.imread(str(p)) for p in files[:limit]]
        assert all(im is not None for im in images)
        return len(files), images[0].shape
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return len(frames), frames[0].shape


def _write_avi(path: Path, n_frames: int, size=(160, 120)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, size)
    assert writer.isOpened()
    for t in range(n_frames):
        frame = np.full((size[1], size[0], 3), 20 + 10 * t, np.uint8)
        cv2.rectangle(frame, (5 + 3 * t, 40), (25 + 3 * t, 90), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()


# ----------------------------------------------------------------------------------------------- KTH

SEQUENCES = """\
Sequences of the KTH dataset (header lines as in the original file)

person01_boxing_d1		frames	1-4, 5-8, 9-12
person17_boxing_d1		frames	1-6,7-12
person02_walking_d2		frames	2-11
person13_handclapping_d3	missing
"""


@pytest.fixture(scope="module")
def kth_raw(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("kth-raw")  # the zips + 00sequences.txt, as downloaded
    avis = tmp_path_factory.mktemp("kth-avi")  # the same avi, unpacked
    names = {"boxing": ["person01_boxing_d1", "person17_boxing_d1", "person25_boxing_d4"],
             "walking": ["person02_walking_d2", "person16_walking_d1"]}
    for action, stems in names.items():
        with zipfile.ZipFile(base / f"{action}.zip", "w") as zf:
            for stem in stems:
                path = avis / f"{stem}_uncomp.avi"
                _write_avi(path, 12)
                zf.write(path, path.name)
    (base / "00sequences.txt").write_text(SEQUENCES)
    return base, avis


@pytest.fixture()
def kth_zips(kth_raw):
    return kth_raw[0]


@pytest.fixture()
def kth_avis(kth_raw):
    return kth_raw[1]


def test_kth_zips_extract_and_yield_sequences(kth_zips, tmp_path):
    src = get_source("kth")
    opts = {"actions": ["boxing", "walking"]}
    root = src.fetch(str(kth_zips), tmp_path / "work", opts)
    assert root == tmp_path / "work" / "kth"
    videos = list(src.iter_videos(root, opts))
    ids = [(v.video_id, v.split, v.meta.get("frame_range")) for v in videos]
    assert ids == [
        ("person01_boxing_d1_seq1", "train", (1, 4)),
        ("person01_boxing_d1_seq2", "train", (5, 8)),
        ("person01_boxing_d1_seq3", "train", (9, 12)),
        ("person02_walking_d2_seq1", "train", (2, 11)),
        ("person16_walking_d1", "train", None),  # no line in 00sequences.txt: the whole avi
        ("person17_boxing_d1_seq1", "test", (1, 6)),
        ("person17_boxing_d1_seq2", "test", (7, 12)),
        ("person25_boxing_d4", "test", None),
    ]
    assert all(v.fps == 25.0 and v.source == "kth" and v.frames is None for v in videos)
    assert videos[0].meta == {"person": 1, "action": "boxing", "scenario": "d1", "frame_range": (1, 4)}
    n, shape = _decode_count(videos[0].path)
    assert n == 12 and shape == (120, 160, 3)
    # deterministic: a second pass yields the same records
    assert [(v.video_id, v.path) for v in src.iter_videos(root, opts)] == [(v.video_id, v.path) for v in videos]


def test_kth_download_from_url_base(kth_zips, tmp_path):
    src = get_source("kth")
    opts = {"actions": "boxing", "use_sequences": False, "train_persons": "1-20", "test_persons": [25]}
    root = src.fetch(kth_zips.as_uri(), tmp_path / "work", opts)  # file:// goes through download()
    assert (root / "00sequences.txt").read_text() == SEQUENCES
    videos = list(src.iter_videos(root, opts))
    assert [(v.video_id, v.split) for v in videos] == [
        ("person01_boxing_d1", "train"), ("person17_boxing_d1", "train"), ("person25_boxing_d4", "test")]


def test_kth_download_over_http(kth_zips, tmp_path, monkeypatch):
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    monkeypatch.setenv("VIDPRED_CACHE", str(tmp_path / "cache"))  # checksums.json pinned here
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(kth_zips)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}/"
        root = get_source("kth").fetch(base, tmp_path / "work", {"actions": ["walking"]})
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert sorted(p.name for p in (root / "walking").iterdir()) == [
        "person02_walking_d2_uncomp.avi", "person16_walking_d1_uncomp.avi"]
    pins = json.loads((tmp_path / "cache" / "checksums.json").read_text())
    assert sorted(pins) == [base + "00sequences.txt", base + "walking.zip"]
    assert pins[base + "walking.zip"] == hashlib.sha256((kth_zips / "walking.zip").read_bytes()).hexdigest()


def test_kth_local_avi_dir_and_option_errors(kth_zips, kth_avis, tmp_path):
    src = get_source("kth")
    root = src.fetch(str(kth_avis), tmp_path, {})
    assert root == kth_avis  # extracted avi are used in place
    assert len(list(src.iter_videos(root, {}))) == 5  # no 00sequences.txt here: whole videos
    with pytest.raises(VidpredError, match="use_sequences is true but no 00sequences.txt"):
        list(src.iter_videos(root, {"use_sequences": True}))
    with pytest.raises(VidpredError, match="test_persons: person 16 is also in train_persons"):
        list(src.iter_videos(root, {"test_persons": "16-25"}))
    with pytest.raises(VidpredError, match="unknown KTH action.*dancing"):
        list(src.iter_videos(root, {"actions": ["dancing"]}))
    with pytest.raises(VidpredError, match="train_persons: cannot read 'abc'"):
        list(src.iter_videos(root, {"train_persons": "abc"}))
    with pytest.raises(VidpredError, match="lacks .*walking.zip"):
        src.fetch(str(tmp_path), tmp_path / "w", {"actions": ["walking"]})


# ---------------------------------------------------------------------------------------------- BAIR

def _write_bair(path: Path, n_examples: int, n_frames=30, size=64) -> list[np.ndarray]:
    from tfrecord.writer import TFRecordWriter

    clips = []
    writer = TFRecordWriter(str(path))
    for _ in range(n_examples):
        clip = RNG.integers(0, 256, (n_frames, size, size, 3), dtype=np.uint8)
        clips.append(clip)
        datum = {f"{i}/image_aux1/encoded": (clip[i].tobytes(), "byte") for i in range(n_frames)}
        datum.update({f"{i}/endeffector_pos": (RNG.random(3).tolist(), "float") for i in range(n_frames)})
        writer.write(datum)
    writer.close()
    return clips


def test_bair_tar_of_tfrecords(tmp_path):
    data = tmp_path / "raw" / "softmotion30_44k"
    (data / "train").mkdir(parents=True)
    (data / "test").mkdir()
    late = _write_bair(data / "train" / "traj_256_to_511.tfrecords", 2)
    early = _write_bair(data / "train" / "traj_0_to_255.tfrecords", 2)  # natural order puts it first
    test = _write_bair(data / "test" / "traj_0_to_255.tfrecords", 1)
    tar_path = tmp_path / "bair.tar"
    with tarfile.open(tar_path, "w") as tf:
        tf.add(data, arcname="softmotion30_44k")

    src = get_source("bair")
    root = src.fetch(str(tar_path), tmp_path / "work", {})
    videos = list(src.iter_videos(root, {}))
    assert [(v.video_id, v.split) for v in videos] == [
        ("train-traj_0_to_255-000", "train"), ("train-traj_0_to_255-001", "train"),
        ("train-traj_256_to_511-000", "train"), ("train-traj_256_to_511-001", "train"),
        ("test-traj_0_to_255-000", "test")]
    for v, clip in zip(videos, early + late + test):
        assert v.frames.shape == (30, 64, 64, 3) and v.frames.dtype == np.uint8 and v.path is None
        np.testing.assert_array_equal(v.frames, clip)
    capped = list(src.iter_videos(root, {"max_videos": 3}))
    assert [v.video_id for v in capped] == [v.video_id for v in videos[:3]] + ["test-traj_0_to_255-000"]


def test_bair_val_count_carves_the_last_train_records(tmp_path):
    from vidpred.data.sources.bair import count_records

    data = tmp_path / "softmotion30_44k"
    (data / "train").mkdir(parents=True)
    (data / "test").mkdir()
    early = _write_bair(data / "train" / "traj_0_to_255.tfrecords", 3, n_frames=2, size=8)
    late = _write_bair(data / "train" / "traj_256_to_511.tfrecords", 2, n_frames=2, size=8)
    test = _write_bair(data / "test" / "traj_0_to_255.tfrecords", 1, n_frames=2, size=8)
    assert count_records(data / "train" / "traj_0_to_255.tfrecords") == 3
    src = get_source("bair")
    layout = {"num_frames": 2, "image_size": 8}
    old = list(src.iter_videos(tmp_path, layout))
    videos = list(src.iter_videos(tmp_path, {**layout, "val_count": 3}))
    # the last 3 train records (in file order) are val and keep the id of the file they come from
    assert [(v.video_id, v.split) for v in videos] == [
        ("train-traj_0_to_255-000", "train"), ("train-traj_0_to_255-001", "train"),
        ("train-traj_0_to_255-002", "val"), ("train-traj_256_to_511-000", "val"),
        ("train-traj_256_to_511-001", "val"), ("test-traj_0_to_255-000", "test")]
    for v, clip in zip(videos, early + late + test):
        np.testing.assert_array_equal(v.frames, clip)
    # deterministic, test untouched, and the old train list is exactly train + val
    assert [v.video_id for v in videos] == [v.video_id for v in src.iter_videos(tmp_path, {**layout, "val_count": 3})]
    assert [v.video_id for v in old if v.split == "test"] == [v.video_id for v in videos if v.split == "test"]
    assert sorted(v.video_id for v in old if v.split == "train") == sorted(
        v.video_id for v in videos if v.split in ("train", "val"))
    # max_videos caps each split from its start; splits picks them
    capped = list(src.iter_videos(tmp_path, {**layout, "val_count": 3, "max_videos": 1}))
    assert [(v.video_id, v.split) for v in capped] == [
        ("train-traj_0_to_255-000", "train"), ("train-traj_0_to_255-002", "val"), ("test-traj_0_to_255-000", "test")]
    only_val = list(src.iter_videos(tmp_path, {**layout, "val_count": 1, "splits": ["val"]}))
    assert [(v.video_id, v.split) for v in only_val] == [("train-traj_256_to_511-001", "val")]
    with pytest.raises(VidpredError, match="val_count=5 must be smaller than the 5 BAIR train records"):
        list(src.iter_videos(tmp_path, {**layout, "val_count": 5}))
    with pytest.raises(VidpredError, match="publishes no val split; set val_count"):
        list(src.iter_videos(tmp_path, {**layout, "splits": ["train", "val"]}))
    with pytest.raises(VidpredError, match="val_count must be a non-negative integer"):
        list(src.iter_videos(tmp_path, {**layout, "val_count": -1}))


def test_bair_truncated_tfrecord_names_file(tmp_path):
    (tmp_path / "train").mkdir()
    path = tmp_path / "train" / "traj_0_to_255.tfrecords"
    _write_bair(path, 2)
    path.write_bytes(path.read_bytes()[:-5000])
    src = get_source("bair")
    with pytest.raises(VidpredError, match=r"traj_0_to_255\.tfrecords: record 1 is corrupt or truncated"):
        list(src.iter_videos(tmp_path, {}))
    with pytest.raises(VidpredError, match="expected 32x32x3"):
        list(src.iter_videos(tmp_path, {"image_size": 32}))
    with pytest.raises(VidpredError, match=r"traj_0_to_255\.tfrecords: record 1 is truncated"):
        list(src.iter_videos(tmp_path, {"val_count": 1}))  # counting the records finds it before reading


# --------------------------------------------------------------------------------------- Moving MNIST

def test_mmnist_splits_and_rgb(tmp_path):
    data = RNG.integers(0, 256, (20, 30, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", data)
    src = get_source("mmnist")
    root = src.fetch(str(tmp_path), tmp_path / "work", {})
    videos = list(src.iter_videos(root, {"test_count": 10, "val_count": 5}))
    splits = [v.split for v in videos]
    assert splits == ["train"] * 15 + ["val"] * 5 + ["test"] * 10
    assert [v.video_id for v in videos] == [f"mmnist-{i:05d}" for i in range(30)]
    v = videos[27]
    assert v.frames.shape == (20, 64, 64, 3)
    np.testing.assert_array_equal(v.frames[..., 1], data[:, 27])
    np.testing.assert_array_equal(v.frames[..., 0], v.frames[..., 2])
    default = list(src.iter_videos(root, {"test_count": 4, "max_videos": 2}))
    assert [(x.video_id, x.split) for x in default] == [
        ("mmnist-00000", "train"), ("mmnist-00001", "train"), ("mmnist-00026", "test"), ("mmnist-00027", "test")]
    with pytest.raises(VidpredError, match="test_count=1000 .* exceed the 30 sequences"):
        list(src.iter_videos(root, {}))


def test_mmnist_bad_files(tmp_path):
    src = get_source("mmnist")
    np.save(tmp_path / "flat.npy", np.zeros((20, 64, 64), np.uint8))
    with pytest.raises(VidpredError, match=r"flat\.npy has shape \(20, 64, 64\)"):
        list(src.iter_videos(tmp_path / "flat.npy", {}))
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(VidpredError, match=r"junk\.npy is not a readable \.npy"):
        list(src.iter_videos(tmp_path / "junk.npy", {}))


# ---------------------------------------------------------------------------------------------- KITTI

def _png_folder(folder: Path, n: int, size=(24, 16), name="{:010d}.png"):
    folder.mkdir(parents=True)
    for i in range(n):
        img = RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / name.format(i)), img)


def test_kitti_local_tree_prednet_split(tmp_path):
    drives = {"2011_09_26_drive_0001_sync": 3, "2011_09_26_drive_0005_sync": 4, "2011_09_26_drive_0070_sync": 2,
              "2011_09_28_drive_0070_sync": 3}
    for drive, n in drives.items():
        _png_folder(tmp_path / "raw" / drive[:10] / drive / "image_03" / "data", n)
    (tmp_path / "raw" / "2011_09_26" / "calib_cam_to_cam.txt").write_text("not a drive")
    src = get_source("kitti")
    root = src.fetch(str(tmp_path / "raw"), tmp_path / "work", {})
    videos = list(src.iter_videos(root, {}))
    assert [(v.video_id, v.split) for v in videos] == [
        ("2011_09_26_drive_0001_sync", "train"), ("2011_09_26_drive_0005_sync", "val"),
        ("2011_09_26_drive_0070_sync", "test"), ("2011_09_28_drive_0070_sync", "train")]
    assert all(v.fps == 10.0 for v in videos)
    for v in videos:
        n, shape = _decode_count(v.path)
        assert n == drives[v.video_id] and shape == (16, 24, 3)
    by_number = list(src.iter_videos(root, {"test_drives": [70], "val_drives": []}))
    assert [v.split for v in by_number] == ["train", "train", "test", "test"]
    with pytest.raises(VidpredError, match="KITTI needs --source DIR"):
        src.fetch(None, tmp_path / "work", {})


def test_kitti_download_drive_zips_from_template(tmp_path):
    zips = tmp_path / "server"
    for drive in ("2011_09_26_drive_0005", "2011_09_26_drive_0104"):
        _png_folder(tmp_path / "tree" / "2011_09_26" / f"{drive}_sync" / "image_03" / "data", 2)
        (zips / drive).mkdir(parents=True)
        with zipfile.ZipFile(zips / drive / f"{drive}_sync.zip", "w") as zf:
            for p in sorted((tmp_path / "tree").rglob(f"{drive}_sync/**/*.png")):
                zf.write(p, p.relative_to(tmp_path / "tree").as_posix())
    template = zips.as_uri() + "/{drive}/{drive}_sync.zip"
    src = get_source("kitti")
    opts = {"url_template": template, "drives": ["2011_09_26_drive_0005", "2011_09_26_drive_0104_sync"]}
    root = src.fetch(None, tmp_path / "work", opts)
    videos = list(src.iter_videos(root, opts))
    assert [(v.video_id, v.split) for v in videos] == [
        ("2011_09_26_drive_0005_sync", "val"), ("2011_09_26_drive_0104_sync", "test")]
    assert _decode_count(videos[1].path)[0] == 2
    with pytest.raises(VidpredError, match="'2011_drive' is not a KITTI drive name"):
        src.fetch(None, tmp_path / "work2", {"url_template": template, "drives": ["2011_drive"]})


# ----------------------------------------------------------------------------------------- Vimeo-90K

def test_vimeo_zip_lists_and_paths(tmp_path):
    base = tmp_path / "tree" / "vimeo_septuplet"
    entries = {"train": ["00001/0001", "00001/0002", "00002/0001"], "test": ["00003/0007"]}
    for split, items in entries.items():
        for item in items:
            _septuplet(base / "sequences" / item)
        (base / f"sep_{split}list.txt").write_text("\n".join(items) + "\n\n")
    archive = tmp_path / "vimeo_septuplet.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(base.rglob("*")):
            zf.write(p, p.relative_to(tmp_path / "tree").as_posix())
    src = get_source("vimeo90k")
    root = src.fetch(str(archive), tmp_path / "work", {})
    videos = list(src.iter_videos(root, {}))
    assert [(v.video_id, v.split) for v in videos] == [
        ("00001-0001", "train"), ("00001-0002", "train"), ("00002-0001", "train"), ("00003-0007", "test")]
    for v in videos:
        n, shape = _decode_count(v.path)
        assert n == 7 and shape == (16, 24, 3)
    assert [v.video_id for v in src.iter_videos(root, {"max_videos": 1})] == ["00001-0001", "00003-0007"]
    (root / "sep_testlist.txt").write_text("not/a/valid/entry\n")
    with pytest.raises(VidpredError, match="sep_testlist.txt: cannot read line"):
        list(src.iter_videos(root, {}))


def _septuplet(folder: Path):
    folder.mkdir(parents=True)
    for i in range(1, 8):
        assert cv2.imwrite(str(folder / f"im{i}.png"), RNG.integers(0, 256, (16, 24, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------------------- BBC Pose

def test_bbcpose_layout_splits_and_keypoints(tmp_path):
    src = get_source("bbcpose")
    with pytest.raises(VidpredError, match="register at https://www.robots.ox.ac.uk/~vgg/data/pose/"):
        src.fetch(None, tmp_path, {})
    root = tmp_path / "bbc"
    for n in (1, 11, 17):
        _png_folder(root / str(n), 3, name="{}.jpg")
    # video 4 as an H.264 mp4 written with PyAV
    with av.open(str(root / "4.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for t in range(5):
            img = np.full((32, 32, 3), 40 * t, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    (root / "keypoints").mkdir()
    kp = RNG.random((3, 7, 2)).astype(np.float32) * 20
    kp[1] = np.nan  # frame 2 not annotated
    np.save(root / "keypoints" / "11.npy", kp)
    assert src.fetch(str(root), tmp_path / "work", {}) == root
    videos = list(src.iter_videos(root, {}))
    assert [(v.video_id, v.split, v.meta["has_keypoints"]) for v in videos] == [
        ("bbcpose-01", "train", False), ("bbcpose-04", "train", False), ("bbcpose-11", "val", True),
        ("bbcpose-17", "test", False)]
    np.testing.assert_array_equal(videos[2].ground_truth["centers"], kp)
    with av.open(str(videos[1].path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 5 and decoded[0].shape == (32, 32, 3)
    assert _decode_count(videos[0].path) == (3, (16, 24, 3))
    np.save(root / "keypoints" / "1.npy", np.zeros((9, 7, 2), np.float32))
    with pytest.raises(VidpredError, match=r"1\.npy cover 9 frames but .*1 has 3"):
        list(src.iter_videos(root, {}))
    with pytest.raises(VidpredError, match="holds no videos"):
        src.fetch(str(tmp_path / "work"), tmp_path, {})
