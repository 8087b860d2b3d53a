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

**Strict keys.** Every stage declares the keys it reads once, as a :class:`Schema` at the top of its module
(``CONFIG_SCHEMA`` in ``vidpred.train.corrwise`` …, ``vidpred.experiments.toycar``): dotted key → default
(:data:`REQUIRED`: must be set; ``**fields_of(SomeSettings, "model")``: every field of a settings dataclass,
``**loop_keys()``: the shared loop's ``train.*`` keys, i.e. the :class:`vidpred.train.loop.LoopSettings`
fields, so a new loop setting is known everywhere at once). ``load_config(path, overrides, schema=…)``
checks the merged result (files + ``base:`` + ``--set``) before anything runs: a key the stage does not
read is one :class:`VidpredError` naming it and the closest known key (``unknown key 'train.lrr' (from
--set; did you mean 'train.lr'?)``), and so is a missing required key. Without ``schema`` nothing is checked
(profiles and protocols are checked by their own readers). The rules:

* sections are the prefixes of the declared keys; a declared key's value is taken whole and not looked
  into — a list, or a mapping handed on as it is (``loss.perceptual``: ``PerceptualLoss`` arguments,
  ``loss.base`` as ``{l1: 0.5, perceptual: 0.5}``): whoever receives it checks it;
