"""Experiment configs: YAML + ``--set key=value`` overrides, with provenance for every number.

A config file is a nested YAML mapping plus a top-level ``provenance`` mapping from dotted keys to a
source string that starts with one of

* ``paper``   — e.g. ``paper: MOSO appendix Tab. 9``
* ``code``    — the authors' public code, e.g. ``code: corrwise train.py default``
* ``assumed`` — our choice, with the reason, e.g. ``assumed: fits 2 CPU cores``
* ``derived`` — computed from other entries (say which)

A file may name ``base: other.yaml`` (relative to itself); the base is loaded first and deep-merged.
Every numeric leaf must have provenance (``missing_provenance`` finds the gaps; a test runs it over all
files in ``configs/``). CLI overrides get provenance ``override: --set``. The resolved values and the
provenance are both logged to MLflow by the tracking module.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from vidpred.errors import VidpredError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"
PROVENANCE_RE = re.compile(r"^(paper|code|assumed|derived|override)\b")
_MISSING = object()


@dataclass
class Config:
    values: dict
    provenance: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def get(self, dotted: str, default: Any = _MISSING) -> Any:
        node: Any = self.values
        for part in dotted.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif default is _MISSING:
                where = f" in {self.path}" if self.path else ""
                raise VidpredError(f"config key '{dotted}' is missing{where}")
            else:
                return default
        return node

    def __getitem__(self, dotted: str) -> Any:
        return self.get(dotted)

    def section(self, dotted: str) -> "Config":
        """A sub-config; provenance keys are re-rooted."""
        values = self.get(dotted)
        if not isinstance(values, dict):
            raise VidpredError(f"config key '{dotted}' is not a section")
        prefix = dotted + "."
        prov = {k[len(prefix):]: v for k, v in self.provenance.items() if k.startswith(prefix)}
        return Config(copy.deepcopy(values), prov, self.path)

    def set(self, dotted: str, value: Any, provenance: str | None = None) -> None:
        parts = dotted.split(".")
        node = self.values
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise VidpredError(f"cannot set '{dotted}': '{part}' is not a section")
            node = nxt
        node[parts[-1]] = value
        if provenance:
            self.provenance[dotted] = provenance

    def flat(self) -> dict[str, Any]:
        """Dotted key → leaf value (lists kept whole), e.g. for MLflow params."""
        return dict(_flatten(self.values))

    def to_dict(self) -> dict:
        return {**copy.deepcopy(self.values), "provenance": dict(self.provenance)}

    def dump(self, path: Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _flatten(node: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise VidpredError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" (line {line + 1})" if line is not None else ""
        raise VidpredError(f"config file {path} is not valid YAML{at}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise VidpredError(f"config file {path} must hold a mapping at the top level")
    return data


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (following ``base:``), then apply ``key=value`` overrides."""
    path = resolve_config_path(path)
    data = _read_yaml(path)
    provenance = dict(data.pop("provenance", None) or {})
    base = data.pop("base", None)
    if base:
        parent = load_config(path.parent / base)
        values = _deep_merge(parent.values, data)
        provenance = {**parent.provenance, **provenance}
    else:
        values = data
    for key, prov in provenance.items():
        if not isinstance(prov, str) or not PROVENANCE_RE.match(prov):
            raise VidpredError(
                f"config {path}: provenance of '{key}' must start with paper/code/assumed/derived, got {prov!r}"
            )
    cfg = Config(values, provenance, path)
    for item in overrides:
        apply_override(cfg, item)
    return cfg


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise VidpredError(f"--set expects key=value, got '{item}'")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise VidpredError(f"--set expects key=value, got '{item}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_override(cfg: Config, item: str) -> None:
    key, value = parse_override(item)
    cfg.set(key, value, provenance="override: --set")


def missing_provenance(cfg: Config) -> list[str]:
    """Numeric leaves (and numeric list entries) with no provenance entry for them or a parent key."""
    missing = []
    for key, value in cfg.flat().items():
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(value, list):
            numeric = any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not numeric:
            continue
        parts = key.split(".")
        if not any(".".join(parts[:i]) in cfg.provenance for i in range(len(parts), 0, -1)):
            missing.append(key)
    return missing


def dataclass_from_dict(cls, values: dict, section: str, ignore: Iterable[str] = ()):
    """``cls(**values)`` for a settings dataclass; a key it does not know (a typo) is one clear error.

    ``ignore`` names keys of the section that are read elsewhere (e.g. training settings beside model ones)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known - set(ignore))
    if unknown:
        raise VidpredError(f"{section}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return cls(**{k: v for k, v in values.items() if k in known})


def resolve_config_path(path: str | Path) -> Path:
    """Accept a path, or a short name like ``smoke/corrwise`` looked up under ``configs/``."""
    p = Path(path)
    if p.exists():
        return p.resolve()
    for cand in (CONFIG_DIR / p, CONFIG_DIR / f"{p}.yaml"):
        if cand.exists():
            return cand.resolve()
    raise VidpredError(f"config file not found: {path}")


def profile_config(profile: str, overrides: Iterable[str] = ()) -> Config:
    """The pipeline config of a profile: ``configs/<profile>/pipeline.yaml``."""
    path = CONFIG_DIR / profile / "pipeline.yaml"
    if not path.exists():
        known = sorted(p.parent.name for p in CONFIG_DIR.glob("*/pipeline.yaml"))
        raise VidpredError(f"unknown profile '{profile}' (known: {', '.join(known) or 'none'})")
    return load_config(path, overrides)
