"""KTH Actions: 25 persons × 6 actions × 4 scenarios, 160×120 grey avi at 25 fps.

Fetch
    ``--source`` omitted: the six zips and ``00sequences.txt`` are downloaded from
    ``http://www.nada.kth.se/cvap/actions/`` into ``workdir`` and extracted there (one folder per
    action). ``--source`` may also be another base URL holding the same files, a local directory with
    the zips (extracted into ``workdir``) or a directory that already holds the ``*.avi`` files (used
    in place).

Splits (options)
    ``train_persons`` (default ``1-16``), ``test_persons`` (default ``17-25``), ``val_persons``
    (default none): person numbers as an int, a list, or a string like ``"1-16"`` / ``"1-10,12"``.
    Persons in no list are skipped; a person in two lists is an error. The default follows MOSO
    §4 / PredRNN / OpenSTL; SVG and MCVD use ``1-20`` / ``21-25``.
    ``actions`` (default all six) limits the actions.

Sequences
    ``00sequences.txt`` lists, for each avi, the frame ranges in which the action is performed
    (e.g. ``person01_boxing_d1  frames  1-95, 96-185, 186-245, 246-360``). With ``use_sequences``
    (default: true when the file is present) each range becomes one record:
    ``video_id = person01_boxing_d1_seq1`` …, all sharing the same ``path``, with
    ``meta["frame_range"] = (start, end)`` — inclusive, 1-based frame numbers exactly as in the file.
    The store writer keeps only those frames. Without sequences each avi is one record
    (``video_id = person01_boxing_d1``, no ``frame_range``).

Every record's ``meta`` has ``person`` (int), ``action``, ``scenario`` (``d1``…``d4``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Iterator

from vidpred.data.archives import extract
from vidpred.data.download import download, fetch_file, is_url
from vidpred.data.sources.base import RawVideo
from vidpred.errors import VidpredError

BASE_URL = "http://www.nada.kth.se/cvap/actions/"
ACTIONS = ("walking", "jogging", "running", "boxing", "handwaving", "handclapping")
SEQUENCES_FILE = "00sequences.txt"
FPS = 25.0  # KTH documentation; IMPLEMENTATION-NOTES "Dataset sources"
_AVI_RE = re.compile(r"^person(\d+)_([a-z]+)_(d\d)(?:_uncomp)?\.avi$", re.IGNORECASE)
_SEQ_LINE_RE = re.compile(r"^\s*(person\d+_[a-z]+_d\d)\s+frames\s+(.+)$", re.IGNORECASE)
_RANGE_RE = re.compile(r"(\d+)\s*-\s*(\d+)")


def parse_numbers(value, setting: str) -> set[int]:
    """``3``, ``[1, 2]``, ``"1-16"`` or ``"1-10,12"`` → a set of ints (VidpredError naming ``setting``)."""
    if value is None or value == "":
        return set()
    items = value if isinstance(value, (list, tuple, set)) else [value]
    out: set[int] = set()
    for item in items:
        if isinstance(item, bool):
            raise VidpredError(f"option {setting}: expected numbers, got {value!r}")
        if isinstance(item, int):
            out.add(item)
            continue
        for part in str(item).replace(" ", "").split(","):
            if not part:
                continue
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m:
                raise VidpredError(f"option {setting}: cannot read '{part}' (use e.g. 1-16 or 1,2,5)")
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise VidpredError(f"option {setting}: empty range '{part}'")
            out.update(range(lo, hi + 1))
    return out


def split_table(options: dict, defaults: dict[str, str], setting_suffix: str) -> dict[int, str]:
    """Number → split from options ``<split>_<suffix>`` (e.g. ``train_persons``); overlaps are errors."""
    table: dict[int, str] = {}
    for split in ("train", "val", "test"):
        key = f"{split}_{setting_suffix}"
        for n in parse_numbers(options.get(key, defaults.get(split)), key):
            if n in table:
                raise VidpredError(f"option {key}: {setting_suffix[:-1]} {n} is also in {table[n]}_{setting_suffix}")
            table[n] = split
    return table


def _actions(options: dict) -> list[str]:
    value = options.get("actions") or list(ACTIONS)
    actions = [value] if isinstance(value, str) else list(value)
    actions = [a.strip() for item in actions for a in str(item).split(",") if a.strip()]
    unknown = sorted(set(actions) - set(ACTIONS))
    if unknown:
        raise VidpredError(f"option actions: unknown KTH action(s) {', '.join(unknown)} (known: {', '.join(ACTIONS)})")
    return actions


def parse_sequences(path: Path) -> dict[str, list[tuple[int, int]]]:
    """``00sequences.txt`` → ``{"person01_boxing_d1": [(1, 95), (96, 185), …]}`` (1-based, inclusive)."""
    table: dict[str, list[tuple[int, int]]] = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        m = _SEQ_LINE_RE.match(line)
        if not m:
            continue  # header, blank line or "missing" note
        ranges = [(int(a), int(b)) for a, b in _RANGE_RE.findall(m.group(2))]
        bad = [r for r in ranges if r[0] < 1 or r[1] < r[0]]
        if bad:
            raise VidpredError(f"{path}: impossible frame range {bad[0][0]}-{bad[0][1]} for {m.group(1)}")
        if ranges:
            table[m.group(1).lower()] = ranges
    return table


class KTHSource:
    name = "kth"
    description = "KTH Actions (25 persons, 6 actions), avi 160x120 @ 25 fps; persons 1-16 train / 17-25 test"

    def fetch(self, source: str | None, workdir: Path, options: dict) -> Path:
        workdir = Path(workdir)
        actions = _actions(options)
        if source is None or is_url(source):
            base = (source or BASE_URL).rstrip("/") + "/"
            root = workdir / "kth"
            for action in actions:
                if not (root / action).exists():
                    archive = fetch_file(base + f"{action}.zip", workdir / "kth-zips")
                    extract(archive, root / action)
            download(base + SEQUENCES_FILE, root / SEQUENCES_FILE)
            return root
        src = Path(source).expanduser()
        if not src.is_dir():
            raise VidpredError(f"KTH --source {src} is not a directory (expected the six zips or the extracted avi)")
        if any(src.rglob("*.avi")):
            return src
        zips = {a: src / f"{a}.zip" for a in actions}
        missing = [p.name for p in zips.values() if not p.is_file()]
        if missing:
            raise VidpredError(f"KTH --source {src} holds no .avi files and lacks {', '.join(missing)}")
        root = workdir / "kth"
        for action, archive in zips.items():
            if not (root / action).exists():
                extract(archive, root / action)
        if (src / SEQUENCES_FILE).is_file():
            shutil.copyfile(src / SEQUENCES_FILE, root / SEQUENCES_FILE)
        return root

    def iter_videos(self, root: Path, options: dict) -> Iterator[RawVideo]:
        root = Path(root)
        persons = split_table(options, {"train": "1-16", "test": "17-25"}, "persons")
        actions = set(_actions(options))
        seq_files = sorted(root.rglob(SEQUENCES_FILE))
        use_sequences = options.get("use_sequences")
        if use_sequences is None:
            use_sequences = bool(seq_files)
        if use_sequences and not seq_files:
            raise VidpredError(f"option use_sequences is true but no {SEQUENCES_FILE} was found under {root}")
        sequences = parse_sequences(seq_files[0]) if use_sequences else {}

        avis = sorted((p for p in root.rglob("*") if p.suffix.lower() == ".avi"), key=lambda p: p.name.lower())
        if not avis:
            raise VidpredError(f"no KTH .avi files found under {root}")
        for path in avis:
            m = _AVI_RE.match(path.name)
            if not m:
                continue  # not a KTH file name
            person, action, scenario = int(m.group(1)), m.group(2).lower(), m.group(3).lower()
            split = persons.get(person)
            if split is None or action not in actions:
                continue
            stem = f"person{person:02d}_{action}_{scenario}"
            meta = {"person": person, "action": action, "scenario": scenario}
            ranges = sequences.get(stem) if use_sequences else None
            if not ranges:
                yield RawVideo(video_id=stem, split=split, source="kth", path=path, fps=FPS, meta=meta)
                continue
            for k, (start, end) in enumerate(ranges, 1):
                yield RawVideo(video_id=f"{stem}_seq{k}", split=split, source="kth", path=path, fps=FPS,
                               meta={**meta, "frame_range": (start, end)})


SOURCE = KTHSource()
