"""Vimeo-90K septuplets: 7-frame PNG sequences (448×256), official train/test lists.

Fetch
    ``--source`` omitted: ``http://data.csail.mit.edu/tofu/dataset/vimeo_septuplet.zip`` (~82 GB) is
    downloaded into ``workdir`` and extracted to ``workdir/vimeo``. ``--source`` may be another URL of
    that zip, a local copy of it, or the unpacked ``vimeo_septuplet`` folder (used in place).

Records
    One per line of ``sep_trainlist.txt`` (split ``train``) and ``sep_testlist.txt`` (``test``), in
    file order: a line ``00001/0001`` gives ``video_id = 00001-0001`` and
    ``path = sequences/00001/0001`` (the folder holding ``im1.png`` … ``im7.png``). A listed folder that
    is missing is still yielded, so the store writer reports it as rejected rather than silently
    dropping it.

Options
    ``max_videos`` (default: all) — at most this many sequences per split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from vidpred.data.archives import extract
from vidpred.data.download import fetch_file, is_url
from vidpred.data.sources.base import RawVideo
from vidpred.errors import VidpredError

URL = "http://data.csail.mit.edu/tofu/dataset/vimeo_septuplet.zip"
LISTS = {"train": "sep_trainlist.txt", "test": "sep_testlist.txt"}


def find_root(root: Path) -> Path:
    """The folder holding ``sep_trainlist.txt`` and ``sequences/``: root, root/vimeo_septuplet or one level deeper."""
    root = Path(root)
    for cand in [root, root / "vimeo_septuplet", *sorted(root.glob("*/"))]:
        if any((cand / name).is_file() for name in LISTS.values()):
            return cand
    raise VidpredError(f"no Vimeo-90K list files ({', '.join(LISTS.values())}) under {root}")


class VimeoSource:
    name = "vimeo90k"
    description = "Vimeo-90K septuplets (7 PNG frames each); official sep_trainlist / sep_testlist"

    def fetch(self, source: str | None, workdir: Path, options: dict) -> Path:
        workdir = Path(workdir)
        if source is None or is_url(source) or Path(source).expanduser().is_file():
            root = workdir / "vimeo"
            if not root.exists():
                archive = fetch_file(source or URL, workdir) if (source is None or is_url(source)) \
                    else Path(source).expanduser()
                extract(archive, root)
            return find_root(root)
        src = Path(source).expanduser()
        if not src.is_dir():
            raise VidpredError(f"Vimeo-90K --source {src} does not exist")
        return find_root(src)

    def iter_videos(self, root: Path, options: dict) -> Iterator[RawVideo]:
        base = find_root(root)
        max_videos = options.get("max_videos")
        if max_videos is not None and (isinstance(max_videos, bool) or not isinstance(max_videos, int) or max_videos < 1):
            raise VidpredError(f"option max_videos must be a positive integer, got {max_videos!r}")
        for split, name in LISTS.items():
            listing = base / name
            if not listing.is_file():
                continue
            count = 0
            for line in listing.read_text().splitlines():
                entry = line.strip().strip("/")
                if not entry:
                    continue
                if max_videos is not None and count >= max_videos:
                    break
                parts = entry.split("/")
                if len(parts) != 2 or not all(p.isdigit() for p in parts):
                    raise VidpredError(f"{listing}: cannot read line '{line.strip()}' (expected like 00001/0001)")
                yield RawVideo(video_id="-".join(parts), split=split, source="vimeo90k",
                               path=base / "sequences" / parts[0] / parts[1])
                count += 1


SOURCE = VimeoSource()
