"""Registry of dataset sources: name → module exposing ``SOURCE`` (see ``base.Source``).

Modules are imported lazily so ``vidpred --help`` stays fast.
"""

from __future__ import annotations

import importlib

from vidpred.errors import VidpredError

SOURCES: dict[str, str] = {
    "kth": "vidpred.data.sources.kth",
    "bair": "vidpred.data.sources.bair",
    "kitti": "vidpred.data.sources.kitti",
    "vimeo90k": "vidpred.data.sources.vimeo",
    "bbcpose": "vidpred.data.sources.bbcpose",
    "mmnist": "vidpred.data.sources.mmnist",
    "folder": "vidpred.data.sources.folder",
    "shapes": "vidpred.data.sources.shapes",
    "toycar": "vidpred.data.sources.toycar",
}


def get_source(name: str):
    try:
        module = SOURCES[name]
    except KeyError:
        raise VidpredError(f"unknown dataset '{name}' (known: {', '.join(sorted(SOURCES))})") from None
    return importlib.import_module(module).SOURCE
