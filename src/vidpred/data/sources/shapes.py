"""Source "shapes": deterministic synthetic videos of textured sprites (``vidpred.data.synthetic``).

Nothing is downloaded. Options (defaults): ``num_videos`` (32, train), ``num_val`` (0), ``num_test``
(8), ``num_frames`` (32), ``num_objects`` (2), ``pan`` (false: static camera), ``seed`` (0), ``size``
(the prepare size), ``fps`` (10). Video ``i`` of a split is seeded by ``(seed, split, i)`` (split seeds:
train 0, test 1, val 2), so asking for more videos — or for a val split — never changes the others, and
``num_val=0`` (the default) gives byte-identical stores to those made before val existed. Videos come in
the order train, val, test (ids ``train-00000``, ``val-00000``, ``test-00000``, …).
Ground truth: ``centers`` and ``masks``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from vidpred.data.sources.base import RawVideo
from vidpred.data.synthetic import render_video
from vidpred.errors import VidpredError

DEFAULTS = {"num_videos": 32, "num_val": 0, "num_test": 8, "num_frames": 32, "num_objects": 2, "pan": False,
            "seed": 0, "size": 64, "fps": 10.0}
_SPLIT_SEED = {"train": 0, "test": 1, "val": 2}  # val last: adding it changed no existing seed


def _int_option(options: dict, key: str, minimum: int) -> int:
    value = options.get(key, DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < minimum:
        raise VidpredError(f"shapes option {key} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _bool_option(options: dict, key: str) -> bool:
    value = options.get(key, DEFAULTS[key])
    if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
        return value.lower() in {"true", "1", "yes"}
    if not isinstance(value, (bool, int)):
        raise VidpredError(f"shapes option {key} must be true or false, got {value!r}")
    return bool(value)


class ShapesSource:
    name = "shapes"
    description = "Synthetic textured sprites bouncing over a textured background (centres + masks)."
    uses_prepare_size = True  # prepare() passes its --size as the `size` option

    def fetch(self, source: str | None, workdir: Path, options: dict) -> Path:
        if source:
            raise VidpredError("dataset 'shapes' is generated; it takes no --source")
        return Path(workdir)

    def iter_videos(self, root: Path, options: dict) -> Iterator[RawVideo]:
        known = set(DEFAULTS)
        unknown = sorted(set(options) - known)
        if unknown:
            raise VidpredError(f"shapes: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        counts = {"train": _int_option(options, "num_videos", 0), "val": _int_option(options, "num_val", 0),
                  "test": _int_option(options, "num_test", 0)}
        if not sum(counts.values()):
            raise VidpredError("shapes: num_videos + num_val + num_test must be ≥ 1")
        num_frames = _int_option(options, "num_frames", 1)
        num_objects = _int_option(options, "num_objects", 0)
        size = _int_option(options, "size", 8)
        seed = _int_option(options, "seed", 0)
        pan = _bool_option(options, "pan")
        fps = float(options.get("fps", DEFAULTS["fps"]))
        for split, n in counts.items():
            for i in range(n):
                v = render_video([seed, _SPLIT_SEED[split], i], size=size, num_frames=num_frames,
                                 num_objects=num_objects, pan=pan)
                yield RawVideo(video_id=f"{split}-{i:05d}", split=split, source="shapes", frames=v.frames,
                               fps=fps, ground_truth={"centers": v.centers, "masks": v.masks},
                               meta={"seed": [seed, _SPLIT_SEED[split], i]})


SOURCE = ShapesSource()
