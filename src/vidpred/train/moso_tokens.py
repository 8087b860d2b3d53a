"""Stage "moso-tokens": encode a MOSO store into scene / object / motion token maps with a trained VQVAE.

For every clip (all splits) two token sets are stored: the real clip's (``scene``, ``object``, ``motion``)
and its pseudo clip's (``cond_*``: the first ``context`` frames padded by repeating the last, paper Eq. 10),
the input of MOSO-Transformer prediction training. Output directory (written atomically)::

    <out>/tokens.json        {"format": "vidpred-moso-tokens/1", "codebook_version", "vqvae", "moso_store",
                              "context", "given_frames", "num_clips", "splits": {split: clips}, "raw_content",
                              "shapes": {...}}
    <out>/manifest.parquet   the MOSO store's clip manifest (clip, video_id, split, start, …): every split of
                             the store (train / val / test) is carried through, each clip keeps its split
    <out>/<name>.npy         int32 token maps: scene N×hs×ws, object N×ho×wo, motion N×T×hm×wm, cond_* alike

``codebook_version`` (a hash of the codebook) ties the tokens to the VQVAE that made them; the transformer
stage and the inference commands refuse tokens from another codebook.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vidpred.config import REQUIRED, Schema, load_config
from vidpred.errors import VidpredError
from vidpred.fsutil import atomic_dir
from vidpred.models.moso.inference import codebook_version, load_vqvae, model_inputs
from vidpred.models.moso.sampling import given_frames, pseudo_clip

FORMAT = "vidpred-moso-tokens/1"
NAMES = ("scene", "object", "motion", "cond_scene", "cond_object", "cond_motion")
# The config keys main() reads → default (REQUIRED: no default); any other key is an error.
CONFIG_SCHEMA = Schema("moso_tokens", {"tokens.vqvae": REQUIRED, "data.moso_store": REQUIRED, "tokens.out": REQUIRED,
                                       "tokens.context": REQUIRED, "tokens.batch_size": 16})


@dataclass
class TokensSummary:
    out: Path
    num_clips: int
    codebook_version: str
    usage: float
    splits: dict = field(default_factory=dict)  # split → clips

    def describe(self) -> str:
        splits = ", ".join(f"{k}: {v}" for k, v in sorted(self.splits.items()))
        return (f"MOSO tokens {self.out}: {self.num_clips} clips ({splits}), codebook {self.codebook_version}, "
                f"{self.usage:.1%} of the codes used")


@torch.no_grad()
def extract_tokens(vqvae_path, moso_store, out, context: int, batch_size: int = 16) -> TokensSummary:
    from vidpred.preprocess.moso import decompose, load_moso_store

    vqvae, meta = load_vqvae(vqvae_path)
    if vqvae.cfg.decomposition != "mso":
        raise VidpredError(f"{vqvae_path}: tokens need a decomposed (mso) VQVAE, not the '{vqvae.cfg.decomposition}' ablation")
    store = load_moso_store(moso_store)
    t = store.meta["clip_len"]
    store_hw = (int(store.meta["height"]), int(store.meta.get("width", store.meta["height"])))
    if t != vqvae.cfg.frames or store_hw != vqvae.cfg.hw:
        raise VidpredError(f"MOSO store {moso_store} has clips of {t} frames at {store_hw[0]}×{store_hw[1]} px, "
                           f"the VQVAE {vqvae_path} expects {vqvae.cfg.frames} at {vqvae.cfg.hw[0]}×{vqvae.cfg.hw[1]}")
    if not 1 <= context < t:
        raise VidpredError(f"tokens.context must be in 1..{t - 1} (clip length {t}), got {context}")
    raw = bool(meta.get("raw_content", False))
    lower, upper = store.meta["lower"], store.meta["upper"]
    n = len(store)
    chunks = {k: [] for k in NAMES}
    for start in tqdm(range(0, n, batch_size), desc="moso-tokens", file=sys.stderr, unit="batch"):
        clips = [store.clip(i) for i in range(start, min(n, start + batch_size))]
        parts = {k: torch.stack([c[k] for c in clips]) for k in ("frames", "motion", "scene", "object")}
        real = vqvae.encode(*model_inputs(vqvae, parts, raw))["tokens"]
        pseudo = pseudo_clip(parts["frames"][:, :context], t)
        pparts = decompose(pseudo, lower, upper)
        pparts["frames"] = pseudo
        cond = vqvae.encode(*model_inputs(vqvae, pparts, raw))["tokens"]
        for k in ("scene", "object", "motion"):
            chunks[k].append(real[k].int().numpy())
            chunks[f"cond_{k}"].append(cond[k].int().numpy())
    arrays = {k: np.concatenate(v) for k, v in chunks.items()}
    version = codebook_version(vqvae)
    splits = {str(k): int(v) for k, v in store.manifest.groupby("split").size().items()}
    usage = len(np.unique(np.concatenate([arrays[k].ravel() for k in ("scene", "object", "motion")]))) \
        / vqvae.cfg.num_codes
    info = {"format": FORMAT, "codebook_version": version, "vqvae": str(Path(vqvae_path).resolve()),
            "moso_store": str(Path(moso_store).resolve()), "context": int(context),
            "given_frames": given_frames(context, vqvae.cfg.pool), "num_clips": n, "splits": splits, "raw_content": raw,
            "num_codes": vqvae.cfg.num_codes, "shapes": {k: list(v.shape[1:]) for k, v in arrays.items()}}
    with atomic_dir(out) as tmp:
        for k, v in arrays.items():
            np.save(tmp / f"{k}.npy", v)
        store.manifest.to_parquet(tmp / "manifest.parquet", index=False)
        (tmp / "tokens.json").write_text(json.dumps(info, indent=1, sort_keys=True))
    return TokensSummary(Path(out), n, version, usage, splits)


@dataclass
class TokenSet:
    root: Path
    meta: dict
    manifest: object
    arrays: dict


def load_tokens(directory) -> TokenSet:
    import pandas as pd

    root = Path(directory)
    path = root / "tokens.json"
    if not path.is_file():
        raise VidpredError(f"{root} is not a MOSO token set (no tokens.json); run `vidpred moso tokens`")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise VidpredError(f"{path} is not valid JSON") from None
    if meta.get("format") != FORMAT:
        raise VidpredError(f"{path}: unknown format {meta.get('format')!r} (expected {FORMAT})")
    arrays = {}
    for k in NAMES:
        try:
            arrays[k] = np.load(root / f"{k}.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise VidpredError(f"{root / (k + '.npy')} cannot be read: {exc}") from None
        if arrays[k].shape != (meta["num_clips"], *meta["shapes"][k]):
            raise VidpredError(f"{root / (k + '.npy')} has shape {arrays[k].shape}, tokens.json says "
                               f"{(meta['num_clips'], *meta['shapes'][k])}")
        if arrays[k].size and (arrays[k].min() < 0 or arrays[k].max() >= meta["num_codes"]):
            raise VidpredError(f"{root / (k + '.npy')} holds token ids outside 0..{meta['num_codes'] - 1}")
    manifest = pd.read_parquet(root / "manifest.parquet")
    return TokenSet(root, meta, manifest, arrays)


class TokenDataset(torch.utils.data.Dataset):
    """Clips of one split of a token set; item = dict of int64 token tensors plus ``clip`` (row in the store)."""

    def __init__(self, directory, split: str = "train"):
        self.tokens = load_tokens(directory)
        m = self.tokens.manifest
        self.clips = m.loc[m["split"] == split, "clip"].astype(int).tolist()
        if not self.clips:
            have = ", ".join(sorted(map(str, m["split"].unique()))) or "none"
            raise VidpredError(f"MOSO token set {directory} has no clips in split '{split}' (splits: {have})")

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        c = self.clips[i]
        item = {k: torch.from_numpy(np.array(v[c])).long() for k, v in self.tokens.arrays.items()}
        item["clip"] = c
        return item


def main(config, overrides=()) -> TokensSummary:
    """Config keys: ``tokens.vqvae`` (model file), ``data.moso_store``, ``tokens.out``, ``tokens.context``."""
    cfg = load_config(config, overrides, schema=CONFIG_SCHEMA)
    return extract_tokens(cfg["tokens.vqvae"], cfg["data.moso_store"], cfg["tokens.out"], int(cfg["tokens.context"]),
                          int(cfg.get("tokens.batch_size", 16)))
