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
    ``video_id = <published split>-<file stem>-<index in file, 3 digits>``.

Splits
    The dataset publishes only train and test. ``val_count`` (default 0; assumed, our choice — neither
    the dataset nor the papers define a BAIR validation set) carves a deterministic val split out of
    train: the LAST ``val_count`` train records in the order above (i.e. the end of the last train
    files) are ``val``; their ids keep the ``train-`` prefix of the file they come from. Test is never
    touched, and ``val_count=0`` gives the same records as before. A size like the test set's (256) is a
    reasonable choice.

Options
    ``max_videos`` (default: all) — at most this many clips per split (the first ones of each split).
    ``val_count`` (default 0) — see Splits.
    ``splits`` (default ``[train, val, test]`` when ``val_count`` > 0, else ``[train, test]``).
    ``num_frames`` (default 30), ``image_size`` (default 64) — the layout of an example.
"""

from __future__ import annotations

import re
import struct
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


def count_records(path: Path) -> int:
    """Number of records in a tfrecord file, from the length headers only (no parsing)."""
    size = path.stat().st_size
    n = pos = 0
    with open(path, "rb") as fh:
        while pos < size:
            head = fh.read(8)
            if len(head) != 8:
                raise VidpredError(f"BAIR file {path}: record {n} is truncated (cannot read its length)")
            pos += 8 + 4 + struct.unpack("<Q", head)[0] + 4  # length, crc(length), data, crc(data)
            if pos > size:
                raise VidpredError(f"BAIR file {path}: record {n} is truncated")
            fh.seek(pos)
            n += 1
    return n


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
        data = find_data_dir(root)
        max_videos = _int_option(options, "max_videos", None)
        num_frames = _int_option(options, "num_frames", 30)
        size = _int_option(options, "image_size", 64)
        val_count = options.get("val_count", 0)
        if isinstance(val_count, bool) or not isinstance(val_count, int) or val_count < 0:
            raise VidpredError(f"option val_count must be a non-negative integer, got {val_count!r}")
        splits = options.get("splits") or (["train", "val", "test"] if val_count else ["train", "test"])
        splits = [splits] if isinstance(splits, str) else list(splits)
        for split in splits:
            if split not in ("train", "val", "test"):
                raise VidpredError(f"option splits: BAIR has only train, test and (with val_count) val, got '{split}'")
            if split == "val" and not val_count:
                raise VidpredError("option splits: BAIR publishes no val split; set val_count=N to carve one "
                                   "out of train")
        train_files = sorted(data.glob("train/*.tfrecords"), key=natural_key)
        first_val = None  # position (in train order) of the first val record
        counts: dict[Path, int] = {}
        if val_count:
            counts = {p: count_records(p) for p in train_files}
            total = sum(counts.values())
            if val_count >= total:
                raise VidpredError(f"option val_count={val_count} must be smaller than the {total} BAIR train records")
            first_val = total - val_count
        for split in splits:
            if split == "test":
                files, lo, hi = sorted(data.glob("test/*.tfrecords"), key=natural_key), 0, None
            else:
                files = train_files
                lo, hi = (first_val, None) if split == "val" else (0, first_val)
            if max_videos is not None:
                hi = lo + max_videos if hi is None else min(hi, lo + max_videos)
            for path, index, frames in self._records(files, lo, hi, num_frames, size, counts):
                published = "test" if split == "test" else "train"
                yield RawVideo(video_id=f"{published}-{path.stem}-{index:03d}", split=split, source="bair",
                               frames=frames, meta={"file": path.name, "index": index})

    @staticmethod
    def _records(files: list[Path], lo: int, hi: int | None, num_frames: int, size: int, counts: dict):
        """(file, index in file, frames) of the records at positions lo ≤ p < hi of ``files`` read in order;
        files wholly before ``lo`` are skipped unread when ``counts`` gives their record count."""
        from tfrecord.reader import tfrecord_loader

        description = {KEY.format(i=i): "byte" for i in range(num_frames)}
        pos = 0
        for path in files:
            if hi is not None and pos >= hi:
                return
            if path in counts and pos + counts[path] <= lo:
                pos += counts[path]
                continue
            records = tfrecord_loader(str(path), None, description)
            index = 0
            while hi is None or pos < hi:
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
                if pos >= lo:
                    yield path, index, np.stack([_decode(example[KEY.format(i=i)], size, path, index, i)
                                                 for i in range(num_frames)])
                index += 1
                pos += 1


def _decode(buf, size: int, path: Path, index: int, frame: int) -> np.ndarray:
    raw = np.frombuffer(bytes(buf), dtype=np.uint8)
    if raw.size != size * size * 3:
        raise VidpredError(f"BAIR file {path}: record {index} frame {frame} has {raw.size} bytes, "
                           f"expected {size}x{size}x3 = {size * size * 3}")
    return raw.reshape(size, size, 3)


SOURCE = BAIRSource()
