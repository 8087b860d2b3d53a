"""Decoding real video files written by OpenCV (mp4v, MJPG) and PyAV (H.264, MPEG-4) back to frames.

Every video here is created by the test (a moving white square, or solid colours per frame).
"""

import cv2
import numpy as np
import pytest

from vidpred.data.frames import (crop_box, crop_resize, decode_video, natural_key, resize_masks,
                                 transform_points)
from vidpred.data.synthetic import moving_square, write_video
from vidpred.errors import VidpredError

COLOURS = np.array([(220, 30, 30), (30, 220, 30), (30, 30, 220), (230, 230, 40)], np.uint8)


def solid_frames(n, h, w):
    return np.stack([np.full((h, w, 3), COLOURS[i % len(COLOURS)], np.uint8) for i in range(n)])


@pytest.mark.parametrize("codec, ext", [("mp4v", "mp4"), ("MJPG", "avi"), ("h264", "mp4"), ("mpeg4", "mkv")])
def test_solid_colours_round_trip(tmp_path, codec, ext):
    path = tmp_path / f"v.{ext}"
    write_video(path, solid_frames(12, 96, 128), fps=15, codec=codec)
    frames, fps = decode_video(path, 32)
    assert frames.shape == (12, 32, 32, 3) and frames.dtype == np.uint8
    assert fps == pytest.approx(15, rel=1e-3)
    for i, f in enumerate(frames):
        # lossy codecs: each frame's mean colour within a few levels of what was written
        np.testing.assert_allclose(f.reshape(-1, 3).mean(0), COLOURS[i % 4], atol=8)


def test_moving_square_position_after_crop_and_resize(tmp_path):
    # 160×120: crop x0=20, side 120; resize ×(40/120). The 24-px square moves 6 px per frame.
    raw = moving_square(8, 120, 160, side=24, step=6)
    path = tmp_path / "sq.mp4"
    write_video(path, raw, fps=10, codec="h264")
    frames, _ = decode_video(path, 40)
    assert frames.shape == (8, 40, 40, 3)
    for t, f in enumerate(frames):
        ys, xs = np.nonzero(f.mean(-1) > 128)
        # the square's centre in the original frame, mapped by the same geometry
        expect = transform_points(np.array([t * 6 + 11.5, 59.5]), 120, 160, 40)
        inside = 20 <= t * 6 and t * 6 + 24 <= 140
        if inside:
            assert xs.mean() == pytest.approx(expect[0], abs=0.6)
            assert ys.mean() == pytest.approx(expect[1], abs=0.6)


def test_frame_range_and_max_frames(tmp_path):
    path = tmp_path / "c.avi"
    write_video(path, solid_frames(10, 64, 64), fps=25, codec="MJPG")
    frames, _ = decode_video(path, 16, frame_range=(3, 6))  # 1-based inclusive → frames 2..5
    assert len(frames) == 4
    np.testing.assert_allclose(frames[0].reshape(-1, 3).mean(0), COLOURS[2], atol=8)
    np.testing.assert_allclose(frames[3].reshape(-1, 3).mean(0), COLOURS[5 % 4], atol=8)
    assert len(decode_video(path, 16, max_frames=3)[0]) == 3
    assert len(decode_video(path, 16, frame_range=(8, 99))[0]) == 3  # runs off the end: what exists
    with pytest.raises(VidpredError, match="no frames could be decoded.*frame range 20-30"):
        decode_video(path, 16, frame_range=(20, 30))
    with pytest.raises(VidpredError, match="frame_range 5-2 is invalid"):
        decode_video(path, 16, frame_range=(5, 2))


def test_image_folder_natural_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 10):  # lexical order would put 10 before 2
        img = np.full((48, 64, 3), COLOURS[{1: 0, 2: 1, 10: 2}[i]], np.uint8)
        cv2.imwrite(str(folder / f"img{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("ignored")
    frames, fps = decode_video(folder, 16, fps=7)
    assert frames.shape == (3, 16, 16, 3) and fps == 7
    np.testing.assert_array_equal(frames[:, 0, 0], COLOURS[:3])  # png is lossless
    assert sorted(["f10", "f2", "f1"], key=natural_key) == ["f1", "f2", "f10"]


@pytest.mark.parametrize("content, match", [
    (b"", "is empty"),
    (np.random.default_rng(0).bytes(20000), "cannot be opened"),
])
def test_corrupt_and_empty_files_name_the_file(tmp_path, content, match):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VidpredError, match=match) as err:
        decode_video(path, 32)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_truncated_file_is_an_error(tmp_path):
    good = tmp_path / "good.mp4"
    write_video(good, solid_frames(10, 64, 64), codec="h264")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # moov atom lost
    with pytest.raises(VidpredError, match="cut.mp4"):
        decode_video(cut, 32)


def test_bad_image_in_folder_and_missing_path(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.zeros((8, 8, 3), np.uint8))
    (folder / "1.png").write_bytes(b"not a png")
    with pytest.raises(VidpredError, match=r"image .*1\.png cannot be read"):
        decode_video(folder, 16)
    with pytest.raises(VidpredError, match="does not exist"):
        decode_video(tmp_path / "missing.mp4", 16)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(VidpredError, match="holds no images"):
        decode_video(empty, 16)


def test_geometry_helpers():
    assert crop_box(120, 160) == (0, 20, 120)
    assert crop_box(128, 96) == (16, 0, 96)
    # the crop's outer pixel edges map to the resized frame's edges
    pts = transform_points(np.array([[20 - 0.5, -0.5], [139.5, 119.5]]), 120, 160, 30)
    np.testing.assert_allclose(pts, [[-0.5, -0.5], [29.5, 29.5]], atol=1e-5)
    masks = np.zeros((2, 120, 160), np.uint8)
    masks[:, :, 80:] = 3
    out = resize_masks(masks, 30)
    assert out.shape == (2, 30, 30) and set(np.unique(out)) == {0, 3}  # labels never blended
    assert crop_resize(np.zeros((50, 70, 3), np.uint8), 20).shape == (20, 20, 3)
