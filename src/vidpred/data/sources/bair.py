"""BAIR robot pushing (softmotion30_44k): 30 frames of 64×64 RGB per clip, stored in tfrecords.

Fetch
    ``--source`` omitted: the 30 GB tar
    ``http://rail.eecs.berkeley.edu/datasets/bair_robot_pushing_dataset_v0.tar`` is downloaded into
    ``workdir`` and extracted to ``workdir/bair``. ``--source`` may be another URL of that tar, a local
    tar, or a local directory holding ``softmotion30_44k/{train,test}/*.tfrecords`` (used in place).

Reading
    The ``tfrecord`` package (no TensorFlow) reads each example; frame ``i`` is the raw uint8 buffer
    under ``{i}/image_aux1/encoded`` (64·64·3 bytes, RGB). Files are visited in natural order
    (``traj_0_to_255`` before ``traj_256_to_511``), examples in file order, so the order is fixed.
    ``video_id = <split>-<file stem>-<index in file, 3 digits>``. The dataset has only train and test.

Options
    ``max_videos`` (default: all) — at most this many clips per split.
    ``splits`` (default ``[train, test]``).
    ``num_frames`` (default 30), ``image_size`` (default 64) — the layout of an example.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np

from vidpred.data.archives import extract
from vidpred.data.download import fetch_file, is_url
from vidpred.data.sources.base import RawVideo
from vidpred.errors import VidpredError

URL = "http://rail.eecs.berkeley.edu/datasets/bair_robot_pushing_dataset_v0.tar"
DATA_DIR = "softmotion30_44k"
KEY = "{i}/image_aux1/encoded"


def natural_key(path: Path) -> tuple:
    """Sort key treating digit runs as numbers: traj_256 < traj_1024."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))


def find_data_dir(root: Path) -> Path:
    """The folder holding ``train/`` and ``test/`` tfrecords: root, root/softmotion30_44k, or one level deeper."""
    root = Path(root)
    for cand in [root, root / DATA_DIR, *sorted(root.glob(f"*/{DATA_DIR}"))]:
        if any(cand.glob("train/*.tfrecords")) or any(cand.glob("test/*.tfrecords")):
            return cand
    raise VidpredError(f"no BAIR tfrecords under {root} (expected {DATA_DIR}/train/*.tfrecords)")


def _int_option(options: dict, key: str, default: int | None) -> int | None:
    value = options.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VidpredError(f"option {key} must be a positive integer, got {value!r}")
    return value


class BAIRSource:
    name = "bair"
    description = "BAIR robot pushing (softmotion30_44k): 30-frame 64x64 RGB clips from tfrecords"

    def fetch(self, source: str | None, workdir: Path, options: dict) -> Path:
        workdir = Path(workdir)
        if source is None or is_url(source):
            root = workdir / "bair"
            if not root.exists():
                extract(fetch_file(source or URL, workdir), root)
            return root
        src = Path(source).expanduser()
        if src.is_file():
            root = workdir / "bair"
            if not root.exists():
                extract(src, root)
            return root
        if src.is_dir():
            find_data_dir(src)
            return src
        raise VidpredError(f"BAIR --source {src} does not exist (expected the tar or a folder of tfrecords)")

    def iter_videos(self, root: Path, options: dict) -> Iterator[RawVideo]:
        from tfrecord.reader import tfrecord_loader

        data = find_data_dir(root)
        max_videos = _int_option(options, "max_videos", None)
        num_frames = _int_option(options, "num_frames", 30)
        size = _int_option(options, "image_size", 64)
        splits = options.get("splits") or ["train", "test"]
        splits = [splits] if isinstance(splits, str) else list(splits)
        description = {KEY.format(i=i): "byte" for i in range(num_frames)}
        for split in splits:
            if split not in ("train", "test"):
                raise VidpredError(f"option splits: BAIR has only train and test, got '{split}'")
            count = 0
            for path in sorted(data.glob(f"{split}/*.tfrecords"), key=natural_key):
                if max_videos is not None and count >= max_videos:
                    break
                records = tfrecord_loader(str(path), None, description)
                index = 0
                while max_videos is None or count < max_videos:
                    try:
                        example = next(records)
                    except StopIteration:
                        break
                    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
                        raise VidpredError(f"BAIR file {path}: record {index} is corrupt or truncated "
                                           f"({' '.join(str(exc).split())[:200]})") from None
                    except Exception as exc:  # protobuf DecodeError and friends
                        raise VidpredError(f"BAIR file {path}: record {index} cannot be parsed "
                                           f"({type(exc).__name__})") from None
                    frames = np.stack([_decode(example[KEY.format(i=i)], size, path, index, i)
                                       for i in range(num_frames)])
                    yield RawVideo(video_id=f"{split}-{path.stem}-{index:03d}", split=split, source="bair",
                                   frames=frames, meta={"file": path.name, "index": index})
                    index += 1
                    count += 1


def _decode(buf, size: int, path: Path, index: int, frame: int) -> np.ndarray:
    raw = np.frombuffer(bytes(buf), dtype=np.uint8)
    if raw.size != size * size * 3:
        raise VidpredError(f"BAIR file {path}: record {index} frame {frame} has {raw.size} bytes, "
                           f"expected {size}x{size}x3 = {size * size * 3}")
    return raw.reshape(size, size, 3)


SOURCE = BAIRSource()
