"""KITTI raw, right colour camera (``image_03``), 10 fps, one record per drive — PredNet split.

Fetch (default: a local directory)
    KITTI raw is distributed as one zip per drive behind a registration page, so the default is
    ``--source DIR`` pointing at the unpacked data, laid out as the official downloader leaves it::

        DIR/2011_09_26/2011_09_26_drive_0005_sync/image_03/data/0000000000.png …

    (``DIR`` may also be a date folder or hold the drive folders directly.) To download instead,
    give options ``url_template`` and ``drives``; each drive's zip is fetched with
    :func:`vidpred.data.download.download` and extracted into ``workdir/kitti``. The template may use
    ``{drive}`` (``2011_09_26_drive_0005``) and ``{date}`` (``2011_09_26``), e.g.
    ``https://s3.eu-central-1.amazonaws.com/avg-kitti/raw_data/{drive}/{drive}_sync.zip``.
    A ``--source`` containing ``{drive}`` is taken as the template too.

Records
    ``video_id`` = the drive folder name (``2011_09_26_drive_0005_sync``), ``path`` = its
    ``image_03/data`` folder of PNG frames, ``fps = 10``.

Splits (options)
    ``val_drives`` (default ``[2011_09_26_drive_0005_sync]``), ``test_drives`` (default the 0070,
    0079 and 0104 drives of 2011_09_26) — the PredNet split (IMPLEMENTATION-NOTES); every other drive
    is ``train``. Entries are full drive names, or ints meaning that drive number on any date.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from vidpred.data.archives import extract
from vidpred.data.download import fetch_file
from vidpred.data.sources.base import RawVideo
from vidpred.errors import VidpredError

FPS = 10.0  # KITTI raw camera rate
VAL_DRIVES = ["2011_09_26_drive_0005_sync"]
TEST_DRIVES = ["2011_09_26_drive_0070_sync", "2011_09_26_drive_0079_sync", "2011_09_26_drive_0104_sync"]
_DRIVE_RE = re.compile(r"^(\d{4}_\d{2}_\d{2})_drive_(\d{4})_sync$")
_PATTERNS = ("*_sync/image_03/data", "*/*_sync/image_03/data", "*/*/*_sync/image_03/data")


def find_drives(root: Path) -> list[Path]:
    """The ``image_03/data`` folders under ``root`` (up to two levels above the drive folders), sorted by drive."""
    root = Path(root)
    found = {p for pattern in _PATTERNS for p in root.glob(pattern) if p.is_dir() and _DRIVE_RE.match(p.parent.parent.name)}
    return sorted(found, key=lambda p: p.parent.parent.name)


def _matcher(value, setting: str):
    items = value if isinstance(value, (list, tuple)) else [value]
    names, numbers = set(), set()
    for item in items:
        if isinstance(item, bool):
            raise VidpredError(f"option {setting}: expected drive names or numbers, got {item!r}")
        if isinstance(item, int):
            numbers.add(item)
        elif isinstance(item, str) and item.strip():
            name = item.strip()
            names.add(name if name.endswith("_sync") else name + "_sync")
    return lambda drive, number: drive in names or number in numbers


class KITTISource:
    name = "kitti"
    description = "KITTI raw image_03 (10 fps) from a local folder; PredNet split (val 0005, test 0070/0079/0104)"

    def fetch(self, source: str | None, workdir: Path, options: dict) -> Path:
        template = options.get("url_template")
        if source and "{drive}" in source:
            template = source
        if template:
            return self._download(template, options.get("drives"), Path(workdir))
        if source is None:
            raise VidpredError("KITTI needs --source DIR with the unpacked raw drives "
                               "(<date>/<date>_drive_<nnnn>_sync/image_03/data/*.png; register and download at "
                               "https://www.cvlibs.net/datasets/kitti/raw_data.php), or options url_template + drives")
        src = Path(source).expanduser()
        if not src.is_dir():
            raise VidpredError(f"KITTI --source {src} is not a directory")
        if not find_drives(src):
            raise VidpredError(f"KITTI --source {src} holds no <date>_drive_<nnnn>_sync/image_03/data folders")
        return src

    def _download(self, template: str, drives, workdir: Path) -> Path:
        drives = [drives] if isinstance(drives, str) else list(drives or [])
        if not drives:
            raise VidpredError("KITTI option url_template needs option drives (e.g. [2011_09_26_drive_0005])")
        root = workdir / "kitti"
        for drive in drives:
            drive = str(drive).removesuffix("_sync")
            m = re.match(r"^(\d{4}_\d{2}_\d{2})_drive_\d{4}$", drive)
            if not m:
                raise VidpredError(f"option drives: '{drive}' is not a KITTI drive name like 2011_09_26_drive_0005")
            target = root / drive
            if not target.exists():
                url = template.format(drive=drive, date=m.group(1))
                extract(fetch_file(url, workdir / "kitti-zips"), target)
        return root

    def iter_videos(self, root: Path, options: dict) -> Iterator[RawVideo]:
        is_val = _matcher(options.get("val_drives", VAL_DRIVES), "val_drives")
        is_test = _matcher(options.get("test_drives", TEST_DRIVES), "test_drives")
        folders = find_drives(root)
        if not folders:
            raise VidpredError(f"no KITTI drives (<date>_drive_<nnnn>_sync/image_03/data) under {root}")
        for data in folders:
            drive = data.parent.parent.name
            number = int(_DRIVE_RE.match(drive).group(2))
            split = "test" if is_test(drive, number) else "val" if is_val(drive, number) else "train"
            yield RawVideo(video_id=drive, split=split, source="kitti", path=data, fps=FPS,
                           meta={"date": drive[:10], "drive": number})


SOURCE = KITTISource()