* ``base`` and ``provenance`` are file structure, read by the loader (never settable with ``--set``);
* every stage also accepts :data:`COMMON_KEYS`: ``tracking.experiment`` (the MLflow experiment,
  ``vidpred.tracking``) and ``experiment`` (a name, or the ``experiment.<name>`` section of
  ``vidpred experiment <name>``: e.g. ``experiment.toycar`` lives in ``smoke/corrwise.yaml`` and is checked
  by the toy experiment's own schema, whose ``root`` is that section);
* ``task`` is an ordinary key of the stages that read it (corrwise); profiles (``pipeline.yaml``) are
  checked by ``vidpred.profile`` and protocols (``protocols.yaml``) by ``vidpred.evaluate.protocols``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from vidpred.errors import VidpredError

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parents[1]
#: True when vidpred runs from its source checkout (editable install, pytest); False when it is installed from
#: a wheel (the image), where the configs ship inside the package (``vidpred/configs``: in the checkout a
#: symlink to the top-level ``configs/``, which setuptools copies into the wheel as package data).
FROM_CHECKOUT = (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "configs").is_dir()
#: the source checkout (configs/, data.dvc, .git) — or, installed from a wheel, the working directory, where
#: the user's project (its git repository, data.dvc) is
REPO_ROOT = _CHECKOUT if FROM_CHECKOUT else Path.cwd()
CONFIG_DIR = _CHECKOUT / "configs" if FROM_CHECKOUT else _PACKAGE / "configs"
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


def load_config(path: str | Path | Config, overrides: Iterable[str] = (), schema: Schema | None = None) -> Config:
    """Load a YAML config (following ``base:``), then apply ``key=value`` overrides; with ``schema``, check
    the result's keys (see the module doc). A :class:`Config` given instead of a path is copied first."""
    if isinstance(path, Config):
        cfg = Config(copy.deepcopy(path.values), dict(path.provenance), path.path)
        for item in overrides:
            apply_override(cfg, item)
    else:
        cfg = _load_file(path, overrides)
    if schema is not None:
        schema.check(cfg)
    return cfg


def _load_file(path: str | Path, overrides: Iterable[str]) -> Config:
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


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # a schema default meaning "no default: the config must set it"
COMMON_KEYS: dict[str, Any] = {  # read for every stage (by vidpred.tracking), see the module doc
    "tracking.experiment": None,
    "experiment": None,  # an MLflow experiment name, or experiment.<name> sections of `vidpred experiment`
}


def fields_of(cls, section: str, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """``{"section.field": default}`` for every field of a settings dataclass (:data:`REQUIRED` where it has
    no default), for a :class:`Schema` whose section goes to ``cls`` (e.g. ``PredictorConfig(**model)``)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = REQUIRED
        out[f"{section}.{f.name}"] = default
    return out


def loop_keys(section: str = "train") -> dict[str, Any]:
    """The shared training loop's keys: every :class:`vidpred.train.loop.LoopSettings` field but ``out_dir``
    and ``stage`` (the stage sets those; ``train.out_dir`` is a key of each stage, with its own default)."""
    from vidpred.train.loop import LoopSettings

    return fields_of(LoopSettings, section, exclude=("out_dir", "stage"))


def suggest(key: str, known: Iterable[str]) -> str | None:
    """The known dotted key closest to ``key`` (``difflib``), or None: in a known section, the closest
    sibling (``train.lrr`` → ``train.lr``); in an unknown one, the closest whole key (``trian.lr`` →
    ``train.lr``); failing that, the same name in another section (``optim.lr`` → ``train.lr``)."""
    known = sorted(set(known))
    parent, _, leaf = key.rpartition(".")
    if not parent or parent in known:
        siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == parent]
        close = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
        match = [f"{parent}.{m}" if parent else m for m in close]
    else:
        match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    match = match or [k for k in known if k.rpartition(".")[2] == leaf and k != key]
    return match[0] if match else None


def _shown(path: Path | None) -> str:
    if path is None:
        return "config"
    try:
        return f"config {Path(path).relative_to(REPO_ROOT)}"
    except ValueError:
        return f"config {path}"


@dataclass(frozen=True)
class Schema:
    """The config keys one stage reads (see the module doc): ``keys`` maps each dotted key, relative to
    ``root`` ("" = the whole file), to its default (:data:`REQUIRED`: must be set). The default is what the
    stage uses when the key is absent; it documents the stage — the stage code still reads the key itself."""

    stage: str
    keys: dict[str, Any]
    root: str = ""

    def __post_init__(self):
        keys = {**COMMON_KEYS, **self.keys} if not self.root else dict(self.keys)
        clash = sorted(k for k in keys if any(o.startswith(k + ".") for o in keys))
        if clash:  # a programming error in a stage module, not a user error
            raise ValueError(f"schema {self.stage}: '{clash[0]}' is both a key and a section")
        object.__setattr__(self, "keys", keys)

    @property
    def sections(self) -> set[str]:
        return {".".join(k.split(".")[:i]) for k in self.keys for i in range(1, k.count(".") + 1)}

    def known(self) -> set[str]:
        """Every full dotted key and section this schema knows (prefixed with ``root``)."""
        pre = f"{self.root}." if self.root else ""
        return {pre + k for k in (*self.keys, *self.sections)}

    def check(self, cfg: Config, partial: bool = False) -> None:
        """One VidpredError for keys of ``cfg`` this stage does not read, or required keys it lacks (not
        with ``partial``: a ``base:`` file that other files complete, e.g. ``paper/moso-vqvae-base.yaml``)."""
        where = f"{_shown(cfg.path)} (stage {self.stage})"
        node = cfg.get(self.root, None) if self.root else cfg.values
        if node is None:
            node = {}
        if not isinstance(node, dict):
            raise VidpredError(f"{where}: '{self.root}' must be a section of keys, got {node!r}")
        pre = f"{self.root}." if self.root else ""
        unknown = self._unknown(node, "", where)
        if unknown:
            known = self.known()
            items = []
            for key in unknown:
                full = pre + key
                notes = []
                if any(p == full or p.startswith(full + ".") for p, src in cfg.provenance.items()
                       if str(src).startswith("override")):
                    notes.append("from --set")
                if full.split(".")[0] in ("base", "provenance"):
                    notes.append("base and provenance belong in the YAML file, they are not settings")
                near = suggest(full, known)
                if near:
                    notes.append(f"did you mean '{near}'?")
                items.append(f"'{full}'" + (f" ({'; '.join(notes)})" if notes else ""))
            tail = ""
            parent = (pre + unknown[0]).rpartition(".")[0]
            if len(unknown) == 1 and not suggest(pre + unknown[0], known) and (not parent or parent in known):
                names = sorted({k[len(parent) + 1 if parent else 0:].split(".")[0] for k in known
                                if not parent or k.startswith(parent + ".")})
                tail = f"; known {'under ' + parent if parent else 'top-level keys'}: {', '.join(names)}"
            raise VidpredError(f"{where}: unknown key{'s' if len(items) > 1 else ''} {', '.join(items)}{tail}")
        absent = object()
        for key, default in self.keys.items():
            if default is REQUIRED and not partial and cfg.get(pre + key, absent) is absent:
                raise VidpredError(f"{where}: required key '{pre + key}' is missing")

    def _unknown(self, node: dict, prefix: str, where: str) -> list[str]:
        out = []
        sections = self.sections
        for name, value in node.items():
            key = f"{prefix}{name}"
            if key in self.keys:
                continue  # taken whole
            if key in sections:
                if isinstance(value, dict):
                    out += self._unknown(value, key + ".", where)
                elif value is not None:  # an empty section (`eval:` in YAML) is fine
                    full = f"{self.root}.{key}" if self.root else key
                    raise VidpredError(f"{where}: '{full}' must be a section of keys, got {value!r}")
                continue
            leaves = list(_flatten(value, key + ".")) if isinstance(value, dict) and value else []
            out.append(leaves[0][0] if len(leaves) == 1 else key)  # --set trian.lr=1 → 'trian.lr'
        return sorted(out)


def dataclass_from_dict(cls, values: dict, section: str, ignore: Iterable[str] = ()):
    """``cls(**values)`` for a settings dataclass; a key it does not know (a typo) is one clear error.

    ``ignore`` names keys of the section that are read elsewhere (e.g. training settings beside model ones)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known - set(ignore))
    if unknown:
        near = suggest(unknown[0], known)
        hint = f"did you mean '{near}'?; " if near else ""
        raise VidpredError(f"{section}: unknown setting(s) {', '.join(unknown)} "
                           f"({hint}known: {', '.join(sorted(known))})")
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
